package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	"github.com/jetstate/jetstate/proxy/model"
)

// The test user function serves three services built from descriptors made
// in code (no generated code, like any function the sidecar meets):
//
//	test.Counter  (event sourced, pid "counter"): Add(AddRequest) -> Value, Get(GetRequest) -> Value,
//	              Fail(GetRequest) -> Value (failure "boom"), Crash (wrong command id), Hang (no answer),
//	              Restart (emits an event, then fails with restart)
//	test.Register (value entity, pid "register"): Set(AddRequest) -> Value, Get, Delete
//	test.Echo     (action): Echo(Value) -> Value, ToCounter(AddRequest) -> Value (forward to Counter/Get
//	              with a side effect Counter/Add)
//
// Counter events are Value{n} deltas; it snapshots every 3 events.

func field(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, key bool) *descriptorpb.FieldDescriptorProto {
	f := &descriptorpb.FieldDescriptorProto{
		Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(),
		Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), JsonName: proto.String(name),
	}
	if key {
		f.Options = &descriptorpb.FieldOptions{}
		proto.SetExtension(f.Options, cloudstate.E_EntityKey, true)
	}
	return f
}

func method(name, in, out string) *descriptorpb.MethodDescriptorProto {
	return &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(".test." + in), OutputType: proto.String(".test." + out)}
}

func streaming(m *descriptorpb.MethodDescriptorProto, client, server bool) *descriptorpb.MethodDescriptorProto {
	m.ClientStreaming, m.ServerStreaming = proto.Bool(client), proto.Bool(server)
	return m
}

// withHTTP adds a google.api.http rule to a method.
func withHTTP(m *descriptorpb.MethodDescriptorProto, rule *annotations.HttpRule) *descriptorpb.MethodDescriptorProto {
	m.Options = &descriptorpb.MethodOptions{}
	proto.SetExtension(m.Options, annotations.E_Http, rule)
	return m
}

