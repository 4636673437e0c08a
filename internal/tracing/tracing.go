package tracing

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope of jetstate's spans.
const Scope = "github.com/jetstate/jetstate"

// The W3C header names, as NATS headers and gRPC metadata carry them
// (lower case).
const (
	TraceParent = "traceparent"
	TraceState  = "tracestate"
	Baggage     = "baggage"
)

var (
	// withBaggage is what crosses a request boundary (ingress, routed
	// commands, calls of the function).
	withBaggage = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	// traceOnly is what is stored with an event: baggage is the caller's
	// and may hold what must not be kept.
	traceOnly = propagation.TraceContext{}
)

// Tracer starts the spans that begin in this process: at the ingress, at
// the owner of a routed command, in consumers of the journal. A nil
// *Tracer is tracing off: its methods return ctx unchanged and a zero Span.
// It is safe for concurrent use.
type Tracer struct {
	tr trace.Tracer
}

// New returns a Tracer of tp, or nil (off) if tp is nil.
func New(tp trace.TracerProvider) *Tracer {
	if tp == nil {
		return nil
	}
	return &Tracer{tr: tp.Tracer(Scope)}
}

// Remote starts a span whose parent is the trace context in carrier (a
// client's headers, a NATS message's), or a new trace if it holds none.
// Baggage in carrier is kept in the returned context.
func (t *Tracer) Remote(ctx context.Context, name string, kind trace.SpanKind, carrier Carrier) (context.Context, Span) {
	if t == nil {
		return ctx, Span{}
	}
	if carrier != nil {
		ctx = withBaggage.Extract(ctx, carrier)
	}
	ctx, s := t.tr.Start(ctx, name, trace.WithSpanKind(kind))
	return ctx, Span{s: s}
}

// Start starts a child of the span in ctx, with that span's provider, if it
// records; otherwise it returns ctx and a zero Span.
func Start(ctx context.Context, name string, kind trace.SpanKind) (context.Context, Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, Span{}
	}
	ctx, s := parent.TracerProvider().Tracer(Scope).Start(ctx, name, trace.WithSpanKind(kind))
	return ctx, Span{s: s}
}

// Carry returns to with the span (and baggage) of from, for work that runs
// under another context than its request's (an entity's command runs under
// the runtime's). Without a span in from, it returns to unchanged.
func Carry(to, from context.Context) context.Context {
	sc := trace.SpanContextFromContext(from)
	if !sc.IsValid() {
		return to
	}
	to = trace.ContextWithSpan(to, trace.SpanFromContext(from))
	if b := baggage.FromContext(from); b.Len() > 0 {
		to = baggage.ContextWithBaggage(to, b)
	}
	return to
}

// Active reports whether ctx carries a span context, which Inject would
// write.
func Active(ctx context.Context) bool { return trace.SpanContextFromContext(ctx).IsValid() }

// Inject writes the trace context and baggage of ctx into carrier, for a
// request that continues the trace elsewhere. Without a span context in ctx
// it writes nothing.
func Inject(ctx context.Context, carrier Carrier) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		withBaggage.Inject(ctx, carrier)
	}
}

// InjectTrace writes the trace context of ctx (traceparent, and tracestate
// if any), not its baggage, into carrier: what is stored with an event.
// Without a span context in ctx it writes nothing.
func InjectTrace(ctx context.Context, carrier Carrier) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		traceOnly.Inject(ctx, carrier)
	}
}

// Span is a span that may be off: the zero Span ignores every call. Its
// setters take one attribute each, so that a caller with tracing off
// allocates nothing.
type Span struct {
	s trace.Span
}

// On reports whether the span records: callers compute costly attributes
// only then.
func (s Span) On() bool { return s.s != nil && s.s.IsRecording() }

// End ends the span.
func (s Span) End() {
	if s.s != nil {
		s.s.End()
	}
}

// Fail records err (if not nil) as the span's error and status.
func (s Span) Fail(err error) {
	if s.s != nil && err != nil {
		s.s.RecordError(err)
		s.s.SetStatus(codes.Error, err.Error())
	}
}

// String sets a string attribute.
func (s Span) String(key, value string) {
	if s.s != nil {
		s.s.SetAttributes(attribute.String(key, value))
	}
}

// Int sets an integer attribute.
func (s Span) Int(key string, value int64) {
	if s.s != nil {
		s.s.SetAttributes(attribute.Int64(key, value))
	}
}

// Bool sets a boolean attribute.
func (s Span) Bool(key string, value bool) {
	if s.s != nil {
		s.s.SetAttributes(attribute.Bool(key, value))
	}
}
