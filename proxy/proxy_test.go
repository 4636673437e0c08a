package proxy_test

//lint:file-ignore SA1019 the sidecar serves v1alpha reflection, which the CloudState TCK requires.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/google/go-cmp/cmp"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// harness runs NATS, the test function and a sidecar, all in-process, and
// a gRPC client of the sidecar's ingress.
type harness struct {
	t      testing.TB
	js     jetstream.JetStream
	uf     *testFunction
	ufAddr string
	types  testTypes
	p      *proxy.Proxy
	conn   *grpc.ClientConn
	stop   func()
}

func startHarness(t testing.TB, tune func(*proxy.Config)) *harness {
	t.Helper()
	srv := streamstest.RunServer(t)
	h := &harness{t: t, js: srv.JetStream(t), uf: newTestFunction(t), types: newTestTypes(t)}
	h.ufAddr = serveFunction(t, h.uf, nil)
	h.startProxy(tune)
	return h
}

func (h *harness) config(tune func(*proxy.Config)) proxy.Config {
	cfg := proxy.Config{
		Storage:            streams.Config{Service: "test"},
		Provision:          &streams.StoreConfig{},
		UserFunction:       h.ufAddr,
		Listen:             "127.0.0.1:0",
		PassivationTimeout: time.Minute,
		CommandTimeout:     5 * time.Second,
		DiscoveryBackoff:   10 * time.Millisecond,
	}
	if tune != nil {
		tune(&cfg)
	}
	return cfg
}

// startProxy starts a sidecar (again) and waits until it serves.
func (h *harness) startProxy(tune func(*proxy.Config)) {
	t := h.t
	t.Helper()
	p, err := proxy.New(h.config(tune), h.js)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Serving():
	case err := <-done:
		t.Fatalf("sidecar stopped before serving: %v", err)
	case <-time.After(time.Minute): // a failsafe
		t.Fatal("sidecar not serving within a minute")
	}
	conn, err := grpc.NewClient(p.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once bool
	h.p, h.conn = p, conn
	h.stop = func() {
		if once {
			return
		}
		once = true
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy Run: %v", err)
		}
	}
	t.Cleanup(h.stop)
}

func ptr(n int64) *int64 { return &n }

// call invokes /test.<method> and returns the reply's n.
func (h *harness) call(method, key string, n *int64) (int64, error) {
	resp := h.types.msg("Value")
	ctx, cancel := context.WithTimeout(h.t.Context(), 10*time.Second)
	defer cancel()
	err := h.conn.Invoke(ctx, "/test."+method, h.types.request(key, n), resp)
	return resp.Get(resp.Descriptor().Fields().ByName("n")).Int(), err
}

func (h *harness) mustCall(method, key string, n *int64, want int64) {
	h.t.Helper()
	got, err := h.call(method, key, n)
	if err != nil || got != want {
		h.t.Fatalf("%s(%q) = %d, %v; want %d", method, key, got, err, want)
	}
}

// streamsOf returns the recorded messages of each stream whose init names
// entity key, in order.
func (h *harness) streamsOf(key string) [][]record {
	byStream := map[int][]record{}
	var order []int
	for _, r := range h.uf.recorded() {
		if r.stream == 0 {
			continue
		}
		if _, ok := byStream[r.stream]; !ok {
			order = append(order, r.stream)
		}
		byStream[r.stream] = append(byStream[r.stream], r)
	}
	var out [][]record
	for _, id := range order {
		rs := byStream[id]
		if entityOf(rs[0]) == key {
			out = append(out, rs)
		}
	}
	return out
}

func entityOf(r record) string {
	switch m := r.in.(type) {
	case *eventsourced.EventSourcedStreamIn:
		return m.GetInit().GetEntityId()
	case *valueentity.ValueEntityStreamIn:
		return m.GetInit().GetEntityId()
	}
	return ""
}

func diffProto(want, got proto.Message) string { return cmp.Diff(want, got, protocmp.Transform()) }

