package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	crdtpb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/proxy/crdt"
	"github.com/jetstate/jetstate/proxy/model"
)

// The CRDT test function serves one CRDT service, built from descriptors
// made in code, that leaves the choice of delta to the test:
//
//	crdttest.Crdt (CRDT, pid "crdts"):
//	  Apply(Command) -> Value: applies Command.delta (a serialized CrdtDelta) with write
//	    consistency Command.consistency; Command.delete deletes the entity; Command.fail fails,
//	    except "!raw" (sends Command.delta, or an empty delta, as its update without applying
//	    it), "!crash" (a stream-level failure) and "!exit" (ends the stream unanswered).
//	  Get(Command) -> Value: the value the function holds.
//	  Watch(Command) -> stream Value: the value now, then after every change; on cancellation
//	    it answers with Command.delta as its state update (if any).
//
// Value.value is the function's full value (a serialized CrdtDelta, empty if none). The
// function keeps its value as a CloudState support library does: from init, the proxy's
// deltas and its own updates.

const crdtPID = "crdts"

func crdtFileSet() *descriptorpb.FileDescriptorSet {
	str, byt, i32, boo := descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_TYPE_BYTES,
		descriptorpb.FieldDescriptorProto_TYPE_INT32, descriptorpb.FieldDescriptorProto_TYPE_BOOL
	m := func(name, in, out string) *descriptorpb.MethodDescriptorProto {
		return &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(".crdttest." + in), OutputType: proto.String(".crdttest." + out)}
	}
	file := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("crdttest/crdt.proto"),
		Package:    proto.String("crdttest"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"cloudstate/entity_key.proto", "google/api/annotations.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Command"), Field: []*descriptorpb.FieldDescriptorProto{
				field("key", 1, str, true), field("delta", 2, byt, false), field("consistency", 3, i32, false),
				field("delete", 4, boo, false), field("fail", 5, str, false),
			}},
			{Name: proto.String("Value"), Field: []*descriptorpb.FieldDescriptorProto{field("value", 1, byt, false)}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{
			{Name: proto.String("Crdt"), Method: []*descriptorpb.MethodDescriptorProto{
				withHTTP(m("Apply", "Command", "Value"), &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/crdts/{key}"}, Body: "*"}),
				withHTTP(m("Get", "Command", "Value"), &annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/crdts/{key}"}}),
				streaming(withHTTP(m("Watch", "Command", "Value"), &annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/crdts/{key}/watch"}}), false, true),
			}},
		},
	}
	return &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(descriptorpb.File_google_protobuf_descriptor_proto),
		protodesc.ToFileDescriptorProto(cloudstate.File_cloudstate_entity_key_proto),
		protodesc.ToFileDescriptorProto(annotations.File_google_api_http_proto),
		protodesc.ToFileDescriptorProto(annotations.File_google_api_annotations_proto),
		file,
	}}
}

// crdtTypes builds the test messages.
type crdtTypes struct {
	cmd, val protoreflect.MessageDescriptor
}

func newCRDTTypes(t testing.TB) crdtTypes {
	t.Helper()
	files, err := protodesc.NewFiles(crdtFileSet())
	if err != nil {
		t.Fatal(err)
	}
	find := func(name string) protoreflect.MessageDescriptor {
		d, err := files.FindDescriptorByName(protoreflect.FullName("crdttest." + name))
		if err != nil {
			t.Fatal(err)
		}
		return d.(protoreflect.MessageDescriptor)
	}
	return crdtTypes{cmd: find("Command"), val: find("Value")}
}

// crdtCmd is a Command.
type crdtCmd struct {
	key         string
	delta       *crdtpb.CrdtDelta
	consistency crdtpb.CrdtWriteConsistency
	delete      bool
	fail        string
}

func (ct crdtTypes) command(c crdtCmd) *dynamicpb.Message {
	m := dynamicpb.NewMessage(ct.cmd)
	f := ct.cmd.Fields()
	m.Set(f.ByName("key"), protoreflect.ValueOfString(c.key))
	if c.delta != nil {
		b, err := proto.Marshal(c.delta)
		if err != nil {
			panic(err)
		}
		m.Set(f.ByName("delta"), protoreflect.ValueOfBytes(b))
	}
	if c.consistency != 0 {
		m.Set(f.ByName("consistency"), protoreflect.ValueOfInt32(int32(c.consistency)))
	}
	if c.delete {
		m.Set(f.ByName("delete"), protoreflect.ValueOfBool(true))
	}
	if c.fail != "" {
		m.Set(f.ByName("fail"), protoreflect.ValueOfString(c.fail))
	}
	return m
}

func (ct crdtTypes) parseCommand(b []byte) (crdtCmd, error) {
	m := dynamicpb.NewMessage(ct.cmd)
	if err := proto.Unmarshal(b, m); err != nil {
		return crdtCmd{}, err
	}
	f := ct.cmd.Fields()
	c := crdtCmd{
		key: m.Get(f.ByName("key")).String(), consistency: crdtpb.CrdtWriteConsistency(m.Get(f.ByName("consistency")).Int()),
		delete: m.Get(f.ByName("delete")).Bool(), fail: m.Get(f.ByName("fail")).String(),
	}
	if b := m.Get(f.ByName("delta")).Bytes(); len(b) > 0 {
		c.delta = &crdtpb.CrdtDelta{}
		if err := proto.Unmarshal(b, c.delta); err != nil {
			return crdtCmd{}, err
		}
	}
	return c, nil
}

func (ct crdtTypes) value(v *crdtpb.CrdtDelta) *anypb.Any {
	m := dynamicpb.NewMessage(ct.val)
	if v != nil {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(v)
		if err != nil {
			panic(err)
		}
		m.Set(ct.val.Fields().ByName("value"), protoreflect.ValueOfBytes(b))
	}
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return &anypb.Any{TypeUrl: model.TypeURLPrefix + "crdttest.Value", Value: b}
}

// parseValue reads a Value reply: the function's full value (nil if none).
func (ct crdtTypes) parseValue(b []byte) (*crdtpb.CrdtDelta, error) {
	m := dynamicpb.NewMessage(ct.val)
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, err
	}
	raw := m.Get(ct.val.Fields().ByName("value")).Bytes()
	if len(raw) == 0 {
		return nil, nil
	}
	v := &crdtpb.CrdtDelta{}
	return v, proto.Unmarshal(raw, v)
}

