package tck_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	pmodel "github.com/jetstate/jetstate/proxy/model"
)

// The TCK's eventlogeventing model (cloudstate/tck/model/eventlogeventing.proto
// upstream) is not among this repository's protos, so its descriptors are
// made here, message for message (oneofs as plain fields), and served by a
// model function that behaves as the TCK's:
//
//	EventLogSubscriberModel (action): ProcessEventOne(EventOne) and ProcessEventTwo(EventTwo) returns
//	    (stream Response) consume event_log "eventlogeventing-one"; ProcessAnyEvent(Any) consumes
//	    "eventlogeventing-two"; Effect(EffectRequest). Each step replies Response{id = ce-subject,
//	    message} or forwards to Effect.
//	EventSourcedEntityOne.EmitEvent(EmitEventRequest) (pid eventlogeventing-one): emits the request's
//	    event_one or event_two.
//	EventSourcedEntityTwo.EmitJsonEvent(JsonEvent) (pid eventlogeventing-two): emits
//	    json.cloudstate.io/JsonEvent.
const (
	elPkg        = "cloudstate.tck.model.eventlogeventing"
	elSubscriber = elPkg + ".EventLogSubscriberModel"
	elOne        = elPkg + ".EventSourcedEntityOne"
	elTwo        = elPkg + ".EventSourcedEntityTwo"
)

func elFiles() *descriptorpb.FileDescriptorSet {
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING
	msgT := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
	f := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, typeName string, key, repeated bool) *descriptorpb.FieldDescriptorProto {
		fd := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(), Label: opt.Enum(), JsonName: proto.String(name)}
		if typeName != "" {
			fd.TypeName = proto.String("." + elPkg + "." + typeName)
		}
		if repeated {
			fd.Label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
		}
		if key {
			fd.Options = &descriptorpb.FieldOptions{}
			proto.SetExtension(fd.Options, cloudstate.E_EntityKey, true)
		}
		return fd
	}
	m := func(name string, fields ...*descriptorpb.FieldDescriptorProto) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{Name: proto.String(name), Field: fields}
	}
	rpc := func(name, in, out, eventLog string, serverStream bool) *descriptorpb.MethodDescriptorProto {
		q := func(s string) string {
			if strings.HasPrefix(s, "google.") {
				return "." + s
			}
			return "." + elPkg + "." + s
		}
		md := &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(q(in)), OutputType: proto.String(q(out))}
		if serverStream {
			md.ServerStreaming = proto.Bool(true)
		}
		if eventLog != "" {
			md.Options = &descriptorpb.MethodOptions{}
			proto.SetExtension(md.Options, cloudstate.E_Eventing, &cloudstate.Eventing{In: &cloudstate.EventSource{Source: &cloudstate.EventSource_EventLog{EventLog: eventLog}}})
		}
		return md
	}
	file := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("cloudstate/tck/model/eventlogeventing.proto"),
		Package:    proto.String(elPkg),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"cloudstate/entity_key.proto", "cloudstate/eventing.proto", "google/protobuf/any.proto", "google/protobuf/empty.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			m("EmitEventRequest", f("id", 1, str, "", true, false), f("event_one", 2, msgT, "EventOne", false, false), f("event_two", 3, msgT, "EventTwo", false, false)),
			m("EventOne", f("step", 2, msgT, "ProcessStep", false, false)),
			m("EventTwo", f("steps", 2, msgT, "ProcessStep", false, true)),
			m("JsonEvent", f("id", 1, str, "", true, false), f("message", 2, str, "", false, false)),
			m("ProcessStep", f("reply", 1, msgT, "Reply", false, false), f("forward", 2, msgT, "Forward", false, false)),
			m("Reply", f("message", 1, str, "", false, false)),
			m("Forward", f("id", 1, str, "", false, false), f("message", 2, str, "", false, false)),
			m("Response", f("id", 1, str, "", false, false), f("message", 2, str, "", false, false)),
			m("EffectRequest", f("id", 1, str, "", false, false), f("message", 2, str, "", false, false)),
		},
		Service: []*descriptorpb.ServiceDescriptorProto{
			{Name: proto.String("EventLogSubscriberModel"), Method: []*descriptorpb.MethodDescriptorProto{
				rpc("ProcessEventOne", "EventOne", "Response", "eventlogeventing-one", false),
				rpc("ProcessEventTwo", "EventTwo", "Response", "eventlogeventing-one", true),
				rpc("Effect", "EffectRequest", "Response", "", false),
				rpc("ProcessAnyEvent", "google.protobuf.Any", "Response", "eventlogeventing-two", false),
			}},
			{Name: proto.String("EventSourcedEntityOne"), Method: []*descriptorpb.MethodDescriptorProto{rpc("EmitEvent", "EmitEventRequest", "google.protobuf.Empty", "", false)}},
			{Name: proto.String("EventSourcedEntityTwo"), Method: []*descriptorpb.MethodDescriptorProto{rpc("EmitJsonEvent", "JsonEvent", "google.protobuf.Empty", "", false)}},
		},
	}
	return &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(descriptorpb.File_google_protobuf_descriptor_proto),
		protodesc.ToFileDescriptorProto(anypb.File_google_protobuf_any_proto),
		protodesc.ToFileDescriptorProto(emptypb.File_google_protobuf_empty_proto),
		protodesc.ToFileDescriptorProto(cloudstate.File_cloudstate_entity_key_proto),
		protodesc.ToFileDescriptorProto(cloudstate.File_cloudstate_eventing_proto),
		file,
	}}
}

