package sdk

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
)

// crdtRunner runs the stream of one activation of a CRDT entity, after its init.
type crdtRunner interface {
	run(stream pb.Crdt_HandleServer, init *pb.CrdtInit, log *slog.Logger) error
}

// crdtActivation is one activation of a CRDT entity: one stream, one value, the open streamed
// commands.
type crdtActivation[E any] struct {
	c      *Crdt[E]
	log    *slog.Logger
	id     string
	entity E
	st     crdtState
	subs   map[int64]*crdtSub
}

func (c *Crdt[E]) run(stream pb.Crdt_HandleServer, init *pb.CrdtInit, log *slog.Logger) error {
	a := &crdtActivation[E]{c: c, log: log, id: init.GetEntityId(), subs: map[int64]*crdtSub{}}
	fatal := func(commandID int64, err error) error {
		logPanic(log, err, "entity failed", slog.String(keyEntityID, a.id), slog.Int64(keyCommandID, commandID))
		return stream.Send(&pb.CrdtStreamOut{Message: &pb.CrdtStreamOut_Failure{Failure: &cloudstate.Failure{CommandId: commandID, Description: err.Error()}}})
	}
	if err := protect(func() error { a.entity = c.newEntity(a.id); return nil }); err != nil {
		return fatal(0, fmt.Errorf("new entity: %w", err))
	}
	if d := init.GetDelta(); d != nil {
		v, err := fromDelta(d)
		if err != nil {
			return fatal(0, fmt.Errorf("init delta: %w", err))
		}
		a.st.value = v
	}
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil // the proxy passivated the entity, or ends it after a delete
		}
		if err != nil {
			return err
		}
		var (
			outs      []*pb.CrdtStreamOut
			commandID int64
		)
		switch m := in.GetMessage().(type) {
		case *pb.CrdtStreamIn_Command:
			commandID = m.Command.GetId()
			outs, err = a.command(m.Command)
		case *pb.CrdtStreamIn_Delta:
			outs, err = a.delta(m.Delta)
		case *pb.CrdtStreamIn_StreamCancelled:
			commandID = m.StreamCancelled.GetId()
			outs, err = a.cancelled(commandID)
		case *pb.CrdtStreamIn_Delete:
			a.st.value = nil // deleted on another node; the proxy ends the stream
		case *pb.CrdtStreamIn_Init:
			err = errors.New("protocol error: second init on the stream")
		default:
			err = errors.New("protocol error: empty message")
		}
		if err != nil {
			return fatal(commandID, err)
		}
		for _, out := range outs {
			if err := stream.Send(out); err != nil {
				return err
			}
		}
	}
}

func (a *crdtActivation[E]) newContext(commandID int64, name string) *CrdtContext {
	return &CrdtContext{entityID: a.id, commandID: commandID, commandName: name, st: &a.st}
}