func testFileSet() *descriptorpb.FileDescriptorSet {
	str, i64 := descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_TYPE_INT64
	file := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("test/test.proto"),
		Package:    proto.String("test"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"cloudstate/entity_key.proto", "google/api/annotations.proto", "google/api/httpbody.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("AddRequest"), Field: []*descriptorpb.FieldDescriptorProto{field("key", 1, str, true), field("n", 2, i64, false)}},
			{Name: proto.String("GetRequest"), Field: []*descriptorpb.FieldDescriptorProto{field("key", 1, str, true)}},
			{Name: proto.String("Value"), Field: []*descriptorpb.FieldDescriptorProto{field("n", 1, i64, false)}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{
			{Name: proto.String("Counter"), Method: []*descriptorpb.MethodDescriptorProto{
				withHTTP(method("Add", "AddRequest", "Value"), &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/counters/{key}/add"}, Body: "*"}),
				withHTTP(method("Get", "GetRequest", "Value"), &annotations.HttpRule{
					Pattern: &annotations.HttpRule_Get{Get: "/counters/{key}"},
					AdditionalBindings: []*annotations.HttpRule{
						{Pattern: &annotations.HttpRule_Get{Get: "/counters/{key}/n"}, ResponseBody: "n"},
						{Pattern: &annotations.HttpRule_Get{Get: "/counters"}},
					},
				}),
				method("Fail", "GetRequest", "Value"),
				method("Crash", "GetRequest", "Value"), method("Hang", "GetRequest", "Value"), method("Restart", "AddRequest", "Value"),
				method("Die", "GetRequest", "Value"), method("Wait", "GetRequest", "Value"),
			}},
			{Name: proto.String("Register"), Method: []*descriptorpb.MethodDescriptorProto{
				method("Set", "AddRequest", "Value"), method("Get", "GetRequest", "Value"), method("Delete", "GetRequest", "Value"),
			}},
			{Name: proto.String("Echo"), Method: []*descriptorpb.MethodDescriptorProto{
				method("Echo", "Value", "Value"), method("ToCounter", "AddRequest", "Value"),
				withHTTP(&descriptorpb.MethodDescriptorProto{Name: proto.String("Page"), InputType: proto.String(".test.Value"),
					OutputType: proto.String(".google.api.HttpBody")}, &annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/pages/{n}"}}),
				streaming(method("Count", "Value", "Value"), false, true), // replies 1..n
				streaming(method("Sum", "Value", "Value"), true, false),   // sums the stream
				streaming(method("Chat", "Value", "Value"), true, true),   // echoes; n < 0 fails
				// Server streams over HTTP (httpstream_test.go): Numbers replies 1..n like Count,
				// under a rule with path and query bindings; Tens replies 1..n under a rule with
				// response_body; Pages streams n HttpBody chunks (n < 0: one chunk, then a
				// failure); Fails replies 1..n, then fails; Hold replies 1..n, then holds the
				// stream open until the sidecar cancels it.
				streaming(withHTTP(method("Numbers", "Value", "Value"), &annotations.HttpRule{
					Pattern:            &annotations.HttpRule_Get{Get: "/numbers/{n}"},
					AdditionalBindings: []*annotations.HttpRule{{Pattern: &annotations.HttpRule_Get{Get: "/numbers"}}},
				}), false, true),
				streaming(withHTTP(method("Tens", "Value", "Value"), &annotations.HttpRule{
					Pattern: &annotations.HttpRule_Get{Get: "/tens/{n}"}, ResponseBody: "n",
				}), false, true),
				streaming(withHTTP(&descriptorpb.MethodDescriptorProto{Name: proto.String("Pages"), InputType: proto.String(".test.Value"),
					OutputType: proto.String(".google.api.HttpBody")}, &annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/pages/{n}/stream"}}), false, true),
				streaming(method("Fails", "Value", "Value"), false, true),
				streaming(method("Hold", "Value", "Value"), false, true),
			}},
		},
	}
	return &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(descriptorpb.File_google_protobuf_descriptor_proto),
		protodesc.ToFileDescriptorProto(cloudstate.File_cloudstate_entity_key_proto),
		protodesc.ToFileDescriptorProto(annotations.File_google_api_http_proto),
		protodesc.ToFileDescriptorProto(annotations.File_google_api_annotations_proto),
		protodesc.ToFileDescriptorProto(anypb.File_google_protobuf_any_proto),
		protodesc.ToFileDescriptorProto(httpbody.File_google_api_httpbody_proto),
		file,
	}}
}

// testTypes resolves the test messages.
type testTypes struct {
	files *protoregistry.Files
}

func newTestTypes(t testing.TB) testTypes {
	files, err := protodesc.NewFiles(testFileSet())
	if err != nil {
		t.Fatal(err)
	}
	return testTypes{files: files}
}

func (tt testTypes) msg(name string) *dynamicpb.Message {
	d, err := tt.files.FindDescriptorByName(protoreflect.FullName("test." + name))
	if err != nil {
		panic(err)
	}
	return dynamicpb.NewMessage(d.(protoreflect.MessageDescriptor))
}

// add builds an AddRequest (or GetRequest when n is nil).
func (tt testTypes) request(key string, n *int64) *dynamicpb.Message {
	name := "GetRequest"
	if n != nil {
		name = "AddRequest"
	}
	m := tt.msg(name)
	m.Set(m.Descriptor().Fields().ByName("key"), protoreflect.ValueOfString(key))
	if n != nil {
		m.Set(m.Descriptor().Fields().ByName("n"), protoreflect.ValueOfInt64(*n))
	}
	return m
}

func (tt testTypes) value(n int64) *anypb.Any {
	m := tt.msg("Value")
	m.Set(m.Descriptor().Fields().ByName("n"), protoreflect.ValueOfInt64(n))
	b, _ := proto.Marshal(m)
	return &anypb.Any{TypeUrl: "type.googleapis.com/test.Value", Value: b}
}

// intField reads an int64 field from a serialized message of type name.
func (tt testTypes) intField(name, fieldName string, b []byte) int64 {
	m := tt.msg(name)
	if err := proto.Unmarshal(b, m); err != nil {
		panic(err)
	}
	return m.Get(m.Descriptor().Fields().ByName(protoreflect.Name(fieldName))).Int()
}

// record is one message on a stream between sidecar and function.
type record struct {
	stream int // which stream (in order of opening)
	in     proto.Message
	out    proto.Message
	closed bool // the sidecar half-closed the stream
	// cancelled: the sidecar cancelled a server stream (Hold)
	cancelled bool
}

// testFunction is the user function, recording every stream message.
type testFunction struct {
	cloudstate.UnimplementedEntityDiscoveryServer
	eventsourced.UnimplementedEventSourcedServer
	valueentity.UnimplementedValueEntityServer
	actionpb.UnimplementedActionProtocolServer

	types   testTypes
	version [2]int32 // protocol version reported
	hang    chan struct{}
	// release lets one Wait command answer (Wait holds a command until
	// the test sends on it).
	release chan struct{}

	mu        sync.Mutex
	records   []record
	changed   chan struct{} // closed (and replaced) at every record
	streams   int
	discovers int
	info      *cloudstate.ProxyInfo
	errors    []string
}

func (f *testFunction) log(r record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = append(f.records, r)
	close(f.changed)
	f.changed = make(chan struct{})
}

// waitRecords waits until ok holds for what was recorded, checking it at
// every new record (the test timeout is the failsafe).
func (f *testFunction) waitRecords(t *testing.T, what string, ok func([]record) bool) {
	t.Helper()
	for {
		f.mu.Lock()
		rs, changed := append([]record(nil), f.records...), f.changed
		f.mu.Unlock()
		if ok(rs) {
			return
		}
		select {
		case <-changed:
		case <-t.Context().Done():
			t.Fatalf("no %s", what)
		}
	}
}

func (f *testFunction) newStream() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.streams++
	return f.streams
}

// recorded returns a copy of what was recorded so far.
func (f *testFunction) recorded() []record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]record(nil), f.records...)
}