func TestDiscoveryProxyInfoAndModel(t *testing.T) {
	h := startHarness(t, nil)
	h.uf.mu.Lock()
	discovers, info := h.uf.discovers, h.uf.info
	h.uf.mu.Unlock()
	if discovers != 1 {
		t.Fatalf("discover called %d times, want 1", discovers)
	}
	wantInfo := &cloudstate.ProxyInfo{
		ProtocolMajorVersion: 0, ProtocolMinorVersion: 2, ProxyName: "jetstate", ProxyVersion: "dev",
		SupportedEntityTypes: []string{model.EventSourced, model.ValueEntity, model.CRDT, model.Action},
	}
	if d := diffProto(wantInfo, info); d != "" {
		t.Fatalf("ProxyInfo (-want +got):\n%s", d)
	}
	m := h.p.Model()
	for path, typ := range map[string]string{"/test.Counter/Add": model.EventSourced, "/test.Register/Set": model.ValueEntity, "/test.Echo/Echo": model.Action} {
		if got := m.Methods[path]; got == nil || got.Service.EntityType != typ {
			t.Errorf("method %s: %+v, want entity type %s", path, got, typ)
		}
	}
	if got := m.Services["test.Counter"].PersistenceID; got != "counter" {
		t.Errorf("persistence id %q", got)
	}
}

