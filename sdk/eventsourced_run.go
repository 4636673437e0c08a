package sdk

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
)

// esRunner runs the stream of one activation of an event-sourced entity, after its init.
type esRunner interface {
	run(stream eventsourced.EventSourced_HandleServer, init *eventsourced.EventSourcedInit, log *slog.Logger) error
}

// esActivation is one activation of an event-sourced entity: one stream, one state.
type esActivation[S any] struct {
	e      *EventSourced[S]
	stream eventsourced.EventSourced_HandleServer
	log    *slog.Logger
	id     string
	state  S
	seq    int64
	// dirty is set when a failed command had applied events: the state no longer matches the
	// journal, the proxy was asked to restart the entity and no further command is accepted.
	dirty bool
}

func (e *EventSourced[S]) run(stream eventsourced.EventSourced_HandleServer, init *eventsourced.EventSourcedInit, log *slog.Logger) error {
	a := &esActivation[S]{e: e, stream: stream, log: log, id: init.GetEntityId()}
	if err := protect(func() error {
		a.state = e.newState(a.id)
		snap := init.GetSnapshot()
		if snap == nil {
			return nil
		}
		if e.restore == nil {
			return fmt.Errorf("init carries a snapshot of type %q but the entity has no snapshot handler", snap.GetSnapshot().GetTypeUrl())
		}
		if err := e.restore(a.state, snap.GetSnapshot()); err != nil {
			return fmt.Errorf("restore snapshot at sequence %d: %w", snap.GetSnapshotSequence(), err)
		}
		a.seq = snap.GetSnapshotSequence()
		return nil
	}); err != nil {
		return a.fatal(0, err)
	}
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil // the proxy passivated the entity
		}
		if err != nil {
			return err
		}
		switch m := in.GetMessage().(type) {
		case *eventsourced.EventSourcedStreamIn_Event:
			if err := a.replay(m.Event); err != nil {
				return a.fatal(0, err)
			}
		case *eventsourced.EventSourcedStreamIn_Command:
			out, err := a.command(m.Command)
			if err != nil {
				return a.fatal(m.Command.GetId(), err)
			}
			if err := stream.Send(out); err != nil {
				return err
			}
		case *eventsourced.EventSourcedStreamIn_Init:
			return a.fatal(0, errors.New("protocol error: second init on the stream"))
		default:
			return a.fatal(0, errors.New("protocol error: empty message"))
		}
	}
}

// replay applies an event of the journal.
func (a *esActivation[S]) replay(ev *eventsourced.EventSourcedEvent) error {
	m, err := unmarshalAny(ev.GetPayload())
	if err != nil {
		return fmt.Errorf("event %d: %w", ev.GetSequence(), err)
	}
	h, ok := a.e.events[m.ProtoReflect().Descriptor().FullName()]
	if !ok {
		return fmt.Errorf("event %d: no event handler for %s", ev.GetSequence(), m.ProtoReflect().Descriptor().FullName())
	}
	if err := protect(func() error { return h.apply(a.state, m) }); err != nil {
		return fmt.Errorf("event %d: %w", ev.GetSequence(), err)
	}
	a.seq = ev.GetSequence()
	return nil
}

// command handles one command. An error is a protocol-level failure that ends the stream;
// failures of the command itself are in the reply.
func (a *esActivation[S]) command(cmd *cloudstate.Command) (*eventsourced.EventSourcedStreamOut, error) {
	if a.dirty {
		return nil, errors.New("the entity must be restarted after a failed command whose events were applied")
	}
	h, ok := a.e.commands[cmd.GetName()]
	if !ok {
		return nil, fmt.Errorf("unknown command %q for %s", cmd.GetName(), a.e.cfg.ServiceName)
	}
	in, err := h.decode(cmd.GetPayload())
	if err != nil {
		return nil, fmt.Errorf("command %s: %w", cmd.GetName(), err)
	}
	ctx := &EventSourcedContext{entityID: a.id, commandID: cmd.GetId(), commandName: cmd.GetName()}
	ctx.emit = func(ev proto.Message) error { return a.emit(ctx, ev) }

	var (
		reply    proto.Message
		action   *cloudstate.ClientAction
		snapshot *anypb.Any
	)
	next := a.seq
	if err := protect(func() error {
		r, err := h.handle(a.state, ctx, in)
		if err != nil {
			ctx.effects.fail(err.Error())
		}
		reply = r
		if ctx.effects.failed {
			return nil
		}
		if action, err = ctx.effects.clientAction(reply); err != nil {
			ctx.effects.fail(fmt.Sprintf("command %s: %v", cmd.GetName(), err))
			return nil
		}
		next = a.seq + int64(len(ctx.events))
		if n := a.e.snapshotEvery(); n > 0 && a.e.snapshot != nil && next/n > a.seq/n {
			snapshot = a.takeSnapshot(next)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("command %s: %w", cmd.GetName(), err)
	}

	if ctx.effects.failed {
		restart := ctx.applied > 0
		a.dirty = restart
		return esReply(&eventsourced.EventSourcedReply{
			CommandId:    cmd.GetId(),
			ClientAction: failureAction(cmd.GetId(), ctx.effects.description, restart),
		}), nil
	}
	a.seq = next
	return esReply(&eventsourced.EventSourcedReply{
		CommandId:    cmd.GetId(),
		ClientAction: action,
		SideEffects:  ctx.effects.sideEffects,
		Events:       ctx.events,
		Snapshot:     snapshot,
	}), nil
}

// emit applies an event emitted by a command handler and records it.
func (a *esActivation[S]) emit(ctx *EventSourcedContext, ev proto.Message) error {
	if ev == nil {
		return errors.New("emit: nil event")
	}
	name := ev.ProtoReflect().Descriptor().FullName()
	h, ok := a.e.events[name]
	if !ok {
		return fmt.Errorf("emit %s: no event handler for this type", name)
	}
	payload, err := marshalAny(ev)
	if err != nil {
		return fmt.Errorf("emit: %w", err)
	}
	ctx.applied++
	if err := h.apply(a.state, ev); err != nil {
		return fmt.Errorf("apply %s: %w", name, err)
	}
	ctx.events = append(ctx.events, payload)
	return nil
}

// takeSnapshot encodes the current state as a snapshot. A snapshot is an optimisation: if it
// cannot be taken the error is logged and the reply goes without one.
func (a *esActivation[S]) takeSnapshot(seq int64) *anypb.Any {
	m, err := a.e.snapshot(a.state)
	if err == nil && isNil(m) {
		return nil
	}
	var snap *anypb.Any
	if err == nil {
		snap, err = marshalAny(m)
	}
	if err != nil {
		a.log.Error("snapshot skipped", slog.String(keyEntityID, a.id), slog.Int64("sequence", seq), slog.Any(keyErr, err))
		return nil
	}
	return snap
}

// fatal reports a protocol-level failure to the proxy, which stops the entity, and ends the
// stream.
func (a *esActivation[S]) fatal(commandID int64, err error) error {
	logPanic(a.log, err, "entity failed", slog.String(keyEntityID, a.id), slog.Int64(keyCommandID, commandID))
	return a.stream.Send(&eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Failure{
		Failure: &cloudstate.Failure{CommandId: commandID, Description: err.Error()},
	}})
}

func esReply(r *eventsourced.EventSourcedReply) *eventsourced.EventSourcedStreamOut {
	return &eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Reply{Reply: r}}
}