// crdtFunction is the CRDT test function. It records every message it
// gets and sends, per stream.
type crdtFunction struct {
	cloudstate.UnimplementedEntityDiscoveryServer
	crdtpb.UnimplementedCrdtServer
	types crdtTypes

	mu       sync.Mutex
	streams  [][]proto.Message // per stream: what it got (CrdtStreamIn) and sent (CrdtStreamOut), in order
	ended    []bool
	reported []string      // the sidecar's reportError messages
	changed  chan struct{} // closed and replaced on every record
}

func newCRDTFunction(t testing.TB) *crdtFunction {
	return &crdtFunction{types: newCRDTTypes(t), changed: make(chan struct{})}
}

func (f *crdtFunction) record(stream int, m proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.streams[stream] = append(f.streams[stream], m)
	close(f.changed)
	f.changed = make(chan struct{})
}

// waitFor waits until cond holds over the recorded streams (bounded).
func (f *crdtFunction) waitFor(t testing.TB, what string, cond func(streams [][]proto.Message, ended []bool) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		f.mu.Lock()
		ok := cond(f.streams, f.ended)
		ch := f.changed
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			f.mu.Lock()
			defer f.mu.Unlock()
			t.Fatalf("waiting for %s: %v; recorded: %v", what, ctx.Err(), f.streams)
		}
	}
}

func (f *crdtFunction) Discover(context.Context, *cloudstate.ProxyInfo) (*cloudstate.EntitySpec, error) {
	b, err := proto.Marshal(crdtFileSet())
	if err != nil {
		return nil, err
	}
	return &cloudstate.EntitySpec{
		Proto:       b,
		Entities:    []*cloudstate.Entity{{EntityType: model.CRDT, ServiceName: "crdttest.Crdt", PersistenceId: crdtPID}},
		ServiceInfo: &cloudstate.ServiceInfo{ServiceName: "crdttest", ProtocolMajorVersion: 0, ProtocolMinorVersion: 2},
	}, nil
}