func TestEventSourcedEntity(t *testing.T) {
	h := startHarness(t, nil)
	h.mustCall("Counter/Get", "a", nil, 0)
	h.mustCall("Counter/Add", "a", ptr(2), 2)
	h.mustCall("Counter/Add", "a", ptr(3), 5)
	h.mustCall("Counter/Add", "b", ptr(7), 7)
	h.mustCall("Counter/Add", "a", ptr(10), 15) // third event: snapshot
	h.mustCall("Counter/Get", "a", nil, 15)

	// The exact exchange on a's stream: init without snapshot for a new
	// entity, commands numbered from 1 without metadata, one stream.
	streamsA := h.streamsOf("a")
	if len(streamsA) != 1 {
		t.Fatalf("entity a used %d streams, want 1", len(streamsA))
	}
	rs := streamsA[0]
	wantInit := &eventsourced.EventSourcedStreamIn{Message: &eventsourced.EventSourcedStreamIn_Init{Init: &eventsourced.EventSourcedInit{ServiceName: "test.Counter", EntityId: "a"}}}
	if d := diffProto(wantInit, rs[0].in); d != "" {
		t.Fatalf("init (-want +got):\n%s", d)
	}
	var ids []int64
	for _, r := range rs {
		if in, ok := r.in.(*eventsourced.EventSourcedStreamIn); ok && in.GetCommand() != nil {
			cmd := in.GetCommand()
			ids = append(ids, cmd.GetId())
			if cmd.GetMetadata() != nil || cmd.GetStreamed() || cmd.GetEntityId() != "a" {
				t.Errorf("command %v carries metadata/streamed or a wrong id", cmd)
			}
		}
	}
	if d := cmp.Diff([]int64{1, 2, 3, 4, 5}, ids); d != "" {
		t.Fatalf("command ids (-want +got):\n%s", d)
	}

	// Everything acknowledged is in the journal, with the snapshot at 3.
	j, err := streams.NewJournal(h.js, streams.Config{Service: "test"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r, err := range j.Read(t.Context(), streams.Entity{Type: "counter", Key: "a"}, streams.Version{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if r.Type != "type.googleapis.com/test.Value" {
			t.Fatalf("event type %q", r.Type)
		}
	}
	if n != 3 {
		t.Fatalf("journal of a holds %d events, want 3", n)
	}
}

func TestEventSourcedRecoveryAfterPassivationAndRestart(t *testing.T) {
	h := startHarness(t, func(c *proxy.Config) { c.PassivationTimeout = 100 * time.Millisecond })
	for i, want := range []int64{1, 3, 6, 10} { // four events, snapshot after the third
		h.mustCall("Counter/Add", "p", ptr(int64(i+1)), want)
	}
	// Passivation half-closes the stream.
	waitFor(t, "passivation", func() bool {
		s := h.streamsOf("p")
		return len(s) == 1 && s[0][len(s[0])-1].closed
	})
	h.mustCall("Counter/Get", "p", nil, 10)
	s := h.streamsOf("p")
	if len(s) != 2 {
		t.Fatalf("%d streams, want 2", len(s))
	}
	// Recovery: the snapshot at 3 (value 6), then event 4 only.
	init := s[1][0].in.(*eventsourced.EventSourcedStreamIn).GetInit()
	if init.GetSnapshot().GetSnapshotSequence() != 3 || h.types.intField("Value", "n", init.GetSnapshot().GetSnapshot().GetValue()) != 6 {
		t.Fatalf("init snapshot %v, want seq 3 value 6", init.GetSnapshot())
	}
	ev := s[1][1].in.(*eventsourced.EventSourcedStreamIn).GetEvent()
	if ev.GetSequence() != 4 || h.types.intField("Value", "n", ev.GetPayload().GetValue()) != 4 {
		t.Fatalf("replayed event %v, want seq 4", ev)
	}
	if cmd := s[1][2].in.(*eventsourced.EventSourcedStreamIn).GetCommand(); cmd.GetId() != 1 {
		t.Fatalf("first command after recovery has id %d, want 1", cmd.GetId())
	}

	// A new sidecar over the same storage sees the same state.
	h.stop()
	h.startProxy(nil)
	h.mustCall("Counter/Add", "p", ptr(5), 15)
}

func TestEventSourcedFailures(t *testing.T) {
	logs := &logBuffer{}
	h := startHarness(t, func(c *proxy.Config) {
		c.CommandTimeout = 300 * time.Millisecond
		c.Logger = logs.logger()
	})
	// crashed: the client gets UNAVAILABLE with a request id; why the entity
	// crashed is logged under that id (TestInternalErrorsAreNotShown).
	crashed := func(what string, err error, why string) {
		t.Helper()
		st := status.Convert(err)
		if st.Code() != codes.Unavailable {
			t.Fatalf("%s = %v, want UNAVAILABLE", what, err)
		}
		if line := internalError(t, logs, what, st.Message()); !strings.Contains(line, why) {
			t.Fatalf("%s: the log line %q does not say %q", what, line, why)
		}
	}
	h.mustCall("Counter/Add", "f", ptr(1), 1)

	_, err := h.call("Counter/Fail", "f", nil)
	if s := status.Convert(err); s.Code() != codes.Unknown || s.Message() != "boom" {
		t.Fatalf("failure = %v, want UNKNOWN boom", err)
	}
	h.mustCall("Counter/Get", "f", nil, 1) // same stream, still usable
	if n := len(h.streamsOf("f")); n != 1 {
		t.Fatalf("a user failure reopened the stream (%d streams)", n)
	}

	// Failure with restart: the events are dropped, the stream is closed
	// and reopened at once with a replay.
	_, err = h.call("Counter/Restart", "f", ptr(100))
	if s := status.Convert(err); s.Code() != codes.Unknown || s.Message() != "restarting" {
		t.Fatalf("restart failure = %v", err)
	}
	waitFor(t, "eager re-activation", func() bool { return len(h.streamsOf("f")) == 2 })
	h.mustCall("Counter/Get", "f", nil, 1)

	// A reply for the wrong command id crashes the entity; the next command
	// re-activates it from the journal.
	_, err = h.call("Counter/Crash", "f", nil)
	crashed("crash", err, "reply for command")
	h.mustCall("Counter/Get", "f", nil, 1)

	// The function's stream dies mid-command: the command fails, the entity
	// is re-activated from the journal by the next one.
	_, err = h.call("Counter/Die", "f", nil)
	crashed("die", err, "function crashed")
	h.mustCall("Counter/Get", "f", nil, 1)

	// A function that does not answer within the timeout: the sidecar's
	// command timeout (300ms) ends the call, not the client's (10 s).
	_, err = h.call("Counter/Hang", "f", nil)
	crashed("hang", err, "did not answer within 300ms")
	h.mustCall("Counter/Get", "f", nil, 1)
}

func TestValueEntity(t *testing.T) {
	h := startHarness(t, nil)
	h.mustCall("Register/Get", "r", nil, 0)
	h.mustCall("Register/Set", "r", ptr(4), 4)
	h.mustCall("Register/Set", "r", ptr(9), 9)
	h.mustCall("Register/Get", "r", nil, 9)
	h.mustCall("Register/Delete", "r", nil, 0)
	h.mustCall("Register/Set", "r", ptr(1), 1)

	// init always carries a state message, empty for a new entity.
	s := h.streamsOf("r")
	want := &valueentity.ValueEntityStreamIn{Message: &valueentity.ValueEntityStreamIn_Init{Init: &valueentity.ValueEntityInit{
		ServiceName: "test.Register", EntityId: "r", State: &valueentity.ValueEntityInitState{}}}}
	if d := diffProto(want, s[0][0].in); d != "" {
		t.Fatalf("init (-want +got):\n%s", d)
	}
	// A new sidecar reads the stored value back.
	h.stop()
	h.startProxy(nil)
	h.mustCall("Register/Get", "r", nil, 1)
	s = h.streamsOf("r")
	init := s[len(s)-1][0].in.(*valueentity.ValueEntityStreamIn).GetInit()
	if h.types.intField("Value", "n", init.GetState().GetValue().GetValue()) != 1 {
		t.Fatalf("init state %v, want 1", init.GetState())
	}
}

func TestActionForwardAndSideEffect(t *testing.T) {
	h := startHarness(t, nil)
	// ToCounter runs Add as a synchronous side effect, then forwards to
	// Counter/Get: the client gets the counter after the add.
	h.mustCall("Echo/ToCounter", "c", ptr(6), 6)
	h.mustCall("Echo/ToCounter", "c", ptr(1), 7)
}

func TestBadRequests(t *testing.T) {
	h := startHarness(t, nil)
	ctx := t.Context()
	cases := []struct {
		name   string
		method string
		req    proto.Message
		code   codes.Code
	}{
		{"unknown method", "/test.Counter/Nope", h.types.request("k", nil), codes.Unimplemented},
		{"unknown service", "/nope.Svc/Get", h.types.request("k", nil), codes.Unimplemented},
		{"key too long", "/test.Counter/Get", h.types.request(strings.Repeat("k", streams.MaxKeyLen+1), nil), codes.InvalidArgument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := h.conn.Invoke(ctx, c.method, c.req, h.types.msg("Value"))
			if status.Code(err) != c.code {
				t.Fatalf("%s = %v, want %v", c.method, err, c.code)
			}
		})
	}
	t.Run("malformed protobuf", func(t *testing.T) {
		for _, b := range [][]byte{{0x0a, 0xff, 0xff}, {0xff}, {0x12, 0x05, 'a'}} {
			err := h.conn.Invoke(ctx, "/test.Counter/Get", b, h.types.msg("Value"), grpc.ForceCodec(bytesCodec{}))
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("malformed %x = %v, want INVALID_ARGUMENT", b, err)
			}
		}
		h.mustCall("Counter/Get", "k", nil, 0) // nothing broke
	})
	t.Run("oversized", func(t *testing.T) {
		big := make([]byte, proxy.DefaultMaxMessageSize+1)
		err := h.conn.Invoke(ctx, "/test.Counter/Get", big, h.types.msg("Value"), grpc.ForceCodec(bytesCodec{}))
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("oversized = %v, want RESOURCE_EXHAUSTED", err)
		}
	})
}

