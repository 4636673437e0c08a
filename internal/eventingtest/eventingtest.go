// Package eventingtest is a user function with eventing subscriptions, on
// the sdk, for the tests of packages that show or measure eventing (the
// console, the Grafana dashboard's). Only tests import it.
package eventingtest

import (
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	el "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/eventlogeventing"
	"github.com/jetstate/jetstate/sdk"
)

// Names of the function's services.
const (
	EntityOne      = "cloudstate.tck.model.eventlogeventing.EventSourcedEntityOne"
	EntityTwo      = "cloudstate.tck.model.eventlogeventing.EventSourcedEntityTwo"
	Subscriber     = "cloudstate.tck.model.eventlogeventing.EventLogSubscriberModel"
	PersistenceOne = "eventlogeventing-one"
	PersistenceTwo = "eventlogeventing-two"
)

// Emit is the request that makes entity id of EntityOne store an EventOne,
// which the subscriber accepts, or refuses if refuse.
func Emit(id string, refuse bool) *el.EmitEventRequest {
	msg := "accept"
	if refuse {
		msg = "refuse"
	}
	step := &el.ProcessStep{Step: &el.ProcessStep_Reply{Reply: &el.Reply{Message: msg}}}
	return &el.EmitEventRequest{Id: id, Event: &el.EmitEventRequest_EventOne{EventOne: &el.EventOne{Step: step}}}
}

// Entities is a function with eventing: two event-sourced entities (the
// TCK's eventlogeventing model, persistence ids PersistenceOne and
// PersistenceTwo) and an action consuming their journals. The action
// refuses an EventOne whose reply step says "refuse" (Emit) and accepts
// every other event.
func Entities() []sdk.Entity {
	one := sdk.NewEventSourced(sdk.EventSourcedConfig{ServiceName: EntityOne, PersistenceID: PersistenceOne},
		func(string) *struct{} { return &struct{}{} })
	sdk.HandleCommand(one, "EmitEvent", func(_ *struct{}, ctx *sdk.EventSourcedContext, in *el.EmitEventRequest) (*emptypb.Empty, error) {
		ctx.Emit(in.GetEventOne())
		return &emptypb.Empty{}, nil
	})
	sdk.HandleEvent(one, func(*struct{}, *el.EventOne) error { return nil })
	two := sdk.NewEventSourced(sdk.EventSourcedConfig{ServiceName: EntityTwo, PersistenceID: PersistenceTwo},
		func(string) *struct{} { return &struct{}{} })
	sdk.HandleCommand(two, "EmitJsonEvent", func(_ *struct{}, ctx *sdk.EventSourcedContext, in *el.JsonEvent) (*emptypb.Empty, error) {
		ctx.Emit(in)
		return &emptypb.Empty{}, nil
	})
	sdk.HandleEvent(two, func(*struct{}, *el.JsonEvent) error { return nil })

	sub := sdk.NewAction(sdk.ActionConfig{ServiceName: Subscriber})
	sdk.HandleUnary(sub, "ProcessEventOne", func(ctx *sdk.ActionContext, in *el.EventOne) (*el.Response, error) {
		if in.GetStep().GetReply().GetMessage() == "refuse" {
			ctx.Fail("refused")
			return nil, nil
		}
		return &el.Response{Message: "ok"}, nil
	})
	sdk.HandleStreamedOut(sub, "ProcessEventTwo", func(*sdk.ActionContext, *el.EventTwo, func(*el.Response) error) error { return nil })
	sdk.HandleUnary(sub, "Effect", func(_ *sdk.ActionContext, in *el.EffectRequest) (*el.Response, error) {
		return &el.Response{Id: in.GetId(), Message: in.GetMessage()}, nil
	})
	sdk.HandleUnary(sub, "ProcessAnyEvent", func(_ *sdk.ActionContext, _ *anypb.Any) (*el.Response, error) {
		return &el.Response{}, nil
	})
	return []sdk.Entity{one, two, sub}
}
