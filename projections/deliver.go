package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetstate/jetstate/internal/backoff"
	"github.com/jetstate/jetstate/internal/deadletter"
	"github.com/jetstate/jetstate/internal/keyq"
	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/streams"
)

// delivery hands a consumer's messages to the sink through a keyed queue
// (internal/keyq): one key per entity (journal subject), Workers workers,
// each taking the next entity that has a message waiting and is not
// already being sent. An entity's messages therefore go out one at a time
// in delivery order, different entities in parallel, and a slow or failing
// entity holds up only itself (until its waiting messages, or on an
// AckPolicy all consumer those settled behind it, fill MaxAckPending).
// Every message held is kept alive (a third of AckWait), a redelivered
// copy of one held is dropped and one of a message settled lately is
// acknowledged again without being sent (dropped on an AckPolicy all
// consumer, or when acknowledgements wait for a flush), so neither
// overtakes the entity's newer events; on stop, what is held goes back to
// the consumer (Nak). Acknowledgements go through acks.
type delivery struct {
	p       *Projection
	sink    Sink
	confirm bool // the sink must confirm each send (see NATSSink)
	// epoch is the NATS sink's connection incarnation the run publishes
	// in, unconfirmed.
	epoch uint64
	acks  *acks
	// lost receives errLost from a worker: the run starts over.
	lost  chan error
	retry retrier
	q     *keyq.Queue
	dl    *deadletter.Publisher
	// consumer names the generation's consumer in dead letters' ids.
	consumer string
}

// newDelivery returns the delivery of one run of a generation's consumer,
// whose next delivery carries consumer sequence next.
func newDelivery(p *Projection, sink Sink, cons jetstream.Consumer, gen int, next uint64) (*delivery, error) {
	d := &delivery{
		p:        p,
		sink:     sink,
		confirm:  true,
		lost:     make(chan error, 1),
		consumer: p.ConsumerName(gen),
		retry: retrier{
			maxTries:    p.cfg.MaxTries,
			min:         p.cfg.RetryMin,
			max:         p.cfg.RetryMax,
			sendTimeout: p.cfg.SendTimeout,
		},
	}
	var confirm func(context.Context) error
	if ns, ok := sink.(*NATSSink); ok && ns.js == nil {
		// A core publish is a buffered write that cannot block (no
		// timeout), and the connection keeps publishes in order, so an
		// entity's next event need not wait for the confirmation of the
		// previous one: only the acknowledgement must, and one flush of
		// the sink's connection confirms every event published before it.
		d.confirm = false
		d.retry.sendTimeout = 0
		d.epoch = ns.epoch()
		confirm = ns.confirmer(d.epoch)
	}
	policy := cons.CachedInfo().Config.AckPolicy
	d.acks = newAcks(policy, next, confirm, p.cfg.AckWait/3, p.log)
	q, err := keyq.New(keyq.Config{
		Consumer:  cons,
		Workers:   p.cfg.Workers,
		Key:       func(msg jetstream.Msg, _ *jetstream.MsgMetadata) string { return msg.Subject() },
		Process:   d.process,
		KeepAlive: p.cfg.AckWait / 3,
		Remember:  2 * p.cfg.MaxAckPending,
		// A settled message's ack may still wait for the flush, and on an
		// AckPolicy all consumer acknowledging a copy would cover every
		// earlier message.
		NoReack: confirm != nil || d.acks.all,
		Logger:  p.log,
	})
	if err != nil {
		return nil, fmt.Errorf("projection %s: %w", p.cfg.Name, err)
	}
	d.q = q
	dl, err := deadletter.New(p.js, deadletter.Config{
		RetryMin: p.cfg.RetryMin, RetryMax: p.cfg.RetryMax, Timeout: p.cfg.SendTimeout, Logger: p.log,
	})
	if err != nil {
		return nil, fmt.Errorf("projection %s: %w", p.cfg.Name, err)
	}
	d.dl = dl
	return d, nil
}

// dispatch hands a message from the consumer's iterator to the queue. It
// returns errLost if a delivery before it never arrived: the message is
// then not dispatched.
func (d *delivery) dispatch(msg jetstream.Msg) error {
	md, err := msg.Metadata()
	if err != nil {
		d.p.log.Warn("message without JetStream metadata", "subject", msg.Subject(), "error", err)
		return nil
	}
	if err := d.acks.received(msg, md); err != nil {
		return err
	}
	if d.q.DispatchMeta(msg, md) {
		d.acks.copied(md)
	}
	return nil
}

