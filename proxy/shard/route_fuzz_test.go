package shard

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/jetstate/route"
	"github.com/jetstate/jetstate/proxy/entity"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// The services of the routing fuzz targets: an event-sourced and a value
// entity, and an action (which has no entities: a command routed to it is
// refused).
const (
	fuzzCart    = "fuzz.Cart"    // event-sourced, persistence id "cart"
	fuzzCounter = "fuzz.Counter" // value entity, persistence id its name
	fuzzEcho    = "fuzz.Echo"    // action
)

// fuzzModel builds the model of the services above from a descriptor
// written here; key fields carry option 1080 (cloudstate.entity_key) as
// unknown bytes, as a function's descriptors do when the proxy parses them.
func fuzzModel(tb testing.TB) *model.Model {
	tb.Helper()
	key := &descriptorpb.FieldOptions{}
	key.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 1080, protowire.VarintType), 1))
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	optional := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	message := func(name string, keyed bool) *descriptorpb.DescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String("id"), Number: proto.Int32(1), Type: str, Label: optional, JsonName: proto.String("id")}
		if keyed {
			f.Options = key
		}
		return &descriptorpb.DescriptorProto{Name: proto.String(name), Field: []*descriptorpb.FieldDescriptorProto{f}}
	}
	method := func(name, in, out string) *descriptorpb.MethodDescriptorProto {
		return &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(".fuzz." + in), OutputType: proto.String(".fuzz." + out)}
	}
	file := &descriptorpb.FileDescriptorProto{
		Name: proto.String("fuzz.proto"), Package: proto.String("fuzz"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{message("Keyed", true), message("Plain", false)},
		Service: []*descriptorpb.ServiceDescriptorProto{
			{Name: proto.String("Cart"), Method: []*descriptorpb.MethodDescriptorProto{method("AddItem", "Keyed", "Plain"), method("GetCart", "Keyed", "Plain")}},
			{Name: proto.String("Counter"), Method: []*descriptorpb.MethodDescriptorProto{method("Increment", "Keyed", "Plain")}},
			{Name: proto.String("Echo"), Method: []*descriptorpb.MethodDescriptorProto{method("Ping", "Plain", "Plain")}},
		},
	}
	set, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{file}})
	if err != nil {
		tb.Fatal(err)
	}
	m, err := model.BuildModel(&cloudstate.EntitySpec{
		Proto: set,
		Entities: []*cloudstate.Entity{
			{EntityType: model.EventSourced, ServiceName: fuzzCart, PersistenceId: "cart"},
			{EntityType: model.ValueEntity, ServiceName: fuzzCounter},
			{EntityType: model.Action, ServiceName: fuzzEcho},
		},
		ServiceInfo: &cloudstate.ServiceInfo{ProtocolMajorVersion: model.ProtocolMajor, ProtocolMinorVersion: model.ProtocolMinor},
	}, []string{model.EventSourced, model.ValueEntity, model.Action})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// recordingLocal stands for the entity runtimes, which are not under test
// here: it records every command handleRouted passes on and answers as the
// runtimes' contract says (shard.Local): a service without entities (the
// action) is model.ErrUnknownMethod, any other command gets a reply that
// echoes its payload.
type recordingLocal struct {
	mu    sync.Mutex
	calls []localCall
}

type localCall struct {
	svc, key, name string
	payload        *anypb.Any
	deadline       bool // ctx had one
}

func (l *recordingLocal) Handle(ctx context.Context, svc *model.Service, key, name string, payload *anypb.Any) (entity.Result, error) {
	_, dl := ctx.Deadline()
	l.mu.Lock()
	l.calls = append(l.calls, localCall{svc: string(svc.Desc.FullName()), key: key, name: name, payload: payload, deadline: dl})
	l.mu.Unlock()
	if svc.EntityType == model.Action {
		return entity.Result{}, fmt.Errorf("%w: %s has no entities", model.ErrUnknownMethod, svc.Desc.FullName())
	}
	return entity.Result{Action: echoReply(payload)}, nil
}

func (l *recordingLocal) PassivateShard(int) {}

func (l *recordingLocal) take() []localCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	calls := l.calls
	l.calls = nil
	return calls
}

func echoReply(payload *anypb.Any) *cloudstate.ClientAction {
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: &cloudstate.Reply{Payload: payload}}}
}

// routeFixture is a Sharding on a real in-process NATS server with a
// provisioned service, whose Local records the commands it is given.
type routeFixture struct {
	s     *Sharding
	local *recordingLocal
	n     int // shards
}

