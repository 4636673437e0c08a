package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
)

// streamAction serves a client-, server- or bidi-streaming action method:
// the first message to the function names the service and command and
// carries the stream's metadata; each client message follows as a payload;
// each response's side effects run and its reply (or the reply of its
// forward) goes to the client. A failure ends the client's stream with the
// failure's description.
func (p *Proxy) streamAction(stream grpc.ServerStream, m *Method) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	header := &actionpb.ActionCommand{
		ServiceName: string(m.Service.Desc.FullName()),
		Name:        string(m.Desc.Name()),
		Metadata:    incomingMetadata(stream),
	}
	next := func() (*actionpb.ActionCommand, error) {
		var in frame
		if err := stream.RecvMsg(&in); err != nil {
			return nil, err
		}
		if _, err := m.decode(in.data); err != nil {
			return nil, grpcStatus(err).Err()
		}
		return &actionpb.ActionCommand{Payload: &anypb.Any{TypeUrl: m.InputURL, Value: in.data}}, nil
	}
	// The metadata of the first reply becomes the response's headers (they
	// go out with it); later replies' metadata cannot reach the client.
	headerSent := false
	sendReply := func(resp Response) error {
		if !headerSent {
			headerSent = true
			if md := outgoingMetadata(resp.Metadata); md.Len() > 0 {
				if err := stream.SetHeader(md); err != nil {
					return err
				}
			}
		}
		return stream.SendMsg(&frame{data: resp.Payload.GetValue()})
	}
	// send processes one response from the function and passes its reply on.
	send := func(r *actionpb.ActionResponse) error {
		resp, err := p.complete(ctx, m, actionToClientAction(r), r.GetSideEffects(), 0, m.Path)
		if err != nil {
			return grpcStatus(err).Err()
		}
		if resp.Payload == nil {
			return nil
		}
		if err := p.publishReply(ctx, m, resp, newOutID()); err != nil {
			return grpcStatus(err).Err()
		}
		return sendReply(resp)
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
			return actionErr(err)
		}
		for {
			r, err := out.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return actionErr(err)
			}
			if err := send(r); err != nil {
				return err
			}
		}

	case m.Desc.IsStreamingClient() && !m.Desc.IsStreamingServer():
		in, err := p.actions.HandleStreamedIn(ctx)
		if err != nil {
			return actionErr(err)
		}
		if err := in.Send(header); err != nil {
			return actionErr(err)
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
				return actionErr(err)
			}
		}
		r, err := in.CloseAndRecv()
		if err != nil {
			return actionErr(err)
		}
		resp, err := p.complete(ctx, m, actionToClientAction(r), r.GetSideEffects(), 0, m.Path)
		if err != nil {
			return grpcStatus(err).Err()
		}
		if err := p.publishReply(ctx, m, resp, newOutID()); err != nil {
			return grpcStatus(err).Err()
		}
		return sendReply(resp) // no reply: the default message

	default: // bidi
		bidi, err := p.actions.HandleStreamed(ctx)
		if err != nil {
			return actionErr(err)
		}
		if err := bidi.Send(header); err != nil {
			return actionErr(err)
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
				return actionErr(err)
			}
			if err := send(r); err != nil {
				return err // cancel (deferred) ends the function's stream too
			}
		}
	}
}

// actionErr maps an error talking to the function about an action.
func actionErr(err error) error {
	if s, ok := status.FromError(err); ok && s.Code() == codes.Canceled {
		return err
	}
	return grpcStatus(fmt.Errorf("%w: action: %v", ErrEntityFailed, err)).Err()
}
