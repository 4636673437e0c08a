package streams

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetstate/jetstate/internal/tracing"
)

// SpanValuePut and SpanValueDelete name the spans of a value entity's write
// (when the caller's context carries a recording span).
const (
	SpanValuePut    = "jetstate.value.put"
	SpanValueDelete = "jetstate.value.delete"
)

// valueSpan starts the span of a write to e's state.
func (v *Values) valueSpan(ctx context.Context, name string, e Entity, expected uint64) (context.Context, tracing.Span) {
	ctx, span := tracing.Start(ctx, name, trace.SpanKindProducer)
	if span.On() {
		span.String("messaging.system", "nats")
		span.String("messaging.destination.name", v.subject(e))
		span.Int("jetstate.expected_revision", int64(expected))
	}
	return ctx, span
}

// kvOperationHeader marks deletes in a KV bucket (the KV spec, ADR-8).
const kvOperationHeader = "KV-Operation"

// Values stores the state of a service's value entities in a KV bucket,
// one key per entity, with revision checks on every write. It is safe for
// concurrent use.
//
// A revision is the stream sequence of the entity's last write; 0 means the
// entity has no stored state. Reads come from the bucket's stream leader, so
// Get returns the latest acknowledged write; writes with a stale revision
// fail with ErrConflict.
type Values struct {
	w      casWriter
	bucket string
}

// NewValues binds the service's value bucket. It fails with
// ErrStreamNotFound if the service was not provisioned.
func NewValues(ctx context.Context, js jetstream.JetStream, cfg Config) (*Values, error) {
	_, cfg, err := bindBucket(ctx, js, cfg, cfg.ValueBucket())
	if err != nil {
		return nil, err
	}
	return &Values{w: casWriter{js: js, stream: "KV_" + cfg.ValueBucket(), cfg: cfg}, bucket: cfg.ValueBucket()}, nil
}

func (v *Values) subject(e Entity) string { return "$KV." + v.bucket + "." + e.token() }

// Get returns the entity's state and its revision, or revision 0 (and nil
// data) if the entity has none or was deleted.
func (v *Values) Get(ctx context.Context, e Entity) (data []byte, revision uint64, err error) {
	if err := e.Validate(); err != nil {
		return nil, 0, err
	}
	m, err := lastMsg(ctx, v.w.js, v.w.stream, v.subject(e), v.w.cfg)
	if err != nil {
		return nil, 0, fmt.Errorf("get value %s: %w", e, err)
	}
	if m == nil || headerValue(m.Header, kvOperationHeader) != "" {
		return nil, 0, nil
	}
	return m.Data, m.Sequence, nil
}

// Put stores data as the entity's state provided its revision is still
// expected (0: the entity must have no state, or have been deleted), and
// returns the new revision. A stale expected revision fails with a
// *ConflictError and writes nothing.
func (v *Values) Put(ctx context.Context, e Entity, data []byte, expected uint64) (rev uint64, err error) {
	if err := e.Validate(); err != nil {
		return 0, err
	}
	ctx, span := v.valueSpan(ctx, SpanValuePut, e, expected)
	defer func() {
		span.Fail(err)
		span.Int("jetstate.revision", int64(rev))
		span.End()
	}()
	if expected == 0 {
		// "No state" may still be a delete marker on the subject: fence
		// on the marker's sequence instead of on an empty subject.
		m, err := lastMsg(ctx, v.w.js, v.w.stream, v.subject(e), v.w.cfg)
		if err != nil {
			return 0, fmt.Errorf("put value %s: %w", e, err)
		}
		if m != nil && headerValue(m.Header, kvOperationHeader) != "" {
			expected = m.Sequence
		} else if m != nil {
			return 0, &ConflictError{Subject: v.subject(e), Expected: 0, Actual: m.Sequence}
		}
	}
	msg := nats.NewMsg(v.subject(e))
	msg.Data = data
	return v.w.publish(ctx, msg, nuid.Next(), expected)
}

// Delete removes the entity's state provided its revision is still expected.
// Deleting an entity that has no state succeeds and does nothing.
func (v *Values) Delete(ctx context.Context, e Entity, expected uint64) (err error) {
	if err := e.Validate(); err != nil {
		return err
	}
	ctx, span := v.valueSpan(ctx, SpanValueDelete, e, expected)
	defer func() {
		span.Fail(err)
		span.End()
	}()
	if expected == 0 {
		_, rev, err := v.Get(ctx, e)
		if err != nil || rev == 0 {
			return err
		}
		return &ConflictError{Subject: v.subject(e), Expected: 0, Actual: rev}
	}
	msg := nats.NewMsg(v.subject(e))
	msg.Header.Set(kvOperationHeader, "DEL")
	if _, err := v.w.publish(ctx, msg, nuid.Next(), expected); err != nil {
		return fmt.Errorf("delete value %s: %w", e, err)
	}
	return nil
}