// bytesCodec sends a []byte request as it is and decodes replies as protobuf.
type bytesCodec struct{}

func (bytesCodec) Marshal(v any) ([]byte, error)   { return v.([]byte), nil }
func (bytesCodec) Unmarshal(b []byte, v any) error { return proto.Unmarshal(b, v.(proto.Message)) }
func (bytesCodec) Name() string                    { return "proto" }

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within a minute", what)
		}
	}
}

func TestDiscoveryRetriesUntilFunctionIsUp(t *testing.T) {
	srv := streamstest.RunServer(t)
	h := &harness{t: t, js: srv.JetStream(t), uf: newTestFunction(t), types: newTestTypes(t)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.ufAddr = lis.Addr().String()
	lis.Close() // nothing listens yet
	logs := make(logEvents, 1000)
	go func() {
		// The function comes up once discovery failed twice.
		const retry = "user function not ready, retrying discovery"
		if missing := logs.wait(retry, retry); len(missing) > 0 {
			t.Errorf("discovery failed fewer than twice within a minute")
		}
		l, err := net.Listen("tcp", h.ufAddr)
		if err != nil {
			t.Errorf("relisten: %v", err)
			return
		}
		serveFunction(t, h.uf, l)
	}()
	h.startProxy(func(c *proxy.Config) { c.Logger = slog.New(logs) })
	h.mustCall("Counter/Add", "late", ptr(1), 1)
}

func TestDiscoveryRefusesIncompatibleFunction(t *testing.T) {
	srv := streamstest.RunServer(t)
	uf := newTestFunction(t)
	uf.version = [2]int32{0, 1}
	addr := serveFunction(t, uf, nil)
	p, err := proxy.New(proxy.Config{Storage: streams.Config{Service: "test"}, UserFunction: addr, Listen: "127.0.0.1:0"}, srv.JetStream(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = p.Run(ctx)
	var verr *model.ValidationError
	if !errors.As(err, &verr) || !strings.Contains(err.Error(), "incompatible protocol version 0.1") {
		t.Fatalf("Run = %v, want a validation error", err)
	}
	if p.Ready() || p.Addr() != nil {
		t.Fatal("the ingress was opened for an invalid function")
	}
	uf.mu.Lock()
	defer uf.mu.Unlock()
	if len(uf.errors) != 1 || !strings.Contains(uf.errors[0], "0.1") {
		t.Fatalf("reportError got %q", uf.errors)
	}
}

// TestReflection checks TCK item 2: the service list, whatever the filter,
// and an empty answer for an unknown symbol; and that a known symbol comes
// with its file and dependencies (what grpcurl needs).
func TestReflection(t *testing.T) {
	h := startHarness(t, nil)
	stream, err := rpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ask := func(req *rpb.ServerReflectionRequest) *rpb.ServerReflectionResponse {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	wantList := []string{"grpc.reflection.v1alpha.ServerReflection", "test.Counter", "test.Echo", "test.Register"}
	for _, filter := range []string{"", "nonsense.blabla."} {
		resp := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{ListServices: filter}})
		var got []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			got = append(got, s.GetName())
		}
		if d := cmp.Diff(wantList, got); d != "" {
			t.Fatalf("ListServices(%q) (-want +got):\n%s", filter, d)
		}
	}
	resp := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "nonsense.blabla.Void"}})
	if fdr := resp.GetFileDescriptorResponse(); fdr == nil || len(fdr.GetFileDescriptorProto()) != 0 {
		t.Fatalf("unknown symbol: %v, want an empty file list", resp)
	}
	resp = ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "test.Counter"}})
	var names []string
	for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		var fd descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(b, &fd); err != nil {
			t.Fatal(err)
		}
		names = append(names, fd.GetName())
	}
	if d := cmp.Diff([]string{"test/test.proto", "cloudstate/entity_key.proto", "google/protobuf/descriptor.proto",
		"google/api/annotations.proto", "google/api/http.proto", "google/api/httpbody.proto", "google/protobuf/any.proto"}, names); d != "" {
		t.Fatalf("files for test.Counter (-want +got):\n%s", d)
	}
}