func (f *testFunction) Discover(_ context.Context, info *cloudstate.ProxyInfo) (*cloudstate.EntitySpec, error) {
	f.mu.Lock()
	f.discovers++
	f.info = info
	f.mu.Unlock()
	b, err := proto.Marshal(testFileSet())
	if err != nil {
		return nil, err
	}
	return &cloudstate.EntitySpec{
		Proto: b,
		Entities: []*cloudstate.Entity{
			{EntityType: model.EventSourced, ServiceName: "test.Counter", PersistenceId: "counter"},
			{EntityType: model.ValueEntity, ServiceName: "test.Register", PersistenceId: "register"},
			{EntityType: model.Action, ServiceName: "test.Echo"},
		},
		ServiceInfo: &cloudstate.ServiceInfo{ServiceName: "test", ProtocolMajorVersion: f.version[0], ProtocolMinorVersion: f.version[1]},
	}, nil
}

func (f *testFunction) ReportError(_ context.Context, e *cloudstate.UserFunctionError) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, e.GetMessage())
	return &emptypb.Empty{}, nil
}

func (f *testFunction) Handle(stream grpc.BidiStreamingServer[eventsourced.EventSourcedStreamIn, eventsourced.EventSourcedStreamOut]) error {
	id := f.newStream()
	var sum, seq int64
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			f.log(record{stream: id, closed: true})
			return nil
		}
		if err != nil {
			return err
		}
		f.log(record{stream: id, in: in})
		var out *eventsourced.EventSourcedReply
		switch m := in.GetMessage().(type) {
		case *eventsourced.EventSourcedStreamIn_Init:
			if s := m.Init.GetSnapshot(); s != nil {
				sum, seq = f.types.intField("Value", "n", s.GetSnapshot().GetValue()), s.GetSnapshotSequence()
			}
		case *eventsourced.EventSourcedStreamIn_Event:
			sum += f.types.intField("Value", "n", m.Event.GetPayload().GetValue())
			seq = m.Event.GetSequence()
		case *eventsourced.EventSourcedStreamIn_Command:
			cmd := m.Command
			out = &eventsourced.EventSourcedReply{CommandId: cmd.GetId()}
			switch cmd.GetName() {
			case "Add", "Restart":
				n := f.types.intField("AddRequest", "n", cmd.GetPayload().GetValue())
				out.Events = []*anypb.Any{f.types.value(n)}
				if cmd.GetName() == "Restart" {
					out.ClientAction = failure(cmd.GetId(), "restarting", true)
					break
				}
				sum += n
				seq++
				if seq%3 == 0 {
					out.Snapshot = f.types.value(sum)
				}
				out.ClientAction = replyAction(f.types.value(sum))
			case "Get":
				out.ClientAction = replyAction(f.types.value(sum))
			case "Fail":
				out.ClientAction = failure(cmd.GetId(), "boom", false)
			case "Crash":
				out.CommandId = cmd.GetId() + 100
			case "Hang":
				<-f.hang
				return errors.New("hung up")
			case "Die": // the function's handler crashes: its stream fails
				return errors.New("function crashed")
			case "Wait": // answers once the test releases it
				select {
				case <-f.release:
				case <-stream.Context().Done():
					return stream.Context().Err()
				}
				out.ClientAction = replyAction(f.types.value(sum))
			}
		}
		if out != nil {
			msg := &eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Reply{Reply: out}}
			f.log(record{stream: id, out: msg})
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
	}
}

