package sdk_test

import (
	"errors"

	"github.com/jetstate/jetstate/sdk"
	tm "github.com/jetstate/jetstate/sdk/internal/testmodel"
)

// The model entities, implemented with the sdk the way a user would, after the TCK models:
// each Request action is carried out in order, and the reply is the state as a string.

// esState is the event-sourced model's state: the concatenated values of its events.
type esState struct{ value string }

// esModelEntity is EventSourcedModel: snapshot every 5 events unless cfg says otherwise.
func esModelEntity(cfg sdk.EventSourcedConfig) *sdk.EventSourced[*esState] {
	if cfg.ServiceName == "" {
		cfg.ServiceName = esModel
	}
	if cfg.PersistenceID == "" {
		cfg.PersistenceID = "event-sourced-model"
	}
	if cfg.SnapshotEvery == 0 {
		cfg.SnapshotEvery = 5
	}
	e := sdk.NewEventSourced(cfg, func(string) *esState { return &esState{} })
	sdk.HandleCommand(e, "Process", (*esState).process)
	sdk.HandleEvent(e, (*esState).persisted)
	sdk.HandleSnapshot(e, (*esState).snapshot, (*esState).restore)
	return e
}

func (s *esState) process(ctx *sdk.EventSourcedContext, r *tm.Request) (*tm.Response, error) {
	forwarded := false
	for _, a := range r.GetActions() {
		switch a := a.GetAction().(type) {
		case *tm.RequestAction_Emit:
			ctx.Emit(&tm.Persisted{Value: a.Emit.GetValue()})
		case *tm.RequestAction_Forward:
			ctx.Forward(esTwo, "Call", &tm.Request{Id: a.Forward.GetId()})
			forwarded = true
		case *tm.RequestAction_Effect:
			ctx.SideEffect(esTwo, "Call", &tm.Request{Id: a.Effect.GetId()}, a.Effect.GetSynchronous())
		case *tm.RequestAction_Fail:
			ctx.Fail(a.Fail.GetMessage())
		case *tm.RequestAction_Error:
			return nil, errors.New(a.Error.GetMessage())
		case *tm.RequestAction_Panic:
			panic(a.Panic.GetMessage())
		}
	}
	if forwarded {
		return nil, nil
	}
	return &tm.Response{Message: s.value}, nil
}

func (s *esState) persisted(ev *tm.Persisted) error {
	if ev.GetValue() == "bad event" {
		return errors.New("refused bad event")
	}
	s.value += ev.GetValue()
	return nil
}

func (s *esState) snapshot() (*tm.Persisted, error) { return &tm.Persisted{Value: s.value}, nil }

func (s *esState) restore(p *tm.Persisted) error {
	s.value = p.GetValue()
	return nil
}

// esTwoEntity is EventSourcedTwo: Call replies Response{}.
func esTwoEntity() *sdk.EventSourced[*esState] {
	e := sdk.NewEventSourced(sdk.EventSourcedConfig{ServiceName: esTwo}, func(string) *esState { return &esState{} })
	sdk.HandleCommand(e, "Call", func(*esState, *sdk.EventSourcedContext, *tm.Request) (*tm.Response, error) {
		return &tm.Response{}, nil
	})
	return e
}

// veModelEntity is ValueEntityModel: the state is a Persisted value.
func veModelEntity(cfg sdk.ValueEntityConfig) *sdk.ValueEntity[*tm.Persisted] {
	if cfg.ServiceName == "" {
		cfg.ServiceName = veModel
	}
	if cfg.PersistenceID == "" {
		cfg.PersistenceID = "value-entity-model"
	}
	e := sdk.NewValueEntity[*tm.Persisted](cfg)
	sdk.HandleValueCommand(e, "Process", veProcess)
	return e
}

func veProcess(ctx *sdk.ValueEntityContext[*tm.Persisted], r *tm.Request) (*tm.Response, error) {
	forwarded := false
	for _, a := range r.GetActions() {
		switch a := a.GetAction().(type) {
		case *tm.RequestAction_Update:
			ctx.UpdateState(&tm.Persisted{Value: a.Update.GetValue()})
		case *tm.RequestAction_Delete:
			ctx.DeleteState()
		case *tm.RequestAction_Forward:
			ctx.Forward(veTwo, "Call", &tm.Request{Id: a.Forward.GetId()})
			forwarded = true
		case *tm.RequestAction_Effect:
			ctx.SideEffect(veTwo, "Call", &tm.Request{Id: a.Effect.GetId()}, a.Effect.GetSynchronous())
		case *tm.RequestAction_Fail:
			ctx.Fail(a.Fail.GetMessage())
		case *tm.RequestAction_Error:
			return nil, errors.New(a.Error.GetMessage())
		case *tm.RequestAction_Panic:
			panic(a.Panic.GetMessage())
		}
	}
	if forwarded {
		return nil, nil
	}
	return &tm.Response{Message: ctx.State().GetValue()}, nil
}

// veTwoEntity is ValueEntityTwo: Call replies Response{}.
func veTwoEntity() *sdk.ValueEntity[*tm.Persisted] {
	e := sdk.NewValueEntity[*tm.Persisted](sdk.ValueEntityConfig{ServiceName: veTwo})
	sdk.HandleValueCommand(e, "Call", func(*sdk.ValueEntityContext[*tm.Persisted], *tm.Request) (*tm.Response, error) {
		return &tm.Response{}, nil
	})
	return e
}