// command handles one command: its reply, then the streamed messages its change causes. An
// error is a protocol-level failure that ends the stream.
func (a *crdtActivation[E]) command(cmd *cloudstate.Command) ([]*pb.CrdtStreamOut, error) {
	h, ok := a.c.commands[cmd.GetName()]
	if !ok {
		return nil, fmt.Errorf("unknown command %q for %s", cmd.GetName(), a.c.cfg.ServiceName)
	}
	if isStreamed := h.types.shape == streamedOut; cmd.GetStreamed() != isStreamed {
		return nil, fmt.Errorf("protocol error: command %s has streamed=%t, but the method is %s", cmd.GetName(), cmd.GetStreamed(), h.types.shape)
	}
	in, err := h.decode(cmd.GetPayload())
	if err != nil {
		return nil, fmt.Errorf("command %s: %w", cmd.GetName(), err)
	}
	ctx := a.newContext(cmd.GetId(), cmd.GetName())
	var (
		action *cloudstate.ClientAction
		sub    *crdtSub
	)
	state, err := a.change(ctx, func() error {
		out, s, err := h.handle(a.entity, ctx, in)
		if err != nil || ctx.effects.failed {
			return err
		}
		sub = s
		if sub != nil && out == nil && ctx.effects.forward == nil {
			return nil // a stream without a first element
		}
		if action, err = ctx.effects.clientAction(out); err != nil {
			return fmt.Errorf("command %s: %w", cmd.GetName(), err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("command %s: %w", cmd.GetName(), err)
	}
	if ctx.effects.failed {
		return []*pb.CrdtStreamOut{crdtReply(&pb.CrdtReply{
			CommandId: cmd.GetId(), ClientAction: failureAction(cmd.GetId(), ctx.effects.description, false),
		})}, nil
	}
	outs := []*pb.CrdtStreamOut{crdtReply(&pb.CrdtReply{
		CommandId:    cmd.GetId(),
		ClientAction: action,
		SideEffects:  ctx.effects.sideEffects,
		StateAction:  state,
		Streamed:     sub != nil,
	})}
	if state.GetUpdate() != nil {
		outs = append(outs, a.notify()...)
	}
	if sub != nil {
		a.subs[sub.id] = sub // after notify: a streamed command is not told of its own change
	}
	return outs, nil
}

// delta applies a delta from the proxy and tells the open streamed commands.
func (a *crdtActivation[E]) delta(d *pb.CrdtDelta) ([]*pb.CrdtStreamOut, error) {
	if a.st.value == nil {
		v, err := fromDelta(d)
		if err != nil {
			return nil, fmt.Errorf("delta: %w", err)
		}
		a.st.value = v
	} else if err := a.st.value.apply(d); err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	return a.notify(), nil
}

// cancelled handles the client's cancellation of streamed command id: OnCancel, the response,
// then the streamed messages of OnCancel's change.
func (a *crdtActivation[E]) cancelled(id int64) ([]*pb.CrdtStreamOut, error) {
	resp := &pb.CrdtStreamCancelledResponse{CommandId: id}
	sub := a.subs[id]
	delete(a.subs, id)
	if sub == nil || sub.onCancel == nil {
		return []*pb.CrdtStreamOut{cancelledResponse(resp)}, nil
	}
	ctx := a.newContext(id, sub.name)
	state, err := a.change(ctx, func() error {
		if err := sub.onCancel(ctx); err != nil {
			return err
		}
		if f := ctx.effects.forward; f != nil {
			return fmt.Errorf("OnCancel forwarded to %s/%s; a cancelled stream has no client to answer", f.GetServiceName(), f.GetCommandName())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cancel of command %d (%s): %w", id, sub.name, err)
	}
	if ctx.effects.failed {
		a.log.Error("OnCancel failed; its state changes and side effects are dropped",
			slog.String(keyEntityID, a.id), slog.Int64(keyCommandID, id), slog.String(keyErr, ctx.effects.description))
		return []*pb.CrdtStreamOut{cancelledResponse(resp)}, nil
	}
	resp.SideEffects, resp.StateAction = ctx.effects.sideEffects, state
	outs := []*pb.CrdtStreamOut{cancelledResponse(resp)}
	if state.GetUpdate() != nil {
		outs = append(outs, a.notify()...)
	}
	return outs, nil
}

// change runs f, which may change the state through ctx, and returns the state action of the
// net change, nil if there is none. If f fails (returns an error or calls ctx.Fail), the state
// is restored as it was and there is no state action. A panic of f is returned as an error,
// with the state restored.
func (a *crdtActivation[E]) change(ctx *CrdtContext, f func() error) (*pb.CrdtStateAction, error) {
	before := a.st.value
	var backup CRDT
	if before != nil {
		backup = before.clone()
	}
	rollback := func() {
		a.st.value = before
		if before != nil {
			before.restore(backup)
		}
	}
	if err := protect(func() error {
		if err := f(); err != nil {
			ctx.effects.fail(err.Error())
		}
		return nil
	}); err != nil {
		rollback()
		return nil, err
	}
	if ctx.effects.failed {
		rollback()
		return nil, nil
	}
	consistency := pb.CrdtWriteConsistency(ctx.consistency)
	if ctx.deleted {
		return &pb.CrdtStateAction{Action: &pb.CrdtStateAction_Delete{Delete: &pb.CrdtDelete{}}, WriteConsistency: consistency}, nil
	}
	if v := a.st.value; v != nil {
		if d := v.delta(); d != nil {
			v.reset()
			return &pb.CrdtStateAction{Action: &pb.CrdtStateAction_Update{Update: d}, WriteConsistency: consistency}, nil
		}
	}
	return nil, nil
}

// notify calls the OnChange functions of the open streamed commands, in command order, after a
// change of the state, and returns the streamed messages they give.
func (a *crdtActivation[E]) notify() []*pb.CrdtStreamOut {
	if a.st.value == nil {
		return nil
	}
	var (
		outs   []*pb.CrdtStreamOut
		backup CRDT
	)
	for _, id := range slices.Sorted(maps.Keys(a.subs)) {
		sub := a.subs[id]
		if sub.onChange == nil {
			continue
		}
		if backup == nil {
			backup = a.st.value.clone()
		}
		ctx := a.newContext(id, sub.name)
		ctx.readOnly = "OnChange may not change the state"
		var (
			out proto.Message
			end bool
		)
		if err := protect(func() error {
			o, e, err := sub.onChange(ctx)
			if err != nil {
				ctx.effects.fail(err.Error())
			}
			out, end = o, e
			return nil
		}); err != nil {
			logPanic(a.log, err, "OnChange failed", slog.String(keyEntityID, a.id), slog.Int64(keyCommandID, id))
			ctx.effects.fail(err.Error())
		}
		if a.st.value.delta() != nil {
			a.st.value.restore(backup)
			ctx.effects.fail("OnChange changed the state; only commands and OnCancel may")
		}
		msg := &pb.CrdtStreamedMessage{CommandId: id, EndStream: end}
		if !ctx.effects.failed && (out != nil || ctx.effects.forward != nil) {
			action, err := ctx.effects.clientAction(out)
			if err != nil {
				ctx.effects.fail(fmt.Sprintf("OnChange of %s: %v", sub.name, err))
			}
			msg.ClientAction = action
		}
		if ctx.effects.failed {
			msg = &pb.CrdtStreamedMessage{CommandId: id, ClientAction: failureAction(id, ctx.effects.description, false), EndStream: true}
		} else {
			msg.SideEffects = ctx.effects.sideEffects
		}
		if msg.ClientAction == nil && len(msg.SideEffects) == 0 && !msg.EndStream {
			continue
		}
		if msg.EndStream {
			delete(a.subs, id)
		}
		outs = append(outs, &pb.CrdtStreamOut{Message: &pb.CrdtStreamOut_StreamedMessage{StreamedMessage: msg}})
	}
	return outs
}

func crdtReply(r *pb.CrdtReply) *pb.CrdtStreamOut {
	return &pb.CrdtStreamOut{Message: &pb.CrdtStreamOut_Reply{Reply: r}}
}

func cancelledResponse(r *pb.CrdtStreamCancelledResponse) *pb.CrdtStreamOut {
	return &pb.CrdtStreamOut{Message: &pb.CrdtStreamOut_StreamCancelledResponse{StreamCancelledResponse: r}}
}