func newRouteFixture(f *testing.F) *routeFixture {
	f.Helper()
	srv := streamstest.RunServer(f)
	js := srv.JetStream(f)
	cfg := streams.Config{Service: "routefuzz"}
	if err := streams.Provision(f.Context(), js, cfg, streams.StoreConfig{Shards: 8, Storage: streams.MemoryStorage, MemberTTL: time.Second}); err != nil {
		f.Fatal(err)
	}
	own, err := streams.NewOwnership(f.Context(), js, cfg)
	if err != nil {
		f.Fatal(err)
	}
	local := &recordingLocal{}
	s := New(Config{Ownership: own, Conn: srv.Connect(f), Storage: cfg, Model: fuzzModel(f), Local: local, CommandTimeout: time.Second})
	return &routeFixture{s: s, local: local, n: own.Shards()}
}

// shardOf is the shard of key in service svc (known to the model).
func (fx *routeFixture) shardOf(svc, key string) int {
	return fx.s.ShardOf(streams.Entity{Type: fx.s.cfg.Model.Services[svc].PersistenceID, Key: key})
}

// check hands data to handleRouted as a command that arrived on the route
// subject of shard here, and checks its contract: an answer that can be
// sent back (it marshals); INVALID, and no call to Local, for data that
// does not decode, an unknown service or method, an invalid key
// (streams.Entity.Validate), or another shard (by the command's own field
// or by the key's hash); otherwise exactly one call to Local with the
// command as sent, with a deadline, whose result (or error) is the answer.
func (fx *routeFixture) check(t *testing.T, here int, data []byte) {
	t.Helper()
	res := fx.s.handleRouted(here, &nats.Msg{Data: data})
	calls := fx.local.take()
	if res == nil {
		t.Fatalf("%x: no answer", data)
	}
	wire, err := proto.Marshal(res)
	if err != nil {
		t.Fatalf("%x: the answer %v cannot be sent: %v", data, res, err)
	}
	if err := proto.Unmarshal(wire, &route.Result{}); err != nil {
		t.Fatalf("%x: the answer does not decode: %v", data, err)
	}

	var cmd route.Command
	why := ""
	if err := proto.Unmarshal(data, &cmd); err != nil {
		why = "malformed"
	} else if svc := fx.s.cfg.Model.Services[cmd.GetService()]; svc == nil || svc.Methods[cmd.GetName()] == nil {
		why = "unknown method"
	} else if ent := (streams.Entity{Type: svc.PersistenceID, Key: cmd.GetEntityKey()}); ent.Validate() != nil {
		why = "invalid key"
	} else if int(cmd.GetShard()) != here || fx.s.ShardOf(ent) != here {
		why = "another shard"
	}
	if why != "" {
		if res.GetError().GetCode() != route.Error_INVALID || res.GetClientAction() != nil || len(res.GetSideEffects()) > 0 {
			t.Fatalf("%s command %v on shard %d: answer %v, want INVALID", why, &cmd, here, res)
		}
		if len(calls) > 0 {
			t.Fatalf("%s command %v on shard %d reached Local: %+v", why, &cmd, here, calls)
		}
		return
	}
	if len(calls) != 1 {
		t.Fatalf("command %v on shard %d: %d calls to Local, want 1", &cmd, here, len(calls))
	}
	c := calls[0]
	if c.svc != cmd.GetService() || c.name != cmd.GetName() || c.key != cmd.GetEntityKey() || !proto.Equal(c.payload, cmd.GetPayload()) || !c.deadline {
		t.Fatalf("command %v on shard %d reached Local as %+v", &cmd, here, c)
	}
	if cmd.GetService() == fuzzEcho { // Local refuses: no entities
		if res.GetError().GetCode() != route.Error_INVALID {
			t.Fatalf("action command %v: answer %v, want INVALID", &cmd, res)
		}
		return
	}
	if res.GetError() != nil || !proto.Equal(res.GetClientAction(), echoReply(cmd.GetPayload())) {
		t.Fatalf("command %v on shard %d: answer %v, want Local's reply", &cmd, here, res)
	}
}

// validCommands are well-formed commands for every method, each with the
// shard its key hashes to.
func (fx *routeFixture) validCommands() []*route.Command {
	var out []*route.Command
	payload := &anypb.Any{TypeUrl: model.TypeURLPrefix + "fuzz.Keyed", Value: []byte{10, 2, 'k', '1'}}
	for _, c := range []struct{ svc, name, key string }{
		{fuzzCart, "AddItem", "k1"}, {fuzzCart, "GetCart", ""}, {fuzzCounter, "Increment", "c\x00é/.*>"},
		{fuzzEcho, "Ping", ""}, {fuzzCart, "AddItem", strings.Repeat("k", streams.MaxKeyLen)},
	} {
		out = append(out, &route.Command{Service: c.svc, Name: c.name, EntityKey: c.key, Payload: payload,
			TimeoutMs: 1500, Shard: int32(fx.shardOf(c.svc, c.key))})
	}
	return out
}

