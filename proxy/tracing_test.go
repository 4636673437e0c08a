package proxy_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/projections"
	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	crdtpb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/proxy/entity"
	"github.com/jetstate/jetstate/proxy/eventing"
	"github.com/jetstate/jetstate/proxy/shard"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// spans is a TracerProvider exporting, as each span ends, to the SDK's
// in-memory exporter.
type spans struct {
	tp  *sdktrace.TracerProvider
	exp *tracetest.InMemoryExporter
}

func newSpans(t testing.TB) *spans {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &spans{tp: tp, exp: exp}
}

// named returns the ended spans called name.
func (s *spans) named(name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, sp := range s.exp.GetSpans() {
		if sp.Name == name {
			out = append(out, sp)
		}
	}
	return out
}

// one waits until exactly one span called name has ended and returns it
// (a span ends after the answer it is part of, so the test waits for it).
func (s *spans) one(t *testing.T, name string) tracetest.SpanStub {
	t.Helper()
	waitFor(t, "span "+name, func() bool { return len(s.named(name)) > 0 })
	got := s.named(name)
	if len(got) != 1 {
		t.Fatalf("%d spans %s, want 1", len(got), name)
	}
	return got[0]
}

// childOf fails unless child's parent is parent (same trace).
func childOf(t *testing.T, child, parent tracetest.SpanStub) {
	t.Helper()
	if child.SpanContext.TraceID() != parent.SpanContext.TraceID() || child.Parent.SpanID() != parent.SpanContext.SpanID() {
		t.Errorf("span %s: parent %s/%s, want %s (%s/%s)", child.Name, child.Parent.TraceID(), child.Parent.SpanID(),
			parent.Name, parent.SpanContext.TraceID(), parent.SpanContext.SpanID())
	}
}

