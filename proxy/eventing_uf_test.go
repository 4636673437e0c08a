package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/proxy/eventing"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/streams"
)

// The eventing test function (package evtest), descriptors made in code,
// modelled on the TCK's eventlogeventing model (which this repository does
// not carry as a proto):
//
//	evtest.Source     (event sourced, pid "source"): Emit(EmitRequest) -> Response
//	                  emits count events (default 1): EventOne{n}, EventOne{n+1}, ...;
//	                  kind "json" emits json.cloudstate.io/JsonEvent {"n":n}; kind "two" EventTwo{n}
//	evtest.Subscriber (action) subscribed to event_log "source":
//	                  OnOne(EventOne) -> Response        replies Response{id = ce-subject, n}; fails as planned;
//	                                                     n = 1000 forwards to Effect
//	                  OnTwo(EventTwo) -> stream Response two replies, out.topic "out2"; a planned
//	                                                     failure comes after the first reply
//	                  OnAny(Any) -> Response             JSON events: Response{id = ce-subject, message = the JSON}
//	                  Effect(Response) -> Response       replies message "effect"
//	evtest.Tally      (event sourced, pid "tally"): Count(Keyed) -> Response, subscribed to event_log
//	                  "source" (an entity consumer: Source emits Keyed events with kind "keyed"); adds
//	                  n to the entity's total, emitting it
//	evtest.Relay      (action):
//	                  FromTopic(Any) -> Any              in.topic "in", out.topic "out": replies its input
//	                  Typed(EventOne) -> Response        in.topic "in", out.topic "out": Response{n}
//	                  Publish(Response) -> Response      out.topic "out", called by clients

const evPkg = "evtest"

func evField(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, key bool) *descriptorpb.FieldDescriptorProto {
	f := field(name, num, typ, key)
	return f
}

func evMethod(name, in, out string, ev *cloudstate.Eventing) *descriptorpb.MethodDescriptorProto {
	q := func(s string) string {
		if strings.Contains(s, ".") {
			return "." + s
		}
		return "." + evPkg + "." + s
	}
	m := &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(q(in)), OutputType: proto.String(q(out))}
	if ev != nil {
		m.Options = &descriptorpb.MethodOptions{}
		proto.SetExtension(m.Options, cloudstate.E_Eventing, ev)
	}
	return m
}

func fromLog(pid string) *cloudstate.Eventing {
	return &cloudstate.Eventing{In: &cloudstate.EventSource{Source: &cloudstate.EventSource_EventLog{EventLog: pid}}}
}

func withOut(ev *cloudstate.Eventing, topic string) *cloudstate.Eventing {
	ev.Out = &cloudstate.EventDestination{Destination: &cloudstate.EventDestination_Topic{Topic: topic}}
	return ev
}

func topicInOut(in, out string) *cloudstate.Eventing {
	ev := &cloudstate.Eventing{}
	if in != "" {
		ev.In = &cloudstate.EventSource{Source: &cloudstate.EventSource_Topic{Topic: in}}
	}
	if out != "" {
		ev.Out = &cloudstate.EventDestination{Destination: &cloudstate.EventDestination_Topic{Topic: out}}
	}
	return ev
}