// valueentity.ValueEntityServer has a Handle method too; it is served by a
// wrapper type to avoid the name clash.
type valueFunction struct{ *testFunction }

func (v valueFunction) Handle(stream grpc.BidiStreamingServer[valueentity.ValueEntityStreamIn, valueentity.ValueEntityStreamOut]) error {
	f := v.testFunction
	id := f.newStream()
	var state *anypb.Any
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			f.log(record{stream: id, closed: true})
			return nil
		}
		if err != nil {
			return err
		}
		f.log(record{stream: id, in: in})
		switch m := in.GetMessage().(type) {
		case *valueentity.ValueEntityStreamIn_Init:
			state = m.Init.GetState().GetValue()
		case *valueentity.ValueEntityStreamIn_Command:
			cmd := m.Command
			out := &valueentity.ValueEntityReply{CommandId: cmd.GetId()}
			switch cmd.GetName() {
			case "Set":
				state = f.types.value(f.types.intField("AddRequest", "n", cmd.GetPayload().GetValue()))
				out.StateAction = &valueentity.ValueEntityAction{Action: &valueentity.ValueEntityAction_Update{Update: &valueentity.ValueEntityUpdate{Value: state}}}
			case "Delete":
				state = nil
				out.StateAction = &valueentity.ValueEntityAction{Action: &valueentity.ValueEntityAction_Delete{Delete: &valueentity.ValueEntityDelete{}}}
			}
			reply := state
			if reply == nil {
				reply = f.types.value(0)
			}
			out.ClientAction = replyAction(reply)
			msg := &valueentity.ValueEntityStreamOut{Message: &valueentity.ValueEntityStreamOut_Reply{Reply: out}}
			f.log(record{stream: id, out: msg})
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
	}
}

func (f *testFunction) HandleUnary(_ context.Context, cmd *actionpb.ActionCommand) (*actionpb.ActionResponse, error) {
	f.log(record{in: cmd})
	switch cmd.GetName() {
	case "Echo":
		return &actionpb.ActionResponse{Response: &actionpb.ActionResponse_Reply{Reply: &cloudstate.Reply{Payload: cmd.GetPayload()}}}, nil
	case "Page":
		n := f.types.intField("Value", "n", cmd.GetPayload().GetValue())
		page, err := anypb.New(&httpbody.HttpBody{ContentType: "text/html", Data: fmt.Appendf(nil, "<h1>page %d</h1>", n)})
		if err != nil {
			return nil, err
		}
		return &actionpb.ActionResponse{Response: &actionpb.ActionResponse_Reply{Reply: &cloudstate.Reply{Payload: page}}}, nil
	case "ToCounter":
		get := &anypb.Any{TypeUrl: "type.googleapis.com/test.GetRequest"}
		key := f.types.msg("AddRequest")
		_ = proto.Unmarshal(cmd.GetPayload().GetValue(), key)
		g := f.types.request(key.Get(key.Descriptor().Fields().ByName("key")).String(), nil)
		get.Value, _ = proto.Marshal(g)
		return &actionpb.ActionResponse{
			Response:    &actionpb.ActionResponse_Forward{Forward: &cloudstate.Forward{ServiceName: "test.Counter", CommandName: "Get", Payload: get}},
			SideEffects: []*cloudstate.SideEffect{{ServiceName: "test.Counter", CommandName: "Add", Payload: cmd.GetPayload(), Synchronous: true}},
		}, nil
	}
	return nil, fmt.Errorf("unknown action %s", cmd.GetName())
}