// elTypes builds and reads the model's messages.
type elTypes struct{ files *protoregistry.Files }

// registerElTypes makes the model's messages known to protocmp, which then
// compares the Anys holding them by content: dynamic messages marshal their
// fields in no fixed order.
var registerElTypes = sync.OnceValue(func() error {
	files, err := protodesc.NewFiles(elFiles())
	if err != nil {
		return err
	}
	fd, err := files.FindFileByPath("cloudstate/tck/model/eventlogeventing.proto")
	if err != nil {
		return err
	}
	msgs := fd.Messages()
	for i := range msgs.Len() {
		if err := protoregistry.GlobalTypes.RegisterMessage(dynamicpb.NewMessageType(msgs.Get(i))); err != nil {
			return err
		}
	}
	return nil
})

func newElTypes(t *testing.T) elTypes {
	if err := registerElTypes(); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(elFiles())
	if err != nil {
		t.Fatal(err)
	}
	return elTypes{files}
}

func (et elTypes) new(name string) *dynamicpb.Message {
	d, err := et.files.FindDescriptorByName(protoreflect.FullName(elPkg + "." + name))
	if err != nil {
		panic(err)
	}
	return dynamicpb.NewMessage(d.(protoreflect.MessageDescriptor))
}

// msg builds a message: string values set string fields, messages set
// message fields, slices of messages set repeated fields.
func (et elTypes) msg(name string, fields map[string]any) *dynamicpb.Message {
	m := et.new(name)
	for k, v := range fields {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(k))
		switch v := v.(type) {
		case string:
			m.Set(fd, protoreflect.ValueOfString(v))
		case *dynamicpb.Message:
			m.Set(fd, protoreflect.ValueOfMessage(v))
		case []*dynamicpb.Message:
			l := m.Mutable(fd).List()
			for _, e := range v {
				l.Append(protoreflect.ValueOfMessage(e))
			}
		}
	}
	return m
}

func (et elTypes) parse(name string, b []byte) (*dynamicpb.Message, error) {
	m := et.new(name)
	return m, proto.Unmarshal(b, m)
}

func str(m protoreflect.Message, name string) string {
	return m.Get(m.Descriptor().Fields().ByName(protoreflect.Name(name))).String()
}

func sub(m protoreflect.Message, name string) protoreflect.Message {
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
	if !m.Has(fd) {
		return nil
	}
	return m.Get(fd).Message()
}

func (et elTypes) replyStep(msg string) *dynamicpb.Message {
	return et.msg("ProcessStep", map[string]any{"reply": et.msg("Reply", map[string]any{"message": msg})})
}

func (et elTypes) forwardStep(id, msg string) *dynamicpb.Message {
	return et.msg("ProcessStep", map[string]any{"forward": et.msg("Forward", map[string]any{"id": id, "message": msg})})
}

// elModel is the model function.
type elModel struct {
	cloudstate.UnimplementedEntityDiscoveryServer
	eventsourced.UnimplementedEventSourcedServer
	action.UnimplementedActionProtocolServer
	types elTypes
}