func attr(sp tracetest.SpanStub, key string) attribute.Value {
	for _, kv := range sp.Attributes {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// traceparent renders a span's context as the W3C header.
func traceparent(sc trace.SpanContext) string {
	return fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags())
}

// sinkRequests is an HTTP sink target recording the headers of what it
// was sent.
type sinkRequests struct {
	mu      sync.Mutex
	headers []http.Header
}

func newSinkTarget(t *testing.T) (*sinkRequests, string) {
	s := &sinkRequests{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.headers = append(s.headers, r.Header.Clone())
		s.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func (s *sinkRequests) got() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.headers...)
}

// runProjection projects the test service's counter events to target
// until the test ends.
func runProjection(t *testing.T, js jetstream.JetStream, target string, tp trace.TracerProvider) {
	t.Helper()
	sink, err := projections.NewHTTPSink(projections.HTTPSinkConfig{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	p, err := projections.New(js, projections.Config{
		Name: "traced", Storage: streams.Config{Service: "test"}, Types: []string{"counter"}, Sink: sink, TracerProvider: tp,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("projection Run: %v", err)
		}
	})
}

// TestTracingRoutedCommandToHTTPSink follows one command sent to the
// sidecar that does not own its entity: the ingress and routing spans
// there, the owner's routed, function and append spans, then the
// projector's span and the HTTP sink's request, all in one tree.
func TestTracingRoutedCommandToHTTPSink(t *testing.T) {
	srv := streamstest.RunServer(t)
	types := newTestTypes(t)
	traces := []*spans{newSpans(t), newSpans(t)}
	var sidecars []*proxy.Proxy
	var clients []*harness
	for i := range 2 {
		h := &harness{t: t, js: srv.JetStream(t), uf: newTestFunction(t), types: types}
		h.ufAddr = serveFunction(t, h.uf, nil)
		h.startProxy(func(c *proxy.Config) {
			c.Provision = &streams.StoreConfig{Shards: 8, MemberTTL: 2 * time.Second}
			c.TracerProvider = traces[i].tp
		})
		sidecars = append(sidecars, h.p)
		clients = append(clients, h)
	}
	waitFor(t, "two sidecars sharing the shards", func() bool {
		return sidecars[0].OwnedShards() == 4 && sidecars[1].OwnedShards() == 4
	})
	projector := newSpans(t)
	sink, target := newSinkTarget(t)
	runProjection(t, srv.JetStream(t), target, projector.tp)

	key := ""
	for i := 0; key == ""; i++ {
		if k := fmt.Sprint("traced-", i); proxy.Serves(sidecars[0], streams.ShardOf(streams.Entity{Type: "counter", Key: k}, 8)) {
			key = k
		}
	}
	clients[1].mustCall("Counter/Add", key, ptr(2), 2) // sidecar 1 routes it to sidecar 0

	ingress := traces[1].one(t, "test.Counter/Add")
	route := traces[1].one(t, shard.SpanRoute)
	routed := traces[0].one(t, shard.SpanRouted)
	function := traces[0].one(t, entity.SpanFunction)
	appended := traces[0].one(t, streams.SpanAppend)
	project := projector.one(t, projections.SpanProject)

	if ingress.Parent.IsValid() {
		t.Errorf("ingress span has parent %v; the client sent no trace", ingress.Parent)
	}
	if ingress.SpanKind != trace.SpanKindServer || routed.SpanKind != trace.SpanKindServer || route.SpanKind != trace.SpanKindClient {
		t.Errorf("kinds: ingress %v, route %v, routed %v", ingress.SpanKind, route.SpanKind, routed.SpanKind)
	}
	childOf(t, route, ingress)
	childOf(t, routed, route)
	childOf(t, function, routed)
	childOf(t, appended, routed)
	activate := traces[0].one(t, entity.SpanActivate) // the first command for the key
	childOf(t, activate, routed)
	if function.StartTime.Before(activate.EndTime) {
		t.Errorf("function span started at %v, before the activation ended at %v", function.StartTime, activate.EndTime)
	}
	childOf(t, project, appended)
	if !attr(route, "jetstate.route.remote").AsBool() {
		t.Errorf("route span: jetstate.route.remote not true: %v", route.Attributes)
	}
	if got := attr(appended, "jetstate.events").AsInt64(); got != 1 {
		t.Errorf("append span: jetstate.events = %d, want 1", got)
	}
	if got := attr(function, "rpc.method").AsString(); got != "Add" {
		t.Errorf("function span: rpc.method = %q", got)
	}
	if n := len(traces[0].named("test.Counter/Add")) + len(traces[1].named(shard.SpanRouted)); n != 0 {
		t.Errorf("%d spans on the wrong sidecar", n)
	}

	waitFor(t, "the event at the HTTP sink", func() bool { return len(sink.got()) > 0 })
	h := sink.got()[0]
	if got, want := h.Get("Ce-Traceparent"), traceparent(appended.SpanContext); got != want {
		t.Errorf("ce-traceparent = %q, want the append's %q", got, want)
	}
	if got, want := h.Get("Traceparent"), traceparent(project.SpanContext); got != want {
		t.Errorf("traceparent = %q, want the delivery's %q", got, want)
	}
}

// TestTracingContinuesTheClientTrace sends a traceparent (and baggage) with
// calls over gRPC, HTTP/JSON and gRPC-Web: the ingress span is its child,
// and an action's function is given our span's context in its metadata.
func TestTracingContinuesTheClientTrace(t *testing.T) {
	tr := newSpans(t)
	h := startHarness(t, func(c *proxy.Config) { c.TracerProvider = tr.tp })
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
		client  = "00-" + traceID + "-" + spanID + "-01"
	)
	request, err := proto.Marshal(h.types.request("client-traced", ptr(1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func(t *testing.T)
	}{
		{"gRPC", func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", client, "baggage", "tenant=a")
			resp := h.types.msg("Value")
			if err := h.conn.Invoke(ctx, "/test.Echo/ToCounter", h.types.request("client-traced", ptr(1)), resp); err != nil {
				t.Fatal(err)
			}
		}},
		{"HTTP/JSON", func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), "POST", "http://"+h.p.Addr().String()+"/test.Echo/ToCounter",
				strings.NewReader(`{"key":"client-traced","n":1}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Traceparent", client)
			req.Header.Set("Baggage", "tenant=a")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}},
		{"gRPC-Web", func(t *testing.T) {
			body := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(request))), request...)
			req, err := http.NewRequestWithContext(t.Context(), "POST", "http://"+h.p.Addr().String()+"/test.Echo/ToCounter", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/grpc-web+proto")
			req.Header.Set("X-Grpc-Web", "1")
			req.Header.Set("Traceparent", client)
			req.Header.Set("Baggage", "tenant=a")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr.exp.Reset()
			before := len(h.uf.recorded())
			tc.call(t)
			ingress := tr.one(t, "test.Echo/ToCounter")
			if got := ingress.SpanContext.TraceID().String(); got != traceID {
				t.Errorf("trace %s, want the client's %s", got, traceID)
			}
			if got := ingress.Parent.SpanID().String(); got != spanID || !ingress.Parent.IsRemote() {
				t.Errorf("ingress span's parent %s (remote %v), want the client's %s", got, ingress.Parent.IsRemote(), spanID)
			}
			action := tr.one(t, proxy.SpanAction)
			childOf(t, action, ingress)
			forward := tr.one(t, proxy.SpanForward)
			effect := tr.one(t, proxy.SpanSideEffect)
			childOf(t, forward, ingress)
			childOf(t, effect, ingress)
			// The side effect (Counter/Add) is routed (here) and appends;
			// the forward (Counter/Get) is routed and appends nothing.
			var effectRoute tracetest.SpanStub
			for _, r := range tr.named(shard.SpanRoute) {
				if r.Parent.SpanID() == effect.SpanContext.SpanID() {
					effectRoute = r
				}
			}
			if attr(effectRoute, "rpc.method").AsString() != "Add" {
				t.Fatalf("no route span of Add under the side effect")
			}
			childOf(t, tr.one(t, streams.SpanAppend), effectRoute)

			// The function was given the action span's context, in
			// place of the client's, and the baggage.
			var md map[string]string
			for _, r := range h.uf.recorded()[before:] {
				if cmd, ok := r.in.(*actionpb.ActionCommand); ok && cmd.GetName() == "ToCounter" {
					md = map[string]string{}
					for _, e := range cmd.GetMetadata().GetEntries() {
						if _, dup := md[e.GetKey()]; dup {
							t.Errorf("metadata %s twice", e.GetKey())
						}
						md[e.GetKey()] = e.GetStringValue()
					}
				}
			}
			if got, want := md["traceparent"], traceparent(action.SpanContext); got != want {
				t.Errorf("function's traceparent %q, want the action span's %q", got, want)
			}
			if got := md["baggage"]; got != "tenant=a" {
				t.Errorf("function's baggage %q, want the client's", got)
			}
		})
	}
}

// TestTracingOff: without a TracerProvider nothing is recorded (not even by
// a provider installed globally), no trace header is written to the
// journal or sent to the sink, and a client's traceparent reaches an
// action's function as the client sent it.
func TestTracingOff(t *testing.T) {
	global := newSpans(t)
	restore := setGlobalTracerProvider(global.tp)
	t.Cleanup(restore)
	srv := streamstest.RunServer(t)
	h := &harness{t: t, js: srv.JetStream(t), uf: newTestFunction(t), types: newTestTypes(t)}
	h.ufAddr = serveFunction(t, h.uf, nil)
	h.startProxy(nil)
	sink, target := newSinkTarget(t)
	runProjection(t, h.js, target, nil)

	const client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", client)
	resp := h.types.msg("Value")
	if err := h.conn.Invoke(ctx, "/test.Echo/ToCounter", h.types.request("untraced", ptr(3)), resp); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event at the HTTP sink", func() bool { return len(sink.got()) > 0 })
	for _, hd := range sink.got() {
		for _, name := range []string{"Traceparent", "Tracestate", "Ce-Traceparent", "Ce-Tracestate"} {
			if v := hd.Get(name); v != "" {
				t.Errorf("sink was sent %s: %s", name, v)
			}
		}
	}
	stream, err := h.js.Stream(t.Context(), streams.Config{Service: "test"}.JournalStream())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(t.Context(), streams.Config{Service: "test"}.Subject(streams.Entity{Type: "counter", Key: "untraced"}))
	if err != nil {
		t.Fatal(err)
	}
	for name := range msg.Header {
		if strings.EqualFold(name, "traceparent") || strings.EqualFold(name, "tracestate") {
			t.Errorf("journal message has header %s", name)
		}
	}
	for _, r := range h.uf.recorded() {
		if cmd, ok := r.in.(*actionpb.ActionCommand); ok {
			for _, e := range cmd.GetMetadata().GetEntries() {
				if e.GetKey() == "traceparent" && e.GetStringValue() != client {
					t.Errorf("function's traceparent %q, want the client's", e.GetStringValue())
				}
			}
		}
	}
	if got := global.exp.GetSpans(); len(got) != 0 {
		t.Errorf("%d spans recorded with tracing off, first %s", len(got), got[0].Name)
	}
}

// setGlobalTracerProvider installs tp as OpenTelemetry's global provider
// (which jetstate must not use) and returns what puts a no-op one back.
func setGlobalTracerProvider(tp trace.TracerProvider) (restore func()) {
	otel.SetTracerProvider(tp)
	return func() { otel.SetTracerProvider(noop.NewTracerProvider()) }
}

// TestTracingEventing: an event-log consumer continues the trace stored
// with the event into the method it calls, whose function gets the
// context in its metadata.
func TestTracingEventing(t *testing.T) {
	tr := newSpans(t)
	srv := streamstest.RunServer(t)
	f := newEvFunction(t, "f")
	s := startEvSidecar(t, srv.JetStream(t), serveEvFunction(t, f), func(c *proxy.Config) { c.TracerProvider = tr.tp })
	s.emit(t, f.types, map[string]any{"key": "traced:1", "n": 7})
	call := waitCalls(t, f, "OnOne", 1, bySubject("traced:1"))[0]

	appended := tr.one(t, streams.SpanAppend)
	deliver := tr.one(t, eventing.SpanDeliver)
	childOf(t, deliver, appended)
	var action tracetest.SpanStub
	waitFor(t, "the action span of OnOne", func() bool {
		for _, sp := range tr.named(proxy.SpanAction) {
			if attr(sp, "rpc.method").AsString() == "OnOne" {
				action = sp
				return true
			}
		}
		return false
	})
	childOf(t, action, deliver)
	if got, want := call.md["traceparent"], traceparent(action.SpanContext); got != want {
		t.Errorf("function's traceparent %q, want the action span's %q", got, want)
	}
}

// TestTracingValueEntity: a value entity's write is a span of its own
// beside the function's, in the command's trace, with the revision it made;
// a delete too.
func TestTracingValueEntity(t *testing.T) {
	tr := newSpans(t)
	h := startHarness(t, func(c *proxy.Config) { c.TracerProvider = tr.tp })
	h.mustCall("Register/Set", "traced-value", ptr(5), 5)
	ingress := tr.one(t, "test.Register/Set")
	function := tr.one(t, entity.SpanFunction)
	put := tr.one(t, streams.SpanValuePut)
	if put.SpanContext.TraceID() != ingress.SpanContext.TraceID() || put.Parent.SpanID() != function.Parent.SpanID() {
		t.Errorf("put span: trace %s parent %s, want the command's trace %s and the function span's parent %s",
			put.SpanContext.TraceID(), put.Parent.SpanID(), ingress.SpanContext.TraceID(), function.Parent.SpanID())
	}
	if put.SpanKind != trace.SpanKindProducer || attr(put, "jetstate.revision").AsInt64() <= 0 {
		t.Errorf("put span: kind %v, attributes %v; want a producer with the new revision", put.SpanKind, put.Attributes)
	}
	h.mustCall("Register/Delete", "traced-value", nil, 0)
	del := tr.one(t, streams.SpanValueDelete)
	if attr(del, "jetstate.expected_revision").AsInt64() != attr(put, "jetstate.revision").AsInt64() {
		t.Errorf("delete span expected revision %v, want the put's %v", del.Attributes, put.Attributes)
	}
}

// TestTracingCRDTEntity: a CRDT command's exchange with the function is a
// span under the ingress's, after the entity's activation (only the first
// command activates it), and a write that asks for MAJORITY has a span of
// its own for the wait, which the client waits for too.
func TestTracingCRDTEntity(t *testing.T) {
	tr := newSpans(t)
	srv := streamstest.RunServer(t)
	s := startCRDTSidecar(t, srv.JetStream(t), func(c *proxy.Config) { c.TracerProvider = tr.tp })
	s.client.mustCall("Apply", crdtCmd{key: "traced", delta: gcounter(2), consistency: crdtpb.CrdtWriteConsistency_MAJORITY})

	ingress := tr.one(t, "crdttest.Crdt/Apply")
	activate := tr.one(t, entity.SpanActivate)
	function := tr.one(t, entity.SpanFunction)
	wc := tr.one(t, entity.SpanWriteConsistency)
	childOf(t, activate, ingress)
	childOf(t, function, ingress)
	childOf(t, wc, ingress)
	if function.StartTime.Before(activate.EndTime) {
		t.Errorf("function span started at %v, before the activation ended at %v", function.StartTime, activate.EndTime)
	}
	if wc.StartTime.Before(function.EndTime) {
		t.Errorf("write consistency span started at %v, before the function answered at %v", wc.StartTime, function.EndTime)
	}
	if got := attr(function, "rpc.method").AsString(); got != "Apply" {
		t.Errorf("function span: rpc.method = %q", got)
	}
	if got := attr(activate, "jetstate.entity.key").AsString(); got != "traced" {
		t.Errorf("activation span: jetstate.entity.key = %q", got)
	}
	if got := attr(wc, "jetstate.crdt.write_consistency").AsString(); got != "MAJORITY" {
		t.Errorf("write consistency span: %q", got)
	}

	tr.exp.Reset()
	if v := s.client.mustCall("Get", crdtCmd{key: "traced"}); v.GetGcounter().GetIncrement() != 2 {
		t.Fatalf("value %v, want 2", v)
	}
	childOf(t, tr.one(t, entity.SpanFunction), tr.one(t, "crdttest.Crdt/Get"))
	if n := len(tr.named(entity.SpanActivate)) + len(tr.named(entity.SpanWriteConsistency)); n != 0 {
		t.Errorf("%d activation or write consistency spans for a read of an active entity", n)
	}
}