// TestHealth checks the standard gRPC health service on the ingress.
func TestHealth(t *testing.T) {
	h := startHarness(t, nil)
	for _, svc := range []string{"", "test.Counter"} {
		resp, err := healthpb.NewHealthClient(h.conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q = %v, %v", svc, resp, err)
		}
	}
}

// TestAdminEndpoints checks readiness and metrics after some commands.
func TestAdminEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := startHarness(t, func(c *proxy.Config) { c.Registry = reg })
	h.mustCall("Counter/Add", "m", ptr(1), 1)
	srv := httptest.NewServer(h.p.AdminHandler(reg))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/ready"); code != http.StatusOK {
		t.Fatalf("/ready = %d", code)
	}
	code, body := get("/metrics")
	for _, want := range []string{
		`jetstate_proxy_commands_total{outcome="ok",service="test.Counter"} 1`,
		`jetstate_proxy_persisted_events_total{service="test.Counter"} 1`,
		`jetstate_proxy_active_entities{service="test.Counter"} 1`,
	} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, body)
		}
	}
	h.stop()
	if code, _ := get("/ready"); code != http.StatusServiceUnavailable {
		t.Fatalf("/ready after stop = %d", code)
	}
}

// TestHTTPJSON checks the HTTP/JSON ingress (TCK items 45, 68, 94 in
// shape): google.api.http rules with path variables, additional bindings,
// response_body and query parameters, the default POST /<service>/<method>
// binding, JSON like the reference proxy, and errors as plain text.
func TestHTTPJSON(t *testing.T) {
	h := startHarness(t, nil)
	base := "http://" + h.p.Addr().String()
	do := func(method, path, body string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	steps := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/counters/h", "", 200, `{"n":"0"}`}, // defaults are emitted
		{"POST", "/counters/h/add", `{"n":"2"}`, 200, `{"n":"2"}`},
		{"POST", "/counters/h/add", `{"n":3}`, 200, `{"n":"5"}`},
		{"POST", "/test.Counter/Add", `{"key":"h","n":3}`, 404, ""}, // has a rule: no default binding
		{"GET", "/counters/h/n", "", 200, `"5"`},                    // response_body
		{"GET", "/counters?key=h", "", 200, `{"n":"5"}`},            // query parameter
		{"POST", "/test.Counter/Fail", `{"key":"h"}`, 500, "boom"},
		{"POST", "/test.Echo/Echo", `{"n":"7"}`, 200, `{"n":"7"}`}, // default binding
		{"GET", "/pages/3", "", 200, "<h1>page 3</h1>"},            // google.api.HttpBody
		{"POST", "/test.Echo/Echo", `{"n":`, 400, ""},
		{"POST", "/counters/h/add", `{"n":"many"}`, 400, ""},
		{"GET", "/nowhere", "", 404, ""},
	}
	for _, s := range steps {
		code, ct, body := do(s.method, s.path, s.body)
		if code != s.code || (s.want != "" && body != s.want) {
			t.Fatalf("%s %s %s = %d %q, want %d %q", s.method, s.path, s.body, code, body, s.code, s.want)
		}
		if code == 200 && !strings.HasPrefix(ct, "application/json") && !(s.path == "/pages/3" && ct == "text/html") {
			t.Fatalf("%s %s: content type %q", s.method, s.path, ct)
		}
		if code == 500 && !strings.HasPrefix(ct, "text/plain") {
			t.Fatalf("%s %s: error content type %q", s.method, s.path, ct)
		}
	}
	if code, _, body := do("GET", "/", ""); code != 404 {
		t.Fatalf("GET / = %d %q", code, body)
	}
	req, _ := http.NewRequest("GET", base+"/anything", nil)
	req.Header.Set("K-Network-Probe", "queue")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "queue" {
		t.Fatalf("knative probe = %d %q", resp.StatusCode, b)
	}
}