// evFileSet builds the function's descriptors; tune may change the
// services before they are built (discovery validation tests).
func evFileSet(tune func(*descriptorpb.FileDescriptorProto)) *descriptorpb.FileDescriptorSet {
	str, i64 := descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_TYPE_INT64
	file := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("evtest/evtest.proto"),
		Package:    proto.String(evPkg),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"cloudstate/entity_key.proto", "cloudstate/eventing.proto", "google/protobuf/any.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("EmitRequest"), Field: []*descriptorpb.FieldDescriptorProto{
				evField("key", 1, str, true), evField("n", 2, i64, false), evField("count", 3, i64, false), evField("kind", 4, str, false)}},
			{Name: proto.String("EventOne"), Field: []*descriptorpb.FieldDescriptorProto{evField("n", 1, i64, false)}},
			{Name: proto.String("EventTwo"), Field: []*descriptorpb.FieldDescriptorProto{evField("n", 1, i64, false)}},
			{Name: proto.String("Keyed"), Field: []*descriptorpb.FieldDescriptorProto{evField("key", 1, str, true), evField("n", 2, i64, false)}},
			{Name: proto.String("Response"), Field: []*descriptorpb.FieldDescriptorProto{
				evField("id", 1, str, false), evField("n", 2, i64, false), evField("message", 3, str, false)}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{
			{Name: proto.String("Source"), Method: []*descriptorpb.MethodDescriptorProto{evMethod("Emit", "EmitRequest", "Response", nil)}},
			{Name: proto.String("Subscriber"), Method: []*descriptorpb.MethodDescriptorProto{
				evMethod("OnOne", "EventOne", "Response", fromLog("source")),
				streaming(evMethod("OnTwo", "EventTwo", "Response", withOut(fromLog("source"), "out2")), false, true),
				evMethod("OnAny", "google.protobuf.Any", "Response", fromLog("source")),
				evMethod("Effect", "Response", "Response", nil),
			}},
			{Name: proto.String("Tally"), Method: []*descriptorpb.MethodDescriptorProto{evMethod("Count", "Keyed", "Response", fromLog("source"))}},
			{Name: proto.String("Relay"), Method: []*descriptorpb.MethodDescriptorProto{
				evMethod("FromTopic", "google.protobuf.Any", "google.protobuf.Any", topicInOut("in", "out")),
				evMethod("Typed", "EventOne", "Response", topicInOut("in", "out")),
				evMethod("Publish", "Response", "Response", topicInOut("", "out")),
			}},
		},
	}
	if tune != nil {
		tune(file)
	}
	return &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(descriptorpb.File_google_protobuf_descriptor_proto),
		protodesc.ToFileDescriptorProto(anypb.File_google_protobuf_any_proto),
		protodesc.ToFileDescriptorProto(cloudstate.File_cloudstate_entity_key_proto),
		protodesc.ToFileDescriptorProto(cloudstate.File_cloudstate_eventing_proto),
		file,
	}}
}

// evTypes builds and reads the evtest messages.
type evTypes struct{ files *protoregistry.Files }

func newEvTypes(t testing.TB) evTypes {
	files, err := protodesc.NewFiles(evFileSet(nil))
	if err != nil {
		t.Fatal(err)
	}
	return evTypes{files: files}
}

func (et evTypes) msg(name string) *dynamicpb.Message {
	d, err := et.files.FindDescriptorByName(protoreflect.FullName(evPkg + "." + name))
	if err != nil {
		panic(err)
	}
	return dynamicpb.NewMessage(d.(protoreflect.MessageDescriptor))
}

// build returns message name with the given fields set (string or int64).
func (et evTypes) build(name string, fields map[string]any) *dynamicpb.Message {
	m := et.msg(name)
	for k, v := range fields {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(k))
		switch v := v.(type) {
		case string:
			m.Set(fd, protoreflect.ValueOfString(v))
		case int:
			m.Set(fd, protoreflect.ValueOfInt64(int64(v)))
		case int64:
			m.Set(fd, protoreflect.ValueOfInt64(v))
		}
	}
	return m
}

func (et evTypes) anyOf(name string, fields map[string]any) *anypb.Any {
	b, err := proto.Marshal(et.build(name, fields))
	if err != nil {
		panic(err)
	}
	return &anypb.Any{TypeUrl: "type.googleapis.com/" + evPkg + "." + name, Value: b}
}

// read parses b as message name and returns its fields.
func (et evTypes) read(name string, b []byte) map[string]any {
	m := et.msg(name)
	if err := proto.Unmarshal(b, m); err != nil {
		panic(fmt.Sprintf("%s: %v", name, err))
	}
	out := map[string]any{}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		out[string(fd.Name())] = v.Interface()
		return true
	})
	return out
}

