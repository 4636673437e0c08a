package entity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/streams"
)

// closeTimeout bounds how long a closing session waits for the user
// function to end its side of the stream.
const closeTimeout = 5 * time.Second

// esStore is the storage an event-sourced entity type needs.
type esStore struct {
	journal   *streams.Journal
	snapshots *streams.Snapshots
}

// NewEventSourced returns the runtime of an event-sourced service: an
// entity recovers from its latest snapshot plus the journal after it, then
// gets init and the events; a reply's events are appended (fenced by the
// journal's CAS) and its snapshot saved before the command returns.
func NewEventSourced(cfg Config, client eventsourced.EventSourcedClient, journal *streams.Journal, snapshots *streams.Snapshots) *Runtime {
	cfg = cfg.withDefaults()
	return newRuntime(cfg, openEventSourced(client, cfg, esStore{journal: journal, snapshots: snapshots}))
}

// openEventSourced returns the opener of an event-sourced service's
// sessions.
func openEventSourced(client eventsourced.EventSourcedClient, cfg Config, store esStore) opener {
	svc, m, log := cfg.Service, cfg.Metrics, cfg.Log
	typ := &esType{store: store, guard: cfg.Guard, load: cfg.Load, log: log, m: m, service: string(svc.Desc.FullName())}
	return func(ctx context.Context, entityID string) (session, error) {
		ent := streams.Entity{Type: svc.PersistenceID, Key: entityID}
		if err := ent.Validate(); err != nil {
			return nil, err
		}
		start := time.Now()
		init := &eventsourced.EventSourcedInit{ServiceName: string(svc.Desc.FullName()), EntityId: entityID}
		var version streams.Version
		snap, found, err := store.snapshots.Load(ctx, ent)
		if err != nil {
			return nil, fmt.Errorf("load snapshot: %w", err)
		}
		if found {
			var state anypb.Any
			if err := proto.Unmarshal(snap.Data, &state); err != nil {
				// A snapshot we cannot read is not fatal: replay everything.
				log.Warn("ignoring unreadable snapshot", "entity", ent, "error", err)
			} else {
				init.Snapshot = &eventsourced.EventSourcedSnapshot{SnapshotSequence: int64(snap.Seq), Snapshot: &state}
				version = snap.Version
			}
		}
		var events []*eventsourced.EventSourcedEvent
		for r, err := range store.journal.Read(ctx, ent, version) {
			if err != nil {
				return nil, fmt.Errorf("read journal: %w", err)
			}
			events = append(events, &eventsourced.EventSourcedEvent{
				Sequence: int64(r.Seq),
				Payload:  &anypb.Any{TypeUrl: r.Type, Value: r.Data},
			})
			version = r.Version
		}
		if version.StreamSeq == 0 && version.Seq > 0 {
			// A snapshot with no journal behind it: find the fence.
			if version, err = store.journal.Head(ctx, ent); err != nil {
				return nil, fmt.Errorf("journal head: %w", err)
			}
		}
		// The stream outlives ctx, which carries no values (the runtime's
		// context is Background's): it does not keep ctx and its timer.
		sctx, cancel := context.WithCancel(context.Background())
		stream, err := client.Handle(sctx)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("open stream: %w", err)
		}
		s := &esSession{stream: stream, cancel: cancel, ent: ent, version: version, typ: typ}
		if err := stream.Send(&eventsourced.EventSourcedStreamIn{Message: &eventsourced.EventSourcedStreamIn_Init{Init: init}}); err != nil {
			s.abort()
			return nil, fmt.Errorf("send init: %w", err)
		}
		for _, ev := range events {
			if err := stream.Send(&eventsourced.EventSourcedStreamIn{Message: &eventsourced.EventSourcedStreamIn_Event{Event: ev}}); err != nil {
				s.abort()
				return nil, fmt.Errorf("send event %d: %w", ev.Sequence, err)
			}
		}
		m.recovered(string(svc.Desc.FullName()), time.Since(start), len(events))
		return s, nil
	}
}

// esType is what the sessions of one event-sourced service share.
type esType struct {
	store   esStore
	guard   Guard
	load    Load
	log     *slog.Logger
	m       *Metrics
	service string
}

// esSession is one event-sourced entity's open stream. It lives as long as
// the entity is active, so it holds only what is its own.
type esSession struct {
	stream  eventsourced.EventSourced_HandleClient
	cancel  context.CancelFunc
	ent     streams.Entity
	version streams.Version
	typ     *esType
}