// TestStreamedActions covers the three streaming shapes of actions (TCK
// items 38-40, 44 in shape).
func TestStreamedActions(t *testing.T) {
	h := startHarness(t, nil)
	ctx := t.Context()
	value := func(n int64) proto.Message {
		m := h.types.msg("Value")
		m.Set(m.Descriptor().Fields().ByName("n"), protoreflect.ValueOfInt64(n))
		return m
	}
	nOf := func(m proto.Message) int64 {
		return m.ProtoReflect().Get(m.ProtoReflect().Descriptor().Fields().ByName("n")).Int()
	}
	open := func(method string, client, server bool) grpc.ClientStream {
		s, err := h.conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: client, ServerStreams: server}, "/test.Echo/"+method)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	recvAll := func(s grpc.ClientStream) ([]int64, error) {
		var got []int64
		for {
			m := h.types.msg("Value")
			if err := s.RecvMsg(m); err != nil {
				if errors.Is(err, io.EOF) {
					return got, nil
				}
				return got, err
			}
			got = append(got, nOf(m))
		}
	}

	// Server streaming: one request, n replies, then the end.
	s := open("Count", false, true)
	if err := s.SendMsg(value(3)); err != nil {
		t.Fatal(err)
	}
	s.CloseSend()
	if got, err := recvAll(s); err != nil || !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("Count(3) = %v, %v", got, err)
	}

	// Client streaming: the function sees a header, then each payload.
	s = open("Sum", true, false)
	for _, n := range []int64{4, 5, 6} {
		if err := s.SendMsg(value(n)); err != nil {
			t.Fatal(err)
		}
	}
	s.CloseSend()
	if got, err := recvAll(s); err != nil || !slices.Equal(got, []int64{15}) {
		t.Fatalf("Sum = %v, %v", got, err)
	}

	// Bidi: replies interleave with requests; a failure ends the stream.
	s = open("Chat", true, true)
	for _, n := range []int64{7, 8} {
		if err := s.SendMsg(value(n)); err != nil {
			t.Fatal(err)
		}
		m := h.types.msg("Value")
		if err := s.RecvMsg(m); err != nil || nOf(m) != n {
			t.Fatalf("Chat echo of %d = %v, %v", n, m, err)
		}
	}
	if err := s.SendMsg(value(-1)); err != nil {
		t.Fatal(err)
	}
	_, err := recvAll(s)
	if st := status.Convert(err); st.Code() != codes.Unknown || st.Message() != "negative" {
		t.Fatalf("Chat failure = %v", err)
	}

	// The header the function got for Sum names the command, without payload.
	var header *actionpb.ActionCommand
	for _, r := range h.uf.recorded() {
		if c, ok := r.in.(*actionpb.ActionCommand); ok && c.GetName() == "Sum" {
			header = c
			break
		}
	}
	if header == nil || header.GetServiceName() != "test.Echo" || header.GetPayload() != nil {
		t.Fatalf("Sum header = %v", header)
	}
}

