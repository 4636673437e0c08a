package tracing_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetstate/jetstate/internal/tracing"
)

func TestOffCostsNothing(t *testing.T) {
	var off *tracing.Tracer
	ctx := context.Background()
	h := tracing.Headers{}
	allocs := testing.AllocsPerRun(100, func() {
		rctx, root := off.Remote(ctx, "root", trace.SpanKindServer, h)
		cctx, span := tracing.Start(rctx, "child", trace.SpanKindClient)
		span.String("k", "v")
		span.Int("n", 1)
		span.Bool("b", true)
		span.Fail(errors.New("x"))
		tracing.Inject(cctx, h)
		tracing.InjectTrace(cctx, h)
		_ = tracing.Carry(ctx, cctx)
		span.End()
		root.End()
	})
	if allocs > 1 { // the errors.New of the test itself
		t.Errorf("%v allocations per run with tracing off", allocs)
	}
	if len(h) != 0 {
		t.Errorf("headers written with tracing off: %v", h)
	}
	if tracing.New(nil) != nil {
		t.Error("New(nil) is not off")
	}
}

func TestPropagation(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := tracing.New(tp)

	in := tracing.Headers{
		tracing.TraceParent: {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		tracing.TraceState:  {"vendor=x"},
		tracing.Baggage:     {"tenant=a"},
	}
	ctx, root := tr.Remote(context.Background(), "root", trace.SpanKindServer, in)
	// A command runs under another context (the entity runtime's): the
	// span and the baggage are carried over.
	moved := tracing.Carry(context.Background(), ctx)
	if got := baggage.FromContext(moved).Member("tenant").Value(); got != "a" {
		t.Errorf("carried baggage tenant=%q", got)
	}
	cctx, child := tracing.Start(moved, "child", trace.SpanKindClient)
	if !child.On() {
		t.Fatal("child of a recording span does not record")
	}
	out := tracing.Headers{}
	tracing.Inject(cctx, out)
	stored := tracing.Headers{}
	tracing.InjectTrace(cctx, stored)
	child.End()
	root.End()

	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	c, r := spans[0], spans[1]
	if r.Parent.SpanID().String() != "00f067aa0ba902b7" || r.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("root's parent %v, want the remote one", r.Parent)
	}
	if c.Parent.SpanID() != r.SpanContext.SpanID() {
		t.Errorf("child's parent %v, want the root %v", c.Parent.SpanID(), r.SpanContext.SpanID())
	}
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + c.SpanContext.SpanID().String() + "-01"
	for name, h := range map[string]tracing.Headers{"Inject": out, "InjectTrace": stored} {
		if got := h.Get(tracing.TraceParent); got != want {
			t.Errorf("%s: traceparent %q, want %q", name, got, want)
		}
		if got := h.Get(tracing.TraceState); got != "vendor=x" {
			t.Errorf("%s: tracestate %q", name, got)
		}
	}
	if got := out.Get(tracing.Baggage); got != "tenant=a" {
		t.Errorf("Inject: baggage %q", got)
	}
	if got := stored.Get(tracing.Baggage); got != "" {
		t.Errorf("InjectTrace stored baggage %q", got)
	}
}
