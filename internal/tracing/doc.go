// Package tracing is the sidecar's and the projector's OpenTelemetry glue:
// spans, and W3C trace context (traceparent, tracestate) and baggage carried
// in gRPC metadata, NATS headers and HTTP headers.
//
// Tracing is off unless a component was given a TracerProvider, and off
// costs nothing on the command path: a nil *Tracer starts no span, Start
// starts one only under a span that records, a zero Span ignores every
// call, and Inject writes no header when ctx carries no span context. So
// the parts below the roots (the router, the entity runtimes, the journal)
// need no configuration: they continue whatever span their context holds,
// with that span's provider.
//
// Only the API (go.opentelemetry.io/otel/trace) is linked here; the SDK
// and its exporter, configured by the OTEL_* environment variables, are in
// package otlp, which only cmd/ imports.
package tracing
