package proxy

import (
	"context"

	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/protocol/cloudstate"
)

// Span names of the router (the others: ingress, shard, entity, streams,
// eventing).
const (
	// SpanAction is an action's call of the user function.
	SpanAction = "jetstate.action"
	// SpanSideEffect is a side effect, synchronous or not, around the call
	// it makes.
	SpanSideEffect = "jetstate.side_effect"
	// SpanForward is a forward, around the call it makes.
	SpanForward = "jetstate.forward"
)

// traceMetadata returns md with the trace context of ctx in place of any
// the client sent (traceparent, tracestate, baggage), so that the user
// function's own spans are children of ours. Without a span context in ctx
// it returns md as it is. md is not modified.
func traceMetadata(ctx context.Context, md *cloudstate.Metadata) *cloudstate.Metadata {
	if !tracing.Active(ctx) {
		return md
	}
	out := &cloudstate.Metadata{Entries: make([]*cloudstate.MetadataEntry, 0, len(md.GetEntries())+3)}
	for _, e := range md.GetEntries() {
		switch e.GetKey() {
		case tracing.TraceParent, tracing.TraceState, tracing.Baggage:
			continue
		}
		out.Entries = append(out.Entries, e)
	}
	tracing.Inject(ctx, metadataCarrier{out})
	return out
}

// metadataCarrier writes trace context into protocol metadata (string
// entries, lower-case keys as in gRPC). Only Set is used.
type metadataCarrier struct{ md *cloudstate.Metadata }

func (c metadataCarrier) Get(key string) string {
	for _, e := range c.md.GetEntries() {
		if e.GetKey() == key {
			return e.GetStringValue()
		}
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) {
	c.md.Entries = append(c.md.Entries, &cloudstate.MetadataEntry{Key: key, Value: &cloudstate.MetadataEntry_StringValue{StringValue: value}})
}

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c.md.GetEntries()))
	for _, e := range c.md.GetEntries() {
		keys = append(keys, e.GetKey())
	}
	return keys
}
