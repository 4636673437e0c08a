package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/proxy/entity"
	"github.com/jetstate/jetstate/proxy/model"
)

// stream runs a streamed action call of m, whatever its shape: the first
// message to the function names the service and command and carries md
// (for a server stream it carries the one payload too); each payload recv
// returns follows (io.EOF ends them); each response's side effects run and
// its reply (or the reply of its forward) goes to send, in order. A server
// or bidi stream's responses without a reply send nothing; a client
// stream's one reply is always sent (without payload: the default
// message). A failure ends the call with *model.UserFailure. This is the
// one implementation of the streamed shapes, for clients (gRPC, HTTP) and
// for eventing alike.
func (p *Proxy) stream(ctx context.Context, m *model.Method, md *cloudstate.Metadata, recv func() (*anypb.Any, error),
	send func(*cloudstate.Reply) error, trace string) error {
	if m.Service.EntityType == model.CRDT {
		return p.crdtStream(ctx, m, recv, send, trace)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	header := &actionpb.ActionCommand{
		ServiceName: string(m.Service.Desc.FullName()),
		Name:        string(m.Desc.Name()),
		Metadata:    traceMetadata(ctx, md),
	}
	next := func() (*actionpb.ActionCommand, error) {
		payload, err := recv()
		if err != nil {
			return nil, err
		}
		return &actionpb.ActionCommand{Payload: payload}, nil
	}
	// reply processes one response from the function and passes its reply on.
	reply := func(r *actionpb.ActionResponse) error {
		resp, err := p.complete(ctx, m, actionResult(r), 0, trace)
		if err != nil {
			return err
		}
		if resp.GetPayload() == nil {
			return nil
		}
		return send(resp)
	}

	switch {
	case m.Desc.IsStreamingServer() && !m.Desc.IsStreamingClient():
		cmd, err := next()
		if err != nil {
			return err
		}
		header.Payload = cmd.Payload
		out, err := p.actions.HandleStreamedOut(ctx, header)
		if err != nil {
			return actionErr(m, err)
		}
		for {
			r, err := out.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return actionErr(m, err)
			}
			if err := reply(r); err != nil {
				return err
			}
		}

	case m.Desc.IsStreamingClient() && !m.Desc.IsStreamingServer():
		in, err := p.actions.HandleStreamedIn(ctx)
		if err != nil {
			return actionErr(m, err)
		}
		if err := in.Send(header); err != nil {
			return actionErr(m, err)
		}
		for {
			cmd, err := next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			if err := in.Send(cmd); err != nil {
				return actionErr(m, err)
			}
		}
		r, err := in.CloseAndRecv()
		if err != nil {
			return actionErr(m, err)
		}
		resp, err := p.complete(ctx, m, actionResult(r), 0, trace)
		if err != nil {
			return err
		}
		return send(resp) // no reply: the default message

	case m.Desc.IsStreamingClient() && m.Desc.IsStreamingServer():
		bidi, err := p.actions.HandleStreamed(ctx)
		if err != nil {
			return actionErr(m, err)
		}
		if err := bidi.Send(header); err != nil {
			return actionErr(m, err)
		}
		// upstream passes the client's requests on. When they fail (a request
		// that does not decode, a cancelled client), it ends the function's
		// stream as well, so that the Recv below returns and reports the
		// client's error; the function alone would wait for more input.
		upstream := make(chan error, 1)
		go func() {
			err := func() error {
				for {
					cmd, err := next()
					if errors.Is(err, io.EOF) {
						return bidi.CloseSend()
					}
					if err != nil {
						return err
					}
					if err := bidi.Send(cmd); err != nil {
						return nil // the function ended the stream: its Recv says why
					}
				}
			}()
			upstream <- err // before cancel: Recv's error finds it
			if err != nil {
				cancel()
			}
		}()
		for {
			r, err := bidi.Recv()
			if errors.Is(err, io.EOF) {
				cancel()
				return nil
			}
			if err != nil {
				select {
				case uerr := <-upstream:
					if uerr != nil {
						return uerr
					}
				default:
				}
				return actionErr(m, err)
			}
			if err := reply(r); err != nil {
				return err // cancel (deferred) ends the function's stream too
			}
		}
	}
	return fmt.Errorf("%w: %s is not a streamed method", model.ErrUnknownMethod, m.Path)
}

// actionErr maps an error talking to the function about an action: a
// cancelled call stays cancelled, anything else is the function's failure.
func actionErr(m *model.Method, err error) error {
	if s, ok := status.FromError(err); ok && s.Code() == codes.Canceled {
		return err
	}
	return fmt.Errorf("%w: action %s: %v", entity.ErrEntityFailed, m.Path, err)
}

// crdtStream runs a streamed CRDT command (a server-streaming method): the
// reply and each message the function streams for it go through complete
// (side effects, forwards) to send; a message without a reply sends
// nothing. When the client goes away, the side effects of the function's
// answer to the cancellation still run, on a context of their own.
func (p *Proxy) crdtStream(ctx context.Context, m *model.Method, recv func() (*anypb.Any, error),
	send func(*cloudstate.Reply) error, trace string) error {
	if !m.Desc.IsStreamingServer() || m.Desc.IsStreamingClient() {
		return fmt.Errorf("%w: %s is not a server-streaming CRDT method", model.ErrUnknownMethod, m.Path)
	}
	payload, err := recv()
	if err != nil {
		return err
	}
	key, err := p.entityKey(m, payload)
	if err != nil {
		return err
	}
	rt := p.crdts[string(m.Service.Desc.FullName())]
	return rt.Stream(ctx, key, string(m.Desc.Name()), payload, func(res entity.Result) error {
		cctx := ctx
		if ctx.Err() != nil { // the cancellation's answer
			var cancel context.CancelFunc
			cctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), asyncEffectTimeout)
			defer cancel()
			cctx, stop := p.untilAbort(cctx)
			defer stop()
			_, err := p.complete(cctx, m, res, 0, trace)
			return err
		}
		resp, err := p.complete(cctx, m, res, 0, trace)
		if err != nil {
			return err
		}
		if res.Action == nil || resp.GetPayload() == nil {
			return nil
		}
		return send(resp)
	})
}