// TestConcurrentCommandsOnOneEntity races many commands on one entity: they
// are serialized (one in flight), none is lost, the journal stays dense.
func TestConcurrentCommandsOnOneEntity(t *testing.T) {
	h := startHarness(t, nil)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if _, err := h.call("Counter/Add", "race", ptr(1)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	h.mustCall("Counter/Get", "race", nil, n)
	// The function saw the commands one at a time, numbered 1..n+1.
	s := h.streamsOf("race")
	if len(s) != 1 {
		t.Fatalf("%d streams, want 1", len(s))
	}
	var ids []int64
	inFlight := 0
	for _, r := range s[0] {
		if in, ok := r.in.(*eventsourced.EventSourcedStreamIn); ok && in.GetCommand() != nil {
			ids = append(ids, in.GetCommand().GetId())
			inFlight++
		}
		if r.out != nil {
			inFlight--
		}
		if inFlight > 1 {
			t.Fatal("two commands in flight on one entity")
		}
	}
	if len(ids) != n+1 || ids[0] != 1 || ids[n] != n+1 {
		t.Fatalf("command ids %v", ids)
	}
}

// TestNATSRestart stops the NATS server under a running sidecar and sends
// commands while it is down: they wait in the storage's retries, succeed
// once the server is back, and nothing is lost or stored twice.
func TestNATSRestart(t *testing.T) {
	srv := streamstest.RunServer(t)
	h := &harness{t: t, js: srv.JetStream(t), uf: newTestFunction(t), types: newTestTypes(t)}
	h.ufAddr = serveFunction(t, h.uf, nil)
	retries := make(logEvents, 1000)
	h.startProxy(func(c *proxy.Config) {
		c.Storage.Logger = slog.New(retries)
		c.CommandTimeout = time.Minute // the outage must not time the commands out
	})
	h.mustCall("Counter/Add", "n", ptr(4), 4)
	h.mustCall("Register/Set", "n", ptr(3), 3)

	srv.Stop()
	type result struct {
		method string
		n      int64
		err    error
	}
	results := make(chan result, 3)
	for _, c := range []struct {
		method, key string
		n           *int64
	}{{"Counter/Add", "n", ptr(1)}, {"Register/Set", "n", ptr(7)}, {"Register/Get", "fresh", nil}} {
		go func() {
			resp := h.types.msg("Value")
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			err := h.conn.Invoke(ctx, "/test."+c.method, h.types.request(c.key, c.n), resp)
			results <- result{c.method + " " + c.key, resp.Get(resp.Descriptor().Fields().ByName("n")).Int(), err}
		}()
	}
	// Each is blocked on the server: the active entities' writes and the
	// new entity's recovery read have each been refused at least once.
	retries.waitFor(t, "append retry @.counter.n", "append retry @.register.n", "msg get retry @KV_jetstate_test_values")
	select {
	case r := <-results:
		t.Fatalf("%s finished while NATS was down: %d, %v", r.method, r.n, r.err)
	default:
	}
	srv.Start()
	want := map[string]int64{"Counter/Add n": 5, "Register/Set n": 7, "Register/Get fresh": 0}
	for range 3 {
		r := <-results
		if r.err != nil || r.n != want[r.method] {
			t.Errorf("%s sent during the outage = %d, %v; want %d", r.method, r.n, r.err, want[r.method])
		}
	}
	h.mustCall("Counter/Get", "n", nil, 5)
	h.mustCall("Register/Get", "n", nil, 7)
	h.mustCall("Counter/Get", "fresh", nil, 0) // a new one recovers from the restarted server
	// The write retried through the outage is in the journal once.
	j, err := streams.NewJournal(h.js, streams.Config{Service: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var events []int64
	for r, err := range j.Read(t.Context(), streams.Entity{Type: "counter", Key: "n"}, streams.Version{}) {
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, h.types.intField("Value", "n", r.Data))
	}
	if d := cmp.Diff([]int64{4, 1}, events); d != "" {
		t.Fatalf("journal of n (-want +got):\n%s", d)
	}
}

// logEvents is a slog.Handler that passes on each record as a line, its
// message followed by " @" and its subject or stream attribute if it has
// one (the storage's retries: "append retry @<subject>", "msg get retry
// @<stream>"), dropping what the buffer cannot hold. A test waits for a
// line instead of sleeping.
type logEvents chan string

func (c logEvents) Enabled(context.Context, slog.Level) bool { return true }
func (c logEvents) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c logEvents) WithGroup(string) slog.Handler            { return c }
func (c logEvents) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "subject" || a.Key == "stream" {
			line += " @" + a.Value.String()
		}
		return true
	})
	select {
	case c <- line:
	default:
	}
	return nil
}

