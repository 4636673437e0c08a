package entity

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	"github.com/jetstate/jetstate/streams"
)

// NewValue returns the runtime of a value-entity service: an entity reads
// its stored state and gets init, which always carries a state message
// (empty when nothing is stored); a reply's update or delete is written
// (fenced by the value's revision) before the command returns.
func NewValue(cfg Config, client valueentity.ValueEntityClient, values *streams.Values) *Runtime {
	cfg = cfg.withDefaults()
	return newRuntime(cfg, openValue(client, cfg, values))
}

// openValue returns the opener of a value-entity service's sessions.
func openValue(client valueentity.ValueEntityClient, cfg Config, values *streams.Values) opener {
	svc, m := cfg.Service, cfg.Metrics
	typ := &veType{values: values, guard: cfg.Guard, load: cfg.Load}
	return func(ctx context.Context, entityID string) (session, error) {
		ent := streams.Entity{Type: svc.PersistenceID, Key: entityID}
		if err := ent.Validate(); err != nil {
			return nil, err
		}
		start := time.Now()
		data, rev, err := values.Get(ctx, ent)
		if err != nil {
			return nil, fmt.Errorf("load value: %w", err)
		}
		state := &valueentity.ValueEntityInitState{}
		if rev != 0 {
			state.Value = &anypb.Any{}
			if err := proto.Unmarshal(data, state.Value); err != nil {
				return nil, fmt.Errorf("stored value of %v does not parse: %w", ent, err)
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
		init := &valueentity.ValueEntityInit{ServiceName: string(svc.Desc.FullName()), EntityId: entityID, State: state}
		if err := stream.Send(&valueentity.ValueEntityStreamIn{Message: &valueentity.ValueEntityStreamIn_Init{Init: init}}); err != nil {
			cancel()
			return nil, fmt.Errorf("send init: %w", err)
		}
		m.recovered(string(svc.Desc.FullName()), time.Since(start), 0)
		return &veSession{stream: stream, cancel: cancel, ent: ent, rev: rev, typ: typ}, nil
	}
}

// veType is what the sessions of one value-entity service share.
type veType struct {
	values *streams.Values
	guard  Guard
	load   Load
}

// veSession is one value entity's open stream. It lives as long as the
// entity is active, so it holds only what is its own.
type veSession struct {
	stream valueentity.ValueEntity_HandleClient
	cancel context.CancelFunc
	ent    streams.Entity
	rev    uint64
	typ    *veType
}

func (s *veSession) command(ctx context.Context, id int64, name string, payload *anypb.Any) (Result, error) {
	r, err := exchange(ctx, &cloudstate.Command{EntityId: s.ent.Key, Id: id, Name: name, Payload: payload},
		func(cmd *cloudstate.Command) error {
			return s.stream.Send(&valueentity.ValueEntityStreamIn{Message: &valueentity.ValueEntityStreamIn_Command{Command: cmd}})
		},
		s.stream.Recv, s.cancel,
		func(out *valueentity.ValueEntityStreamOut) (*valueentity.ValueEntityReply, *cloudstate.Failure) {
			return out.GetReply(), out.GetFailure()
		})
	if err != nil {
		return Result{}, err
	}
	res := Result{Action: r.GetClientAction(), Effects: r.GetSideEffects()}
	if res.Action.GetFailure() != nil {
		res.Effects = nil // value entities have no restart; the flag is ignored
		return res, nil
	}
	if r.GetStateAction().GetAction() != nil {
		defer s.typ.load.Storing()()
		if err := s.typ.guard.Check(s.ent); err != nil {
			return Result{}, fmt.Errorf("%w: %v", ErrMoved, err)
		}
	}
	switch act := r.GetStateAction().GetAction().(type) {
	case *valueentity.ValueEntityAction_Update:
		data, err := proto.Marshal(act.Update.GetValue())
		if err != nil {
			return Result{}, fmt.Errorf("encode state: %w", err)
		}
		rev, err := s.typ.values.Put(ctx, s.ent, data, s.rev)
		if err != nil {
			return Result{}, fmt.Errorf("store state: %w", err)
		}
		s.rev = rev
	case *valueentity.ValueEntityAction_Delete:
		if err := s.typ.values.Delete(ctx, s.ent, s.rev); err != nil {
			return Result{}, fmt.Errorf("delete state: %w", err)
		}
		s.rev = 0
	}
	return res, nil
}

func (s *veSession) close() { closeStream(s.stream, s.stream.Recv, s.cancel) }
func (s *veSession) abort() { s.cancel() }
