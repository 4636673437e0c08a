package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	"github.com/jetstate/jetstate/streams"
)

// openValueEntity returns the opener of a value-entity service's sessions:
// read the stored state and send init, which always carries a state
// message (empty when nothing is stored).
func openValueEntity(client valueentity.ValueEntityClient, svc *Service, values *streams.Values, guard guardFunc, m *metrics, log *slog.Logger) opener {
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
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
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
		return &veSession{stream: stream, cancel: cancel, ent: ent, rev: rev, values: values, guard: guard, log: log, load: m.load}, nil
	}
}

// veSession is one value entity's open stream.
type veSession struct {
	stream valueentity.ValueEntity_HandleClient
	cancel context.CancelFunc
	ent    streams.Entity
	rev    uint64
	values *streams.Values
	guard  guardFunc
	log    *slog.Logger
	load   *loadStats
}

func (s *veSession) command(ctx context.Context, id int64, name string, payload *anypb.Any) (commandResult, error) {
	r, err := exchange(ctx, &cloudstate.Command{EntityId: s.ent.Key, Id: id, Name: name, Payload: payload},
		func(cmd *cloudstate.Command) error {
			return s.stream.Send(&valueentity.ValueEntityStreamIn{Message: &valueentity.ValueEntityStreamIn_Command{Command: cmd}})
		},
		s.stream.Recv, s.cancel,
		func(out *valueentity.ValueEntityStreamOut) (*valueentity.ValueEntityReply, *cloudstate.Failure) {
			return out.GetReply(), out.GetFailure()
		})
	if err != nil {
		return commandResult{}, err
	}
	res := commandResult{action: r.GetClientAction(), effects: r.GetSideEffects()}
	if res.action.GetFailure() != nil {
		res.effects = nil // value entities have no restart; the flag is ignored
		return res, nil
	}
	if r.GetStateAction().GetAction() != nil {
		defer s.load.storing()()
		if err := s.guard.check(s.ent); err != nil {
			return commandResult{}, err
		}
	}
	switch act := r.GetStateAction().GetAction().(type) {
	case *valueentity.ValueEntityAction_Update:
		data, err := proto.Marshal(act.Update.GetValue())
		if err != nil {
			return commandResult{}, fmt.Errorf("encode state: %w", err)
		}
		rev, err := s.values.Put(ctx, s.ent, data, s.rev)
		if err != nil {
			return commandResult{}, fmt.Errorf("store state: %w", err)
		}
		s.rev = rev
	case *valueentity.ValueEntityAction_Delete:
		if err := s.values.Delete(ctx, s.ent, s.rev); err != nil {
			return commandResult{}, fmt.Errorf("delete state: %w", err)
		}
		s.rev = 0
	}
	return res, nil
}

func (s *veSession) close() { closeStream(s.stream, s.stream.Recv, s.cancel) }
func (s *veSession) abort() { s.cancel() }