// waitFor waits until a line has been logged for each of wants: one with
// the want's message and, if the want has " @suffix", a subject or stream
// ending with suffix. A minute is only a failsafe.
func (c logEvents) waitFor(t *testing.T, wants ...string) {
	t.Helper()
	if missing := c.wait(wants...); len(missing) > 0 {
		t.Fatalf("nothing logged for %q within a minute", missing)
	}
}

// wait is waitFor for any goroutine: it returns the wants still missing
// after a minute.
func (c logEvents) wait(wants ...string) []string {
	missing := slices.Clone(wants)
	failsafe := time.After(time.Minute)
	for len(missing) > 0 {
		select {
		case line := <-c:
			msg, target, _ := strings.Cut(line, " @")
			if i := slices.IndexFunc(missing, func(w string) bool {
				wmsg, suffix, _ := strings.Cut(w, " @")
				return wmsg == msg && strings.HasSuffix(target, suffix)
			}); i >= 0 {
				missing = slices.Delete(missing, i, i+1)
			}
		case <-failsafe:
			return missing
		}
	}
	return nil
}

// TestBoundedQueue fills one entity's queue behind a command the function
// never answers: the next command is refused at once, the queued ones fail
// when the stuck one times out, and the entity then recovers.
func TestBoundedQueue(t *testing.T) {
	h := startHarness(t, func(c *proxy.Config) {
		c.QueueSize = 2
		c.CommandTimeout = time.Second
	})
	h.mustCall("Counter/Add", "q", ptr(3), 3)
	results := make(chan error, 1)
	go func() { _, err := h.call("Counter/Hang", "q", nil); results <- err }()
	waitFor(t, "the stuck command", func() bool {
		for _, r := range h.uf.recorded() {
			if in, ok := r.in.(*eventsourced.EventSourcedStreamIn); ok && in.GetCommand().GetName() == "Hang" {
				return true
			}
		}
		return false
	})
	// Five more while it is stuck: two fit the queue, three are refused.
	const more = 5
	gets := make(chan error, more)
	for range more {
		go func() { _, err := h.call("Counter/Get", "q", nil); gets <- err }()
	}
	codesSeen := map[codes.Code]int{}
	for range more {
		codesSeen[status.Code(<-gets)]++
	}
	if codesSeen[codes.ResourceExhausted] != 3 || codesSeen[codes.Unavailable] != 2 {
		t.Fatalf("outcomes %v, want 3 RESOURCE_EXHAUSTED and 2 UNAVAILABLE", codesSeen)
	}
	if err := <-results; status.Code(err) != codes.Unavailable {
		t.Fatalf("stuck command = %v, want UNAVAILABLE", err)
	}
	h.mustCall("Counter/Get", "q", nil, 3)
}