func (s *esSession) command(ctx context.Context, id int64, name string, payload *anypb.Any) (Result, error) {
	t := s.typ
	r, err := exchange(ctx, &cloudstate.Command{EntityId: s.ent.Key, Id: id, Name: name, Payload: payload},
		func(cmd *cloudstate.Command) error {
			return s.stream.Send(&eventsourced.EventSourcedStreamIn{Message: &eventsourced.EventSourcedStreamIn_Command{Command: cmd}})
		},
		s.stream.Recv, s.cancel,
		func(out *eventsourced.EventSourcedStreamOut) (*eventsourced.EventSourcedReply, *cloudstate.Failure) {
			return out.GetReply(), out.GetFailure()
		})
	if err != nil {
		return Result{}, err
	}
	res := Result{Action: r.GetClientAction(), Effects: r.GetSideEffects()}
	if f := res.Action.GetFailure(); f != nil {
		// A failed command's events and side effects are dropped.
		res.Effects = nil
		res.restart = f.GetRestart()
		return res, nil
	}
	if len(r.GetEvents()) == 0 {
		return res, nil // a snapshot without events is ignored
	}
	events := make([]streams.Event, len(r.GetEvents()))
	size := 0
	for i, ev := range r.GetEvents() {
		events[i] = streams.Event{Type: ev.GetTypeUrl(), Data: ev.GetValue()}
		size += len(ev.GetValue())
	}
	defer t.load.Storing()() // the append and the snapshot
	if err := t.guard.Check(s.ent); err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrMoved, err)
	}
	v, err := t.store.journal.Append(ctx, s.ent, s.version, events)
	if err != nil {
		return Result{}, fmt.Errorf("persist %d events: %w", len(events), err)
	}
	s.version = v
	t.m.persisted(t.service, len(events), size)
	if snap := r.GetSnapshot(); snap != nil {
		data, err := proto.Marshal(snap)
		if err == nil {
			err = t.store.snapshots.Save(ctx, s.ent, streams.Snapshot{Version: v, Data: data})
		}
		if err != nil {
			// Snapshots are an optimisation: the events are safe.
			t.log.Warn("snapshot not saved", "entity", s.ent, "seq", v.Seq, "error", err)
		}
	}
	return res, nil
}

func (s *esSession) close() { closeStream(s.stream, s.stream.Recv, s.cancel) }
func (s *esSession) abort() { s.cancel() }

// protocolReply is what the replies of all entity protocols have in common.
type protocolReply interface {
	comparable
	GetCommandId() int64
	GetClientAction() *cloudstate.ClientAction
	GetSideEffects() []*cloudstate.SideEffect
}

// errStreamEnded marks a command that was not sent because the entity's
// stream to the user function had already ended (the function restarted or
// closed it): the function never got it, so it may be sent on a new stream.
var errStreamEnded = errors.New("stream to the user function had ended")

// exchange sends command cmd on an entity stream and receives the
// function's answer: its reply to exactly that command, or an error for a
// protocol-level failure, an empty message or a reply to another command.
// An error wrapping errStreamEnded means the command was not delivered.
func exchange[Out any, R protocolReply](ctx context.Context, cmd *cloudstate.Command, send func(*cloudstate.Command) error,
	recv func() (Out, error), cancel context.CancelFunc, split func(Out) (R, *cloudstate.Failure)) (r R, err error) {
	_, span := tracing.Start(ctx, SpanFunction, trace.SpanKindClient)
	if span.On() {
		span.String("rpc.method", cmd.GetName())
		span.String("jetstate.entity.key", cmd.GetEntityId())
		span.Int("jetstate.command.id", cmd.GetId())
	}
	defer func() {
		span.Fail(err)
		span.End()
	}()
	return exchangeCommand(ctx, cmd, send, recv, cancel, split)
}

// SpanFunction names the span of a command's exchange with the user
// function (the entity protocols' stream; the append follows it).
const SpanFunction = "jetstate.function"

// exchangeCommand is exchange without its span.
func exchangeCommand[Out any, R protocolReply](ctx context.Context, cmd *cloudstate.Command, send func(*cloudstate.Command) error,
	recv func() (Out, error), cancel context.CancelFunc, split func(Out) (R, *cloudstate.Failure)) (R, error) {
	var none R
	if err := send(cmd); err != nil {
		// What we rely on (grpc-go's ClientStream.SendMsg): it returns io.EOF
		// when the stream is done or broken, "the status of the stream may be
		// discovered using RecvMsg"; it blocks until the message is scheduled
		// with the transport, or the stream is done, or it breaks. grpc-go
		// (1.85, csAttempt.sendMsg) returns io.EOF only when the transport
		// refused the message before queueing it (the stream was done, the
		// connection closing), and a message replayed on a retried attempt
		// ends with nil, not an error. So io.EOF: the function did not get
		// the command. A nil error proves nothing (the message may sit in a
		// buffer and be lost with the connection): only errors before the
		// message left are retried, never those from Recv.
		if errors.Is(err, io.EOF) {
			return none, fmt.Errorf("send command: %w: %w", errStreamEnded, err)
		}
		return none, fmt.Errorf("send command: %w", err)
	}
	out, err := recvWithin(ctx, recv, cancel)
	if err != nil {
		return none, err
	}
	r, failure := split(out)
	switch {
	case failure != nil:
		return none, fmt.Errorf("user function failed: %s", failure.GetDescription())
	case r == none:
		return none, errors.New("user function sent an empty message")
	case r.GetCommandId() != cmd.GetId():
		return none, fmt.Errorf("reply for command %d while command %d is in flight", r.GetCommandId(), cmd.GetId())
	}
	return r, nil
}

// recvWithin receives one message, cancelling the stream (via cancel) if
// ctx ends first.
func recvWithin[T any](ctx context.Context, recv func() (T, error), cancel context.CancelFunc) (T, error) {
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	out, err := recv()
	if err != nil {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		if errors.Is(err, io.EOF) {
			return out, errors.New("user function closed the stream")
		}
		return out, fmt.Errorf("receive: %w", err)
	}
	return out, nil
}

// closeStream half-closes a stream and waits (bounded) for the function to
// complete its side, then releases the stream.
func closeStream[T any](cs interface{ CloseSend() error }, recv func() (T, error), cancel context.CancelFunc) {
	defer cancel()
	if err := cs.CloseSend(); err != nil {
		return
	}
	t := time.AfterFunc(closeTimeout, cancel)
	defer t.Stop()
	for {
		if _, err := recv(); err != nil {
			return
		}
	}
}
