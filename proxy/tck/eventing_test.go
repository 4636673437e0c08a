package tck_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	elmodel "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/eventlogeventing"
	pmodel "github.com/jetstate/jetstate/proxy/model"
)

// The TCK's event-log eventing model (cloudstate/tck/model/eventlogeventing.proto),
// served by a model function that behaves as the TCK's: EventSourcedEntityOne
// emits the request's event, EventSourcedEntityTwo a JSON event; the
// subscriber action answers each step with Response{id = ce-subject,
// message} or forwards it to Effect.
const (
	elSubscriber = "cloudstate.tck.model.eventlogeventing.EventLogSubscriberModel"
	elOne        = "cloudstate.tck.model.eventlogeventing.EventSourcedEntityOne"
	elTwo        = "cloudstate.tck.model.eventlogeventing.EventSourcedEntityTwo"
)

// elModel is the model function.
type elModel struct {
	cloudstate.UnimplementedEntityDiscoveryServer
	eventsourced.UnimplementedEventSourcedServer
	action.UnimplementedActionProtocolServer
}

func (m *elModel) Discover(context.Context, *cloudstate.ProxyInfo) (*cloudstate.EntitySpec, error) {
	return &cloudstate.EntitySpec{
		Proto: fileSet("cloudstate/tck/model/eventlogeventing.proto"),
		Entities: []*cloudstate.Entity{
			{EntityType: pmodel.Action, ServiceName: elSubscriber},
			{EntityType: pmodel.EventSourced, ServiceName: elOne, PersistenceId: "eventlogeventing-one"},
			{EntityType: pmodel.EventSourced, ServiceName: elTwo, PersistenceId: "eventlogeventing-two"},
		},
		ServiceInfo: &cloudstate.ServiceInfo{ServiceName: "tck-eventing-model", ProtocolMajorVersion: 0, ProtocolMinorVersion: 2},
	}, nil
}

func (m *elModel) ReportError(context.Context, *cloudstate.UserFunctionError) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// jsonEvent is the JSON the model's second entity emits: a single message
// property, as the TCK's model prescribes.
type jsonEvent struct {
	Message string `json:"message"`
}

func jsonAny(message string) *anypb.Any {
	b, _ := json.Marshal(jsonEvent{message})
	return &anypb.Any{TypeUrl: "json.cloudstate.io/JsonEvent", Value: protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), b)}
}

func (m *elModel) Handle(stream grpc.BidiStreamingServer[eventsourced.EventSourcedStreamIn, eventsourced.EventSourcedStreamOut]) error {
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		cmd := in.GetCommand()
		if cmd == nil {
			continue
		}
		r := &eventsourced.EventSourcedReply{CommandId: cmd.GetId(), ClientAction: replyOf(&emptypb.Empty{})}
		switch cmd.GetName() {
		case "EmitEvent":
			var req elmodel.EmitEventRequest
			if err := cmd.GetPayload().UnmarshalTo(&req); err != nil {
				return err
			}
			switch e := req.GetEvent().(type) {
			case *elmodel.EmitEventRequest_EventOne:
				r.Events = append(r.Events, anyOf(e.EventOne))
			case *elmodel.EmitEventRequest_EventTwo:
				r.Events = append(r.Events, anyOf(e.EventTwo))
			}
		case "EmitJsonEvent":
			var req elmodel.JsonEvent
			if err := cmd.GetPayload().UnmarshalTo(&req); err != nil {
				return err
			}
			r.Events = append(r.Events, jsonAny(req.GetMessage()))
		}
		if err := stream.Send(&eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Reply{Reply: r}}); err != nil {
			return err
		}
	}
}

func ceSubject(cmd *action.ActionCommand) string {
	for _, e := range cmd.GetMetadata().GetEntries() {
		if e.GetKey() == "ce-subject" {
			return e.GetStringValue()
		}
	}
	return ""
}