func (f *crdtFunction) ReportError(_ context.Context, e *cloudstate.UserFunctionError) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reported = append(f.reported, e.GetMessage())
	close(f.changed)
	f.changed = make(chan struct{})
	return &emptypb.Empty{}, nil
}

// waitReported waits until the sidecar reported an error containing want.
func (f *crdtFunction) waitReported(t testing.TB, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		f.mu.Lock()
		found := slices.ContainsFunc(f.reported, func(m string) bool { return strings.Contains(m, want) })
		ch, all := f.changed, slices.Clone(f.reported)
		f.mu.Unlock()
		if found {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("no error reported containing %q; reported: %q", want, all)
		}
	}
}

// ufApply is the function's side of its own delta: the value after it.
func ufApply(value, d *crdtpb.CrdtDelta) (*crdtpb.CrdtDelta, error) {
	if v := d.GetVote(); v != nil {
		old := value.GetVote()
		if old == nil {
			old = &crdtpb.VoteDelta{TotalVoters: 1}
		}
		nv := proto.CloneOf(old)
		if v.GetSelfVote() != old.GetSelfVote() {
			nv.SelfVote = v.GetSelfVote()
			if nv.SelfVote {
				nv.VotesFor++
			} else {
				nv.VotesFor--
			}
		}
		return &crdtpb.CrdtDelta{Delta: &crdtpb.CrdtDelta_Vote{Vote: nv}}, nil
	}
	return crdt.ApplyValue(value, d)
}

func (f *crdtFunction) Handle(stream grpc.BidiStreamingServer[crdtpb.CrdtStreamIn, crdtpb.CrdtStreamOut]) error {
	f.mu.Lock()
	n := len(f.streams)
	f.streams = append(f.streams, nil)
	f.ended = append(f.ended, false)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.ended[n] = true
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
	}()
	var value *crdtpb.CrdtDelta
	watches := map[int64]crdtCmd{}
	send := func(out *crdtpb.CrdtStreamOut) error {
		f.record(n, out)
		return stream.Send(out)
	}
	// changed streams the value to every watch.
	changed := func() error {
		for id := range watches {
			msg := &crdtpb.CrdtStreamedMessage{CommandId: id, ClientAction: replyAction(f.types.value(value))}
			if err := send(&crdtpb.CrdtStreamOut{Message: &crdtpb.CrdtStreamOut_StreamedMessage{StreamedMessage: msg}}); err != nil {
				return err
			}
		}
		return nil
	}
	fail := func(desc string) error {
		return send(&crdtpb.CrdtStreamOut{Message: &crdtpb.CrdtStreamOut_Failure{Failure: &cloudstate.Failure{Description: desc}}})
	}
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		f.record(n, in)
		switch m := in.GetMessage().(type) {
		case *crdtpb.CrdtStreamIn_Init:
			value = m.Init.GetDelta()
		case *crdtpb.CrdtStreamIn_Delta:
			if value, err = crdt.ApplyValue(value, m.Delta); err != nil {
				return fail(err.Error())
			}
			if err := changed(); err != nil {
				return err
			}
		case *crdtpb.CrdtStreamIn_Delete:
		case *crdtpb.CrdtStreamIn_StreamCancelled:
			id := m.StreamCancelled.GetId()
			w := watches[id]
			delete(watches, id)
			resp := &crdtpb.CrdtStreamCancelledResponse{CommandId: id}
			if w.delta != nil {
				if value, err = ufApply(value, w.delta); err != nil {
					return fail(err.Error())
				}
				resp.StateAction = &crdtpb.CrdtStateAction{Action: &crdtpb.CrdtStateAction_Update{Update: w.delta}}
			}
			if err := send(&crdtpb.CrdtStreamOut{Message: &crdtpb.CrdtStreamOut_StreamCancelledResponse{StreamCancelledResponse: resp}}); err != nil {
				return err
			}
			if w.delta != nil {
				if err := changed(); err != nil {
					return err
				}
			}
		case *crdtpb.CrdtStreamIn_Command:
			cmd := m.Command
			c, err := f.types.parseCommand(cmd.GetPayload().GetValue())
			if err != nil {
				return fail(err.Error())
			}
			reply := &crdtpb.CrdtReply{CommandId: cmd.GetId()}
			update := false
			switch {
			case c.fail == "!crash": // a stream-level failure
				return fail("crashed on purpose")
			case c.fail == "!exit": // the stream ends without an answer
				return nil
			case c.fail == "!raw": // the delta as it is, not applied here
				if c.delta == nil {
					c.delta = &crdtpb.CrdtDelta{}
				}
				reply.StateAction = &crdtpb.CrdtStateAction{Action: &crdtpb.CrdtStateAction_Update{Update: c.delta}}
			case c.fail != "":
				reply.ClientAction = failure(cmd.GetId(), c.fail, false)
			case cmd.GetName() == "Watch":
				reply.Streamed = cmd.GetStreamed()
				reply.ClientAction = replyAction(f.types.value(value))
				watches[cmd.GetId()] = c
			case cmd.GetName() == "Apply" && c.delete:
				reply.ClientAction = replyAction(f.types.value(value))
				reply.StateAction = &crdtpb.CrdtStateAction{Action: &crdtpb.CrdtStateAction_Delete{Delete: &crdtpb.CrdtDelete{}}}
			case cmd.GetName() == "Apply" && c.delta != nil:
				if value, err = ufApply(value, c.delta); err != nil {
					return fail(fmt.Sprintf("apply: %v", err))
				}
				reply.ClientAction = replyAction(f.types.value(value))
				reply.StateAction = &crdtpb.CrdtStateAction{Action: &crdtpb.CrdtStateAction_Update{Update: c.delta}, WriteConsistency: c.consistency}
				update = true
			default:
				reply.ClientAction = replyAction(f.types.value(value))
			}
			if err := send(&crdtpb.CrdtStreamOut{Message: &crdtpb.CrdtStreamOut_Reply{Reply: reply}}); err != nil {
				return err
			}
			if update {
				if err := changed(); err != nil {
					return err
				}
			}
		}
	}
}

