package tracing

import "go.opentelemetry.io/otel/propagation"

// Carrier is where trace context is read and written: request headers,
// message headers, metadata.
type Carrier = propagation.TextMapCarrier

// Headers carries trace context in a map of header names to values whose
// names are kept as written (lower case here): NATS headers and gRPC
// metadata (convert: Headers(msg.Header), Headers(md)). It must not be nil
// when written to.
type Headers map[string][]string

// Get returns the first value of key.
func (h Headers) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces the values of key.
func (h Headers) Set(key, value string) { h[key] = []string{value} }

// Keys lists the names present.
func (h Headers) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}