func (m *elModel) Discover(context.Context, *cloudstate.ProxyInfo) (*cloudstate.EntitySpec, error) {
	b, err := proto.Marshal(elFiles())
	if err != nil {
		return nil, err
	}
	return &cloudstate.EntitySpec{
		Proto: b,
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

// jsonEvent is the JSON the model's second entity emits.
type jsonEvent struct {
	ID      string `json:"id"`
	Message string `json:"message"`
}

func jsonAny(id, message string) *anypb.Any {
	b, _ := json.Marshal(jsonEvent{id, message})
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
		r := &eventsourced.EventSourcedReply{CommandId: cmd.GetId(), ClientAction: &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: &cloudstate.Reply{Payload: anyOf(&emptypb.Empty{})}}}}
		switch cmd.GetName() {
		case "EmitEvent":
			req, err := m.types.parse("EmitEventRequest", cmd.GetPayload().GetValue())
			if err != nil {
				return err
			}
			if e := sub(req, "event_one"); e != nil {
				r.Events = append(r.Events, anyOf(e.Interface()))
			}
			if e := sub(req, "event_two"); e != nil {
				r.Events = append(r.Events, anyOf(e.Interface()))
			}
		case "EmitJsonEvent":
			req, err := m.types.parse("JsonEvent", cmd.GetPayload().GetValue())
			if err != nil {
				return err
			}
			r.Events = append(r.Events, jsonAny(str(req, "id"), str(req, "message")))
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

// respond answers one step for the entity id.
func (m *elModel) respond(id string, step protoreflect.Message) *action.ActionResponse {
	if r := sub(step, "reply"); r != nil {
		return elReply(m.types, id, str(r, "message"))
	}
	if f := sub(step, "forward"); f != nil {
		return elForward(m.types, str(f, "id"), str(f, "message"))
	}
	return &action.ActionResponse{}
}

func elReply(et elTypes, id, message string) *action.ActionResponse {
	return &action.ActionResponse{Response: &action.ActionResponse_Reply{Reply: &cloudstate.Reply{
		Payload: anyOf(et.msg("Response", map[string]any{"id": id, "message": message}))}}}
}

func elForward(et elTypes, id, message string) *action.ActionResponse {
	return &action.ActionResponse{Response: &action.ActionResponse_Forward{Forward: &cloudstate.Forward{
		ServiceName: elSubscriber, CommandName: "Effect", Payload: anyOf(et.msg("EffectRequest", map[string]any{"id": id, "message": message}))}}}
}

func (m *elModel) HandleUnary(_ context.Context, cmd *action.ActionCommand) (*action.ActionResponse, error) {
	switch cmd.GetName() {
	case "ProcessEventOne":
		ev, err := m.types.parse("EventOne", cmd.GetPayload().GetValue())
		if err != nil {
			return nil, err
		}
		return m.respond(ceSubject(cmd), sub(ev, "step")), nil
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
		return elReply(m.types, ceSubject(cmd), ev.Message), nil
	case "Effect":
		req, err := m.types.parse("EffectRequest", cmd.GetPayload().GetValue())
		if err != nil {
			return nil, err
		}
		return elReply(m.types, str(req, "id"), str(req, "message")), nil
	}
	return nil, fmt.Errorf("unknown command %s", cmd.GetName())
}

func (m *elModel) HandleStreamedOut(cmd *action.ActionCommand, stream grpc.ServerStreamingServer[action.ActionResponse]) error {
	ev, err := m.types.parse("EventTwo", cmd.GetPayload().GetValue())
	if err != nil {
		return err
	}
	steps := ev.Get(ev.Descriptor().Fields().ByName("steps")).List()
	for i := range steps.Len() {
		if err := stream.Send(m.respond(ceSubject(cmd), steps.Get(i).Message())); err != nil {
			return err
		}
	}
	return nil
}

func startEventingTCK(t *testing.T) (*tck, elTypes) {
	et := newElTypes(t)
	x := startTCKWith(t, func(srv *grpc.Server) {
		m := &elModel{types: et}
		cloudstate.RegisterEntityDiscoveryServer(srv, m)
		eventsourced.RegisterEventSourcedServer(srv, m)
		action.RegisterActionProtocolServer(srv, m)
	})
	return x, et
}

func elOut(n int64, events ...*anypb.Any) *eventsourced.EventSourcedStreamOut {
	return &eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Reply{Reply: &eventsourced.EventSourcedReply{
		CommandId: n, ClientAction: &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: &cloudstate.Reply{Payload: anyOf(&emptypb.Empty{})}}},
		Events: events,
	}}}
}