// respondStep answers one step for the entity id.
func respondStep(id string, step *elmodel.ProcessStep) *action.ActionResponse {
	switch s := step.GetStep().(type) {
	case *elmodel.ProcessStep_Reply:
		return elReply(id, s.Reply.GetMessage())
	case *elmodel.ProcessStep_Forward:
		return elForward(id, s.Forward.GetMessage())
	}
	return &action.ActionResponse{}
}

func elReply(id, message string) *action.ActionResponse {
	return &action.ActionResponse{Response: &action.ActionResponse_Reply{Reply: &cloudstate.Reply{
		Payload: anyOf(&elmodel.Response{Id: id, Message: message})}}}
}

func elForward(id, message string) *action.ActionResponse {
	return &action.ActionResponse{Response: &action.ActionResponse_Forward{Forward: &cloudstate.Forward{
		ServiceName: elSubscriber, CommandName: "Effect", Payload: anyOf(&elmodel.EffectRequest{Id: id, Message: message})}}}
}

func (m *elModel) HandleUnary(_ context.Context, cmd *action.ActionCommand) (*action.ActionResponse, error) {
	switch cmd.GetName() {
	case "ProcessEventOne":
		var ev elmodel.EventOne
		if err := cmd.GetPayload().UnmarshalTo(&ev); err != nil {
			return nil, err
		}
		return respondStep(ceSubject(cmd), ev.GetStep()), nil
	case "ProcessAnyEvent":
		if !strings.HasPrefix(cmd.GetPayload().GetTypeUrl(), "json.cloudstate.io/") {
			return nil, fmt.Errorf("unexpected %s", cmd.GetPayload().GetTypeUrl())
		}
		v := cmd.GetPayload().GetValue()
		_, _, n := protowire.ConsumeTag(v)
		raw, _ := protowire.ConsumeBytes(v[n:])
		var ev jsonEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, err
		}
		return elReply(ceSubject(cmd), ev.Message), nil
	case "Effect":
		var req elmodel.EffectRequest
		if err := cmd.GetPayload().UnmarshalTo(&req); err != nil {
			return nil, err
		}
		return elReply(req.GetId(), req.GetMessage()), nil
	}
	return nil, fmt.Errorf("unknown command %s", cmd.GetName())
}

func (m *elModel) HandleStreamedOut(cmd *action.ActionCommand, stream grpc.ServerStreamingServer[action.ActionResponse]) error {
	var ev elmodel.EventTwo
	if err := cmd.GetPayload().UnmarshalTo(&ev); err != nil {
		return err
	}
	for _, step := range ev.GetStep() {
		if err := stream.Send(respondStep(ceSubject(cmd), step)); err != nil {
			return err
		}
	}
	return nil
}

func startEventingTCK(t *testing.T) *tck {
	return startTCKWith(t, func(srv *grpc.Server) {
		m := &elModel{}
		cloudstate.RegisterEntityDiscoveryServer(srv, m)
		eventsourced.RegisterEventSourcedServer(srv, m)
		action.RegisterActionProtocolServer(srv, m)
	})
}

func elOut(n int64, events ...*anypb.Any) *eventsourced.EventSourcedStreamOut {
	return &eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Reply{Reply: &eventsourced.EventSourcedReply{
		CommandId: n, ClientAction: replyOf(&emptypb.Empty{}), Events: events,
	}}}
}

func elCommand(name string, payload *anypb.Any) *action.ActionCommand {
	return &action.ActionCommand{ServiceName: elSubscriber, Name: name, Payload: payload}
}

func replyStep(msg string) *elmodel.ProcessStep {
	return &elmodel.ProcessStep{Step: &elmodel.ProcessStep_Reply{Reply: &elmodel.Reply{Message: msg}}}
}

func forwardStep(msg string) *elmodel.ProcessStep {
	return &elmodel.ProcessStep{Step: &elmodel.ProcessStep_Forward{Forward: &elmodel.Forward{Message: msg}}}
}

// --- J. Eventing, proxy tests (items 184-186) ---