// serveCRDTFunction runs f on a loopback port.
func serveCRDTFunction(t testing.TB, f *crdtFunction) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	cloudstate.RegisterEntityDiscoveryServer(srv, f)
	crdtpb.RegisterCrdtServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// crdtClient calls a sidecar's crdttest.Crdt.
type crdtClient struct {
	t     testing.TB
	types crdtTypes
	conn  *grpc.ClientConn
}

func newCRDTClient(t testing.TB, addr string) *crdtClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &crdtClient{t: t, types: newCRDTTypes(t), conn: conn}
}

// call calls Apply or Get and returns the function's value.
func (c *crdtClient) call(ctx context.Context, method string, cmd crdtCmd) (*crdtpb.CrdtDelta, error) {
	out := dynamicpb.NewMessage(c.types.val)
	if err := c.conn.Invoke(ctx, "/crdttest.Crdt/"+method, c.types.command(cmd), out); err != nil {
		return nil, err
	}
	b, err := proto.Marshal(out)
	if err != nil {
		return nil, err
	}
	return c.types.parseValue(b)
}

func (c *crdtClient) mustCall(method string, cmd crdtCmd) *crdtpb.CrdtDelta {
	c.t.Helper()
	v, err := c.call(c.t.Context(), method, cmd)
	if err != nil {
		c.t.Fatalf("%s %+v: %v", method, cmd, err)
	}
	return v
}

// watch opens Watch; values yields each value streamed.
func (c *crdtClient) watch(ctx context.Context, cmd crdtCmd) (values func() (*crdtpb.CrdtDelta, error)) {
	c.t.Helper()
	s, err := c.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/crdttest.Crdt/Watch")
	if err != nil {
		c.t.Fatal(err)
	}
	if err := s.SendMsg(c.types.command(cmd)); err != nil {
		c.t.Fatal(err)
	}
	if err := s.CloseSend(); err != nil {
		c.t.Fatal(err)
	}
	return func() (*crdtpb.CrdtDelta, error) {
		out := dynamicpb.NewMessage(c.types.val)
		if err := s.RecvMsg(out); err != nil {
			return nil, err
		}
		b, err := proto.Marshal(out)
		if err != nil {
			return nil, err
		}
		return c.types.parseValue(b)
	}
}
