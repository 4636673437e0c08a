package streams

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetstate/jetstate/internal/tracing"
)

// Version is a position in one entity's journal.
//
// Seq counts the entity's events, densely from 1, as the CloudState protocol
// numbers them. StreamSeq is the JetStream stream sequence of the message
// holding event Seq; it is what the next append is fenced on. The zero
// Version is the position of an entity that has no events yet.
//
// A Version is only meaningful for the entity it was read from; pass on the
// values that Append, Head, Read or a Snapshot returned, never made-up ones.
type Version struct {
	Seq       uint64
	StreamSeq uint64
}

// Journal stores the event journals of one service: one JetStream subject
// per entity in the service's journal stream. It is safe for concurrent use.
//
// Invariants (for every entity): events are numbered densely from 1 in the
// order they were committed; all events of one Append are committed
// together or not at all; an Append succeeds only if the journal is still
// exactly at the expected Version, so two writers can never fork a history.
type Journal struct {
	js      jetstream.JetStream
	cfg     Config
	stream  string
	subject string // "<prefix>.<service>.", the head of every entity subject
}

// NewJournal returns the journal of cfg.Service. It does not contact the
// server; the service's streams must have been provisioned (see Provision).
func NewJournal(js jetstream.JetStream, cfg Config) (*Journal, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Journal{js: js, cfg: cfg, stream: cfg.JournalStream(), subject: cfg.Prefix + "." + cfg.Service + "."}, nil
}

// Config returns the journal's configuration with defaults applied.
func (j *Journal) Config() Config { return j.cfg }

// Append commits events as the next events of entity e, provided the
// entity's journal is still at expected, and returns the new Version.
//
// If ctx carries a trace span context, the message stores it in a
// traceparent (and tracestate) header; under a recording span, the append
// is a span of its own (SpanAppend) and that is the context stored.
//
// All events go into one message, so the commit is atomic. The write is
// fenced by Nats-Expected-Last-Subject-Sequence: if anyone else appended
// since expected, Append fails with a *ConflictError (errors.Is
// ErrConflict) and writes nothing; the caller must reload the entity.
//
// Transient refusals (error 10164 while a replicated stream has a write in
// flight, a leader election, a timeout that may have lost the ack) are
// retried until ctx is done with the same write id, so a retry whose first
// attempt did land returns that attempt's Version instead of appending
// twice (or reporting a conflict with itself). Appending no events returns
// expected unchanged.
func (j *Journal) Append(ctx context.Context, e Entity, expected Version, events []Event) (Version, error) {
	return j.appendID(ctx, e, expected, events, nuid.Next())
}

// appendID is Append with the write id that makes retries idempotent.
func (j *Journal) appendID(ctx context.Context, e Entity, expected Version, events []Event, writeID string) (Version, error) {
	if err := e.Validate(); err != nil {
		return Version{}, err
	}
	if len(events) == 0 {
		return expected, nil
	}
	msg := nats.NewMsg(j.subject + e.token())
	msg.Data = encodeEntry(make([]byte, 0, entrySize(events)), expected.Seq+1, events)
	ctx, span := tracing.Start(ctx, SpanAppend, trace.SpanKindProducer)
	defer span.End()
	if span.On() {
		span.String("messaging.system", "nats")
		span.String("messaging.destination.name", msg.Subject)
		span.Int("jetstate.events", int64(len(events)))
		span.Int("jetstate.entity.seq", int64(expected.Seq+1))
	}
	// The event remembers the command's trace: consumers (projections,
	// eventing) continue it. Nothing is written when ctx has no span.
	tracing.InjectTrace(ctx, tracing.Headers(msg.Header))
	v, err := j.publish(ctx, msg, writeID, expected, uint64(len(events)))
	span.Fail(err)
	span.Int("jetstate.stream_seq", int64(v.StreamSeq))
	return v, err
}

// SpanAppend names the span of a journal append (when the caller's context
// carries a recording span).
const SpanAppend = "jetstate.journal.append"

// entrySize estimates the encoded size of an entry, to allocate once.
func entrySize(events []Event) int {
	n := 11
	for _, ev := range events {
		n += len(ev.Type) + len(ev.Data) + 16
	}
	return n
}

// publish sends msg fenced on expected and returns the Version after it.
func (j *Journal) publish(ctx context.Context, msg *nats.Msg, writeID string, expected Version, count uint64) (Version, error) {
	w := casWriter{js: j.js, stream: j.stream, cfg: j.cfg}
	seq, err := w.publish(ctx, msg, writeID, expected.StreamSeq)
	if err != nil {
		return Version{}, err
	}
	return Version{Seq: expected.Seq + count, StreamSeq: seq}, nil
}