func (f *testFunction) HandleStreamedOut(cmd *actionpb.ActionCommand, stream grpc.ServerStreamingServer[actionpb.ActionResponse]) error {
	f.log(record{in: cmd})
	n := f.types.intField("Value", "n", cmd.GetPayload().GetValue())
	reply := func(payload *anypb.Any) error {
		return stream.Send(&actionpb.ActionResponse{Response: &actionpb.ActionResponse_Reply{Reply: &cloudstate.Reply{Payload: payload}}})
	}
	switch cmd.GetName() {
	case "Pages":
		pages := n
		if n < 0 {
			pages = 1
		}
		for i := int64(1); i <= pages; i++ {
			page, err := anypb.New(&httpbody.HttpBody{ContentType: "text/html", Data: fmt.Appendf(nil, "<p>%d</p>", i)})
			if err != nil {
				return err
			}
			if err := reply(page); err != nil {
				return err
			}
		}
		if n < 0 {
			return stream.Send(&actionpb.ActionResponse{Response: &actionpb.ActionResponse_Failure{Failure: &cloudstate.Failure{Description: "no more pages"}}})
		}
		return nil
	case "Fails":
		for i := int64(1); i <= n; i++ {
			if err := reply(f.types.value(i)); err != nil {
				return err
			}
		}
		return stream.Send(&actionpb.ActionResponse{Response: &actionpb.ActionResponse_Failure{Failure: &cloudstate.Failure{Description: fmt.Sprintf("broke after %d", n)}}})
	case "Hold": // never ends by itself: whatever ends it is the sidecar cancelling
		defer f.log(record{in: cmd, cancelled: true})
		for i := int64(1); i <= n; i++ {
			if err := reply(f.types.value(i)); err != nil {
				return err
			}
		}
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	for i := int64(1); i <= n; i++ {
		// Each reply carries metadata; only the first one's can become
		// response headers (action_test.go).
		md := &cloudstate.Metadata{Entries: []*cloudstate.MetadataEntry{
			{Key: "x-reply", Value: &cloudstate.MetadataEntry_StringValue{StringValue: strconv.FormatInt(i, 10)}},
			{Key: "x-reply-bin", Value: &cloudstate.MetadataEntry_BytesValue{BytesValue: []byte{0, byte(i)}}},
			{Key: "content-type", Value: &cloudstate.MetadataEntry_StringValue{StringValue: "text/evil"}},
		}}
		if err := stream.Send(&actionpb.ActionResponse{Response: &actionpb.ActionResponse_Reply{Reply: &cloudstate.Reply{Payload: f.types.value(i), Metadata: md}}}); err != nil {
			return err
		}
	}
	return nil
}

func (f *testFunction) HandleStreamedIn(stream grpc.ClientStreamingServer[actionpb.ActionCommand, actionpb.ActionResponse]) error {
	var sum int64
	for {
		cmd, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&actionpb.ActionResponse{Response: &actionpb.ActionResponse_Reply{Reply: &cloudstate.Reply{Payload: f.types.value(sum)}}})
		}
		if err != nil {
			return err
		}
		f.log(record{in: cmd})
		if cmd.GetPayload() != nil {
			sum += f.types.intField("Value", "n", cmd.GetPayload().GetValue())
		}
	}
}

func (f *testFunction) HandleStreamed(stream grpc.BidiStreamingServer[actionpb.ActionCommand, actionpb.ActionResponse]) error {
	for {
		cmd, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		f.log(record{in: cmd})
		if cmd.GetPayload() == nil {
			continue // the header
		}
		resp := &actionpb.ActionResponse{Response: &actionpb.ActionResponse_Reply{Reply: &cloudstate.Reply{Payload: cmd.GetPayload()}}}
		if f.types.intField("Value", "n", cmd.GetPayload().GetValue()) < 0 {
			resp.Response = &actionpb.ActionResponse_Failure{Failure: &cloudstate.Failure{Description: "negative"}}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func replyAction(payload *anypb.Any) *cloudstate.ClientAction {
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: &cloudstate.Reply{Payload: payload}}}
}

func failure(id int64, desc string, restart bool) *cloudstate.ClientAction {
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: &cloudstate.Failure{CommandId: id, Description: desc, Restart: restart}}}
}

// serveFunction runs the test function on a loopback port (or on lis).
func serveFunction(t testing.TB, f *testFunction, lis net.Listener) string {
	t.Helper()
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	srv := grpc.NewServer()
	cloudstate.RegisterEntityDiscoveryServer(srv, f)
	eventsourced.RegisterEventSourcedServer(srv, f)
	valueentity.RegisterValueEntityServer(srv, valueFunction{f})
	actionpb.RegisterActionProtocolServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(func() {
		close(f.hang)
		srv.Stop()
	})
	return lis.Addr().String()
}

func newTestFunction(t testing.TB) *testFunction {
	return &testFunction{types: newTestTypes(t), version: [2]int32{0, 2}, hang: make(chan struct{}), release: make(chan struct{}), changed: make(chan struct{})}
}