func wrapped(v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), v)
}

func unwrapped(b []byte) []byte {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != 1 || typ != protowire.BytesType {
		return nil
	}
	v, _ := protowire.ConsumeBytes(b[n:])
	return v
}

// evCall is one action command the function received.
type evCall struct {
	fn      string // which function instance
	method  string
	payload *anypb.Any
	md      map[string]string
	failed  bool
}

// evFunction is the eventing test user function.
type evFunction struct {
	cloudstate.UnimplementedEntityDiscoveryServer
	eventsourced.UnimplementedEventSourcedServer
	actionpb.UnimplementedActionProtocolServer

	name  string
	types evTypes
	spec  func(*descriptorpb.FileDescriptorProto) // tunes the descriptors
	delay time.Duration                           // per subscriber call

	mu     sync.Mutex
	calls  []evCall
	fails  map[int64]int // n -> failures still to give; n < 0 always fails
	errors []string
}

func newEvFunction(t testing.TB, name string) *evFunction {
	return &evFunction{name: name, types: newEvTypes(t), fails: map[int64]int{}}
}

func (f *evFunction) Discover(context.Context, *cloudstate.ProxyInfo) (*cloudstate.EntitySpec, error) {
	b, err := proto.Marshal(evFileSet(f.spec))
	if err != nil {
		return nil, err
	}
	return &cloudstate.EntitySpec{
		Proto: b,
		Entities: []*cloudstate.Entity{
			{EntityType: model.EventSourced, ServiceName: "evtest.Source", PersistenceId: "source"},
			{EntityType: model.Action, ServiceName: "evtest.Subscriber"},
			{EntityType: model.Action, ServiceName: "evtest.Relay"},
			{EntityType: model.EventSourced, ServiceName: "evtest.Tally", PersistenceId: "tally"},
		},
		ServiceInfo: &cloudstate.ServiceInfo{ServiceName: "evtest", ProtocolMajorVersion: 0, ProtocolMinorVersion: 2},
	}, nil
}

func (f *evFunction) ReportError(_ context.Context, e *cloudstate.UserFunctionError) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, e.GetMessage())
	return &emptypb.Empty{}, nil
}

func (f *evFunction) Handle(stream grpc.BidiStreamingServer[eventsourced.EventSourcedStreamIn, eventsourced.EventSourcedStreamOut]) error {
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if init := in.GetInit(); init != nil && init.GetServiceName() == "evtest.Tally" {
			return f.tally(init.GetEntityId(), stream)
		}
		cmd := in.GetCommand()
		if cmd == nil {
			continue // init, replayed events: the source keeps no state
		}
		req := f.types.read("EmitRequest", cmd.GetPayload().GetValue())
		key, _ := req["key"].(string)
		n, _ := req["n"].(int64)
		count, _ := req["count"].(int64)
		kind, _ := req["kind"].(string)
		count = max(count, 1)
		var events []*anypb.Any
		for i := range count {
			switch kind {
			case "json":
				events = append(events, &anypb.Any{TypeUrl: "json.cloudstate.io/JsonEvent", Value: wrapped(fmt.Appendf(nil, `{"n":%d}`, n+i))})
			case "two":
				events = append(events, f.types.anyOf("EventTwo", map[string]any{"n": n + i}))
			case "keyed": // for the Tally entity named by the key, n times "tally-<key>"
				events = append(events, f.types.anyOf("Keyed", map[string]any{"key": "tally-" + key, "n": n + i}))
			default:
				events = append(events, f.types.anyOf("EventOne", map[string]any{"n": n + i}))
			}
		}
		out := &eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Reply{Reply: &eventsourced.EventSourcedReply{
			CommandId:    cmd.GetId(),
			Events:       events,
			ClientAction: replyAction(f.types.anyOf("Response", map[string]any{"id": key})),
		}}}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}