// process sends every event of one journal message (or dead-letters it)
// and settles it. It reports false if ctx ended first.
func (d *delivery) process(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata) bool {
	d.p.m.pending.Set(float64(md.NumPending))
	pos := position{subject: msg.Subject(), streamSeq: md.Sequence.Stream, index: -1}
	ent, err := d.p.cfg.Storage.ParseSubject(msg.Subject())
	var recs []streams.Record
	if err == nil {
		recs, err = streams.DecodeEntry(md.Sequence.Stream, md.Timestamp, msg.Data())
	}
	if err != nil {
		err = fmt.Errorf("%w: %v", ErrBadEvent, err)
		if !d.deadLetter(ctx, msg, pos, deadLetter{cause: deadletter.CauseBadEvent, reason: err, raw: msg.Data()}) {
			return false
		}
		d.acks.settled(ctx, msg, md)
		return true
	}
	// The trace of the command that wrote the message, stored with it.
	stored := tracing.Headers(msg.Headers())
	traceParent, traceState := stored.Get(tracing.TraceParent), stored.Get(tracing.TraceState)
	ctx, span := d.p.tracer.Remote(ctx, SpanProject, trace.SpanKindConsumer, stored)
	defer span.End()
	if span.On() {
		span.String("messaging.system", "nats")
		span.String("messaging.destination.name", msg.Subject())
		span.String("messaging.consumer.group.name", d.p.cfg.Name)
		span.Int("jetstate.stream_seq", int64(md.Sequence.Stream))
		span.Int("jetstate.events", int64(len(recs)))
	}
	var parts *eventParts
	if !d.confirm {
		// The NATS sink is done with an event once its send returns, as
		// is the dead-letter publisher: the events share one context.
		parts = eventPartsPool.Get().(*eventParts)
		defer eventPartsPool.Put(parts)
	}
	for i, rec := range recs {
		pos.index, pos.seq, pos.typ = i, rec.Seq, rec.Type
		ev, err := d.p.conv.event(ent, rec, i, parts)
		if err == nil && traceParent != "" {
			ev.SetExtension(TraceParentExtension, traceParent)
			if traceState != "" {
				ev.SetExtension(TraceStateExtension, traceState)
			}
		}
		if err != nil {
			if !d.deadLetter(ctx, msg, pos, deadLetter{cause: deadletter.CauseBadEvent, reason: err, raw: rec.Data}) {
				return false
			}
			continue
		}
		tries, err := d.retry.send(ctx, d.send, &ev, func(try int, err error) {
			d.p.m.failures.Inc()
			d.p.log.DebugContext(ctx, "sink refused event", "id", ev.ID(), "try", try, "error", err)
			_ = msg.InProgress()
		})
		switch {
		case err == nil:
			d.p.m.accepted(rec.Time)
		case ctx.Err() != nil:
			return false
		case errors.Is(err, errLost):
			// The run starts over; this message stays held until then.
			select {
			case d.lost <- err:
			default:
			}
			<-ctx.Done()
			return false
		default:
			cause := deadletter.CauseRetries
			if errors.Is(err, ErrRejected) {
				cause = deadletter.CauseRejected
			}
			if !d.deadLetter(ctx, msg, pos, deadLetter{cause: cause, reason: err, tries: tries, ev: &ev}) {
				return false
			}
		}
	}
	d.acks.settled(ctx, msg, md)
	return true
}

// SpanProject names the span of one journal message's delivery to the sink.
const SpanProject = "jetstate.project"

// The CloudEvents distributed-tracing extension: the trace context of the
// command that wrote the event.
const (
	TraceParentExtension = "traceparent"
	TraceStateExtension  = "tracestate"
)

// eventPartsPool holds the contexts of events the NATS sink was done with.
var eventPartsPool = sync.Pool{New: func() any { return new(eventParts) }}

func (d *delivery) send(ctx context.Context, ev *event.Event) error {
	if !d.confirm {
		return d.sink.(*NATSSink).send(ctx, ev, false, d.epoch)
	}
	return d.sink.Send(ctx, ev)
}

// position locates an event in the journal, for dead letters and logs.
type position struct {
	subject   string
	streamSeq uint64
	index     int    // within the message; -1: the whole message
	seq       uint64 // per-entity sequence
	typ       string
}

func (pos position) attrs() []any {
	return []any{slog.String("journal_subject", pos.subject), slog.Uint64("stream_seq", pos.streamSeq),
		slog.Int("index", pos.index), slog.Uint64("seq", pos.seq)}
}

// retrier offers an event to a sink until it is accepted, rejected or has
// had maxTries tries, with exponential back-off and full jitter between.
type retrier struct {
	maxTries    int
	min, max    time.Duration
	sendTimeout time.Duration
}

// send returns how many tries it made and nil once the sink accepted ev,
// the last error once it gives up, or ctx's error. failed is called after
// every failed try.
func (r *retrier) send(ctx context.Context, send func(context.Context, *event.Event) error, ev *event.Event, failed func(try int, err error)) (int, error) {
	bo := backoff.Backoff{Min: r.min, Max: r.max}
	for try := 1; ; try++ {
		var err error
		if r.sendTimeout > 0 {
			sctx, cancel := context.WithTimeout(ctx, r.sendTimeout)
			err = send(sctx, ev)
			cancel()
		} else {
			err = send(ctx, ev)
		}
		if err == nil {
			return try, nil
		}
		if ctx.Err() != nil {
			return try, ctx.Err()
		}
		if failed != nil {
			failed(try, err)
		}
		if errors.Is(err, ErrRejected) || errors.Is(err, errLost) || try >= r.maxTries {
			return try, err
		}
		if err := bo.Wait(ctx); err != nil {
			return try, err
		}
	}
}