func elCommand(name string, payload *anypb.Any) *action.ActionCommand {
	return &action.ActionCommand{ServiceName: elSubscriber, Name: name, Payload: payload}
}

// invoke calls the sidecar with a dynamic request; the reply is Empty.
func (x *tck) invoke(method string, req proto.Message) {
	x.t.Helper()
	if err := x.conn.Invoke(x.t.Context(), method, req, &emptypb.Empty{}); err != nil {
		x.t.Fatalf("%s: %v", method, err)
	}
}

// --- J. Eventing, proxy tests (items 184-186) ---

func TestTCKEventLogEventing(t *testing.T) {
	t.Run("184 consume an event", func(t *testing.T) {
		x, et := startEventingTCK(t)
		const id = "eventlogeventing:1"
		eventOne := et.msg("EventOne", map[string]any{"step": et.replyStep("some message")})
		req := et.msg("EmitEventRequest", map[string]any{"id": id, "event_one": eventOne})
		x.invoke("/"+elOne+"/EmitEvent", req)
		es := x.callOf(esHandle, id)
		x.in(es, esInit(elOne, id))
		x.in(es, esCmd(id, 1, "EmitEvent", req))
		x.out(es, elOut(1, anyOf(eventOne)))
		call := x.nextCall(acUnary)
		i := x.in(call, elCommand("ProcessEventOne", anyOf(eventOne)))
		x.out(call, elReply(et, id, "some message"))
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
		x, et := startEventingTCK(t)
		const id = "eventlogeventing:2"
		eventOne := et.msg("EventOne", map[string]any{"step": et.forwardStep(id, "some message")})
		req := et.msg("EmitEventRequest", map[string]any{"id": id, "event_one": eventOne})
		x.invoke("/"+elOne+"/EmitEvent", req)
		es := x.callOf(esHandle, id)
		x.in(es, esInit(elOne, id))
		x.in(es, esCmd(id, 1, "EmitEvent", req))
		x.out(es, elOut(1, anyOf(eventOne)))
		call := x.nextCall(acUnary)
		x.in(call, elCommand("ProcessEventOne", anyOf(eventOne)))
		x.out(call, elForward(et, id, "some message"))
		x.closed(call)
		effect := x.nextCall(acUnary)
		x.in(effect, elCommand("Effect", anyOf(et.msg("EffectRequest", map[string]any{"id": id, "message": "some message"}))))
		x.out(effect, elReply(et, id, "some message"))
		x.closed(effect)
		x.noMore()
	})

	t.Run("186 process JSON events", func(t *testing.T) {
		x, et := startEventingTCK(t)
		const id = "eventlogeventing:3"
		req := et.msg("JsonEvent", map[string]any{"id": id, "message": "some json message"})
		x.invoke("/"+elTwo+"/EmitJsonEvent", req)
		es := x.callOf(esHandle, id)
		x.in(es, esInit(elTwo, id))
		x.in(es, esCmd(id, 1, "EmitJsonEvent", req))
		x.out(es, elOut(1, jsonAny(id, "some json message")))
		call := x.nextCall(acUnary)
		x.in(call, elCommand("ProcessAnyEvent", jsonAny(id, "some json message")))
		x.out(call, elReply(et, id, "some json message"))
		x.closed(call)
		x.noMore()
	})

	t.Run("streamed consumer", func(t *testing.T) {
		x, et := startEventingTCK(t)
		const id = "eventlogeventing:4"
		eventTwo := et.msg("EventTwo", map[string]any{"steps": []*dynamicpb.Message{et.replyStep("one"), et.replyStep("two")}})
		req := et.msg("EmitEventRequest", map[string]any{"id": id, "event_two": eventTwo})
		x.invoke("/"+elOne+"/EmitEvent", req)
		es := x.callOf(esHandle, id)
		x.in(es, esInit(elOne, id))
		x.in(es, esCmd(id, 1, "EmitEvent", req))
		x.out(es, elOut(1, anyOf(eventTwo)))
		call := x.nextCall(acStreamedOut)
		x.in(call, elCommand("ProcessEventTwo", anyOf(eventTwo)))
		x.out(call, elReply(et, id, "one"))
		x.out(call, elReply(et, id, "two"))
		x.closed(call)
		x.noMore()
	})
}