// tally serves one Tally entity: Count(Keyed) adds n to its total,
// emitting it as an event, and replies with the total.
func (f *evFunction) tally(id string, stream grpc.BidiStreamingServer[eventsourced.EventSourcedStreamIn, eventsourced.EventSourcedStreamOut]) error {
	var total int64
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if ev := in.GetEvent(); ev != nil {
			total += f.types.read("Keyed", ev.GetPayload().GetValue())["n"].(int64)
			continue
		}
		cmd := in.GetCommand()
		if cmd == nil {
			continue
		}
		f.record(evCall{method: "Count", payload: cmd.GetPayload(), md: map[string]string{"entity": id}})
		n := f.types.read("Keyed", cmd.GetPayload().GetValue())["n"].(int64)
		total += n
		out := &eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Reply{Reply: &eventsourced.EventSourcedReply{
			CommandId:    cmd.GetId(),
			Events:       []*anypb.Any{f.types.anyOf("Keyed", map[string]any{"key": id, "n": n})},
			ClientAction: replyAction(f.types.anyOf("Response", map[string]any{"id": id, "n": total})),
		}}}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}

func metadataMap(md *cloudstate.Metadata) map[string]string {
	out := map[string]string{}
	for _, e := range md.GetEntries() {
		out[e.GetKey()] = e.GetStringValue()
	}
	return out
}

func (f *evFunction) record(c evCall) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.fn = f.name
	f.calls = append(f.calls, c)
}

// shouldFail consumes one planned failure of event n.
func (f *evFunction) shouldFail(n int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n < 0 {
		return true
	}
	if f.fails[n] > 0 {
		f.fails[n]--
		return true
	}
	return false
}

func actionReply(payload *anypb.Any, md map[string]string) *actionpb.ActionResponse {
	r := &cloudstate.Reply{Payload: payload}
	for k, v := range md {
		if r.Metadata == nil {
			r.Metadata = &cloudstate.Metadata{}
		}
		r.Metadata.Entries = append(r.Metadata.Entries, &cloudstate.MetadataEntry{Key: k, Value: &cloudstate.MetadataEntry_StringValue{StringValue: v}})
	}
	return &actionpb.ActionResponse{Response: &actionpb.ActionResponse_Reply{Reply: r}}
}

func (f *evFunction) HandleUnary(ctx context.Context, cmd *actionpb.ActionCommand) (*actionpb.ActionResponse, error) {
	md := metadataMap(cmd.GetMetadata())
	c := evCall{method: cmd.GetName(), payload: cmd.GetPayload(), md: md}
	if f.delay > 0 && cmd.GetServiceName() == "evtest.Subscriber" {
		time.Sleep(f.delay)
	}
	switch cmd.GetName() {
	case "OnOne":
		n := f.types.read("EventOne", cmd.GetPayload().GetValue())["n"].(int64)
		if f.shouldFail(n) {
			c.failed = true
			f.record(c)
			return &actionpb.ActionResponse{Response: &actionpb.ActionResponse_Failure{Failure: &cloudstate.Failure{Description: fmt.Sprintf("planned failure of %d", n)}}}, nil
		}
		f.record(c)
		resp := f.types.anyOf("Response", map[string]any{"id": md["ce-subject"], "n": n})
		if n == 1000 {
			return &actionpb.ActionResponse{Response: &actionpb.ActionResponse_Forward{Forward: &cloudstate.Forward{
				ServiceName: "evtest.Subscriber", CommandName: "Effect", Payload: resp}}}, nil
		}
		return actionReply(resp, nil), nil
	case "OnAny":
		f.record(c)
		return actionReply(f.types.anyOf("Response", map[string]any{"id": md["ce-subject"], "message": string(unwrapped(cmd.GetPayload().GetValue()))}), nil), nil
	case "Effect":
		f.record(c)
		r := f.types.read("Response", cmd.GetPayload().GetValue())
		r["message"] = "effect"
		return actionReply(f.types.anyOf("Response", r), nil), nil
	case "FromTopic":
		f.record(c)
		return actionReply(cmd.GetPayload(), map[string]string{"ce-subject": "relayed", "ce-relayedby": "evtest"}), nil
	case "Typed":
		n := f.types.read("EventOne", cmd.GetPayload().GetValue())["n"].(int64)
		if f.shouldFail(n) {
			c.failed = true
			f.record(c)
			return &actionpb.ActionResponse{Response: &actionpb.ActionResponse_Failure{Failure: &cloudstate.Failure{Description: fmt.Sprintf("planned failure of %d", n)}}}, nil
		}
		f.record(c)
		return actionReply(f.types.anyOf("Response", map[string]any{"n": n, "id": md["ce-id"]}), nil), nil
	case "Publish":
		f.record(c)
		return actionReply(cmd.GetPayload(), map[string]string{"ce-type": "evtest.Published"}), nil
	}
	return nil, fmt.Errorf("unknown action %s", cmd.GetName())
}