func TestTCKEventLogEventing(t *testing.T) {
	t.Run("184 consume an event", func(t *testing.T) {
		x := startEventingTCK(t)
		const id = "eventlogeventing:1"
		eventOne := &elmodel.EventOne{Step: replyStep("some message")}
		req := &elmodel.EmitEventRequest{Id: id, Event: &elmodel.EmitEventRequest_EventOne{EventOne: eventOne}}
		if _, err := elmodel.NewEventSourcedEntityOneClient(x.conn).EmitEvent(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		es := x.callOf(esHandle, id)
		x.in(es, esInit(elOne, id))
		x.in(es, esCmd(id, 1, "EmitEvent", req))
		x.out(es, elOut(1, anyOf(eventOne)))
		call := x.nextCall(acUnary)
		i := x.in(call, elCommand("ProcessEventOne", anyOf(eventOne)))
		x.out(call, elReply(id, "some message"))
		x.closed(call)
		x.noMore()
		// The TCK strips metadata; the subject it relies on is checked here.
		x.ic.mu.Lock()
		cmd := x.ic.events[i].msg.(*action.ActionCommand)
		x.ic.mu.Unlock()
		if ceSubject(cmd) != id {
			t.Fatalf("ce-subject %q, want %q (metadata %v)", ceSubject(cmd), id, cmd.GetMetadata())
		}
	})

	t.Run("185 forward a consumed event", func(t *testing.T) {
		x := startEventingTCK(t)
		const id = "eventlogeventing:2"
		eventOne := &elmodel.EventOne{Step: forwardStep("some message")}
		req := &elmodel.EmitEventRequest{Id: id, Event: &elmodel.EmitEventRequest_EventOne{EventOne: eventOne}}
		if _, err := elmodel.NewEventSourcedEntityOneClient(x.conn).EmitEvent(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		es := x.callOf(esHandle, id)
		x.in(es, esInit(elOne, id))
		x.in(es, esCmd(id, 1, "EmitEvent", req))
		x.out(es, elOut(1, anyOf(eventOne)))
		call := x.nextCall(acUnary)
		x.in(call, elCommand("ProcessEventOne", anyOf(eventOne)))
		x.out(call, elForward(id, "some message"))
		x.closed(call)
		effect := x.nextCall(acUnary)
		x.in(effect, elCommand("Effect", anyOf(&elmodel.EffectRequest{Id: id, Message: "some message"})))
		x.out(effect, elReply(id, "some message"))
		x.closed(effect)
		x.noMore()
	})

	t.Run("186 process JSON events", func(t *testing.T) {
		x := startEventingTCK(t)
		const id = "eventlogeventing:3"
		req := &elmodel.JsonEvent{Id: id, Message: "some json message"}
		if _, err := elmodel.NewEventSourcedEntityTwoClient(x.conn).EmitJsonEvent(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		es := x.callOf(esHandle, id)
		x.in(es, esInit(elTwo, id))
		x.in(es, esCmd(id, 1, "EmitJsonEvent", req))
		x.out(es, elOut(1, jsonAny("some json message")))
		call := x.nextCall(acUnary)
		x.in(call, elCommand("ProcessAnyEvent", jsonAny("some json message")))
		x.out(call, elReply(id, "some json message"))
		x.closed(call)
		x.noMore()
	})

	t.Run("streamed consumer", func(t *testing.T) {
		x := startEventingTCK(t)
		const id = "eventlogeventing:4"
		eventTwo := &elmodel.EventTwo{Step: []*elmodel.ProcessStep{replyStep("one"), replyStep("two")}}
		req := &elmodel.EmitEventRequest{Id: id, Event: &elmodel.EmitEventRequest_EventTwo{EventTwo: eventTwo}}
		if _, err := elmodel.NewEventSourcedEntityOneClient(x.conn).EmitEvent(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		es := x.callOf(esHandle, id)
		x.in(es, esInit(elOne, id))
		x.in(es, esCmd(id, 1, "EmitEvent", req))
		x.out(es, elOut(1, anyOf(eventTwo)))
		call := x.nextCall(acStreamedOut)
		x.in(call, elCommand("ProcessEventTwo", anyOf(eventTwo)))
		x.out(call, elReply(id, "one"))
		x.out(call, elReply(id, "two"))
		x.closed(call)
		x.noMore()
	})
}