func marshal(tb testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzHandleRouted gives handleRouted arbitrary bytes as a routed command
// arriving on the route subject of shard here (mod the shard count); the
// seeds are valid commands, each as it is and sent to another shard, and
// malformed ones. See routeFixture.check for what is asserted.
func FuzzHandleRouted(f *testing.F) {
	fx := newRouteFixture(f)
	for _, cmd := range fx.validCommands() {
		f.Add(uint8(cmd.GetShard()), marshal(f, cmd))
		f.Add(uint8(cmd.GetShard()+1), marshal(f, cmd))
	}
	f.Add(uint8(0), []byte{})
	f.Add(uint8(3), []byte{0xff, 0xff, 0xff})
	f.Add(uint8(1), []byte{10, 3, 0xff, 0xfe, 0xfd}) // service not UTF-8
	f.Add(uint8(2), marshal(f, &route.Command{Service: fuzzCart, Name: "Nope"}))
	f.Add(uint8(2), marshal(f, &route.Command{Service: "fuzz.Nope", Name: "AddItem"}))
	f.Add(uint8(0), marshal(f, &route.Command{Service: fuzzCart, Name: "AddItem", EntityKey: strings.Repeat("k", streams.MaxKeyLen+1)}))
	f.Fuzz(func(t *testing.T, here uint8, data []byte) {
		fx.check(t, int(here)%fx.n, data)
	})
}

// FuzzHandleRoutedCommand builds routed commands field by field from a
// valid one, so that most reach Local: the service (by index: one of the
// model's, an unknown one, or none), the method name, the key, the shard
// the command names (its key's shard plus shardOff), the shard it arrives
// on (likewise plus hereOff), the timeout and the payload. See
// routeFixture.check for what is asserted.
func FuzzHandleRoutedCommand(f *testing.F) {
	fx := newRouteFixture(f)
	services := []string{fuzzCart, fuzzCounter, fuzzEcho, "fuzz.Nope", ""}
	f.Add(uint8(0), "AddItem", "k1", int32(0), uint8(0), int64(1500), "fuzz.Keyed", []byte{10, 2, 'k', '1'})
	f.Add(uint8(0), "GetCart", "", int32(0), uint8(0), int64(0), "", []byte{})
	f.Add(uint8(1), "Increment", "c\x00é", int32(0), uint8(0), int64(-5), "fuzz.Keyed", []byte{0xff})
	f.Add(uint8(2), "Ping", "", int32(0), uint8(0), int64(1), "fuzz.Plain", []byte{})
	f.Add(uint8(0), "AddItem", "k1", int32(1), uint8(0), int64(1500), "", []byte{})      // names another shard
	f.Add(uint8(0), "AddItem", "k1", int32(0), uint8(1), int64(1500), "", []byte{})      // arrives on another
	f.Add(uint8(0), "AddItem", "k1", int32(-1<<31), uint8(0), int64(1500), "", []byte{}) // negative shard
	f.Add(uint8(0), "addItem", "k1", int32(0), uint8(0), int64(1500), "", []byte{})      // method name case
	f.Add(uint8(3), "AddItem", "k1", int32(0), uint8(0), int64(1500), "", []byte{})      // unknown service
	f.Add(uint8(0), "AddItem", strings.Repeat("x", 513), int32(0), uint8(0), int64(0), "", []byte{})
	f.Add(uint8(1), "Increment", "k", int32(0), uint8(0), int64(1<<62), "", []byte{}) // timeout overflows
	f.Fuzz(func(t *testing.T, svcIndex uint8, name, key string, shardOff int32, hereOff uint8, timeoutMs int64, typeURL string, value []byte) {
		svc := services[int(svcIndex)%len(services)]
		keyShard := 0
		if fx.s.cfg.Model.Services[svc] != nil {
			keyShard = fx.shardOf(svc, key)
		}
		cmd := &route.Command{Service: svc, Name: name, EntityKey: key, TimeoutMs: timeoutMs,
			Shard: int32(keyShard) + shardOff}
		if typeURL != "" || len(value) > 0 {
			cmd.Payload = &anypb.Any{TypeUrl: typeURL, Value: value}
		}
		data, err := proto.Marshal(cmd)
		if err != nil {
			return // not UTF-8: the sender cannot send it (FuzzHandleRouted sends such bytes)
		}
		fx.check(t, (keyShard+int(hereOff))%fx.n, data)
	})
}