func (f *evFunction) HandleStreamedOut(cmd *actionpb.ActionCommand, stream grpc.ServerStreamingServer[actionpb.ActionResponse]) error {
	md := metadataMap(cmd.GetMetadata())
	f.record(evCall{method: cmd.GetName(), payload: cmd.GetPayload(), md: md})
	n := f.types.read("EventTwo", cmd.GetPayload().GetValue())["n"].(int64)
	for i := range int64(2) {
		if err := stream.Send(actionReply(f.types.anyOf("Response", map[string]any{"id": md["ce-subject"], "n": n*10 + i}), nil)); err != nil {
			return err
		}
		if i == 0 && f.shouldFail(n) {
			return stream.Send(&actionpb.ActionResponse{Response: &actionpb.ActionResponse_Failure{Failure: &cloudstate.Failure{Description: "planned failure"}}})
		}
	}
	return nil
}

// callsOf returns the recorded calls of method.
func (f *evFunction) callsOf(method string) []evCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []evCall
	for _, c := range f.calls {
		if c.method == method {
			out = append(out, c)
		}
	}
	return out
}

// serveEvFunction runs f on a loopback port.
func serveEvFunction(t testing.TB, f *evFunction) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	cloudstate.RegisterEntityDiscoveryServer(srv, f)
	eventsourced.RegisterEventSourcedServer(srv, f)
	actionpb.RegisterActionProtocolServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// evSidecar is one sidecar in front of an evFunction.
type evSidecar struct {
	p    *proxy.Proxy
	conn *grpc.ClientConn
	stop func() error
}

// startEvSidecar starts a sidecar of service "ev" for the function at
// ufAddr and waits until it serves.
func startEvSidecar(t testing.TB, js jetstream.JetStream, ufAddr string, tune func(*proxy.Config)) *evSidecar {
	t.Helper()
	cfg := proxy.Config{
		Storage:            streams.Config{Service: "ev"},
		Provision:          &streams.StoreConfig{},
		UserFunction:       ufAddr,
		Listen:             "127.0.0.1:0",
		PassivationTimeout: time.Minute,
		CommandTimeout:     5 * time.Second,
		DiscoveryBackoff:   10 * time.Millisecond,
		Eventing:           eventing.Config{RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond},
	}
	if tune != nil {
		tune(&cfg)
	}
	p, err := proxy.New(cfg, js)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Serving():
	case err := <-done:
		cancel()
		t.Fatalf("sidecar stopped before serving: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("sidecar not serving within 20s")
	}
	conn, err := grpc.NewClient(p.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var runErr error
	s := &evSidecar{p: p, conn: conn}
	s.stop = func() error {
		once.Do(func() {
			conn.Close()
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("sidecar Run: %v", err)
		}
	})
	return s
}

// emit calls evtest.Source/Emit.
func (s *evSidecar) emit(t testing.TB, et evTypes, fields map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.conn.Invoke(ctx, "/evtest.Source/Emit", et.build("EmitRequest", fields), et.msg("Response")); err != nil {
		t.Fatalf("Emit(%v): %v", fields, err)
	}
}
