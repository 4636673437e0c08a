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

	"github.com/jetstate/jetstate/internal/backoff"
	"github.com/jetstate/jetstate/internal/deadletter"
	"github.com/jetstate/jetstate/internal/keyq"
	"github.com/jetstate/jetstate/streams"
)

// delivery hands a consumer's messages to the sink through a keyed queue
// (internal/keyq): one key per entity (journal subject), Workers workers,
// each taking the next entity that has a message waiting and is not
// already being sent. An entity's messages therefore go out one at a time
// in delivery order, different entities in parallel, and a slow or failing
// entity holds up only itself (until its waiting messages fill
// MaxAckPending). Every message held is kept alive (a third of AckWait), a
// redelivered copy of one held is dropped and one of a message settled
// lately is acknowledged again without being sent, so neither overtakes
// the entity's newer events; on stop, what is held goes back to the
// consumer (Nak).
type delivery struct {
	p       *Projection
	sink    Sink
	confirm bool // the sink must confirm each send (see NATSSink)
	// batched: sends are not confirmed one by one; acknowledgements wait
	// for one flush of the sink's connection that covers them all (a core
	// NATS sink on a connection of its own, whose publishes stay in order).
	batched bool
	ackMu   sync.Mutex
	toAck   []jetstream.Msg
	ackWake chan struct{}
	retry   retrier
	q       *keyq.Queue
	dl      *deadletter.Publisher
	// consumer names the generation's consumer in dead letters' ids.
	consumer string
}

func newDelivery(p *Projection, sink Sink, cons jetstream.Consumer, gen int) (*delivery, error) {
	d := &delivery{
		p:        p,
		sink:     sink,
		confirm:  true,
		consumer: p.ConsumerName(gen),
		retry: retrier{
			maxTries:    p.cfg.MaxTries,
			min:         p.cfg.RetryMin,
			max:         p.cfg.RetryMax,
			sendTimeout: p.cfg.SendTimeout,
		},
	}
	if ns, ok := sink.(*NATSSink); ok && ns.js == nil {
		// A core publish is a buffered write that cannot block (no
		// timeout), and the connection keeps publishes in order, so an
		// entity's next event need not wait for the confirmation of the
		// previous one: only the acknowledgement must.
		d.confirm = false
		d.retry.sendTimeout = 0
		d.batched = !ns.ordered(p.js.Conn())
		d.ackWake = make(chan struct{}, 1)
	}
	q, err := keyq.New(keyq.Config{
		Consumer:  cons,
		Workers:   p.cfg.Workers,
		Key:       func(msg jetstream.Msg, _ *jetstream.MsgMetadata) string { return msg.Subject() },
		Process:   d.process,
		KeepAlive: p.cfg.AckWait / 3,
		Remember:  2 * p.cfg.MaxAckPending,
		// Batched: a settled message's ack may still wait for the flush.
		NoReack: d.batched,
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

// process sends every event of one journal message (or dead-letters it)
// and acknowledges it. It reports false if ctx ended first.
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
		return d.ack(ctx, msg)
	}
	for i, rec := range recs {
		pos.index, pos.seq, pos.typ = i, rec.Seq, rec.Type
		ev, err := d.p.conv.event(ent, rec, i)
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
	return d.ack(ctx, msg)
}

func (d *delivery) send(ctx context.Context, ev *event.Event) error {
	if !d.confirm {
		return d.sink.(*NATSSink).send(ctx, ev, false)
	}
	return d.sink.Send(ctx, ev)
}

func (d *delivery) ack(ctx context.Context, msg jetstream.Msg) bool {
	if d.batched {
		d.ackMu.Lock()
		d.toAck = append(d.toAck, msg)
		d.ackMu.Unlock()
		select {
		case d.ackWake <- struct{}{}:
		default:
		}
		return true
	}
	if err := msg.Ack(); err != nil {
		// The message comes again (at the latest on the next run) and is
		// sent again with the same ids.
		d.p.log.WarnContext(ctx, "ack", "subject", msg.Subject(), "error", err)
	}
	return true
}

// confirmAcks acknowledges batched messages once a flush of the sink's
// connection confirmed their events, until ctx ends. A failed flush ends
// the run: its messages stay unacknowledged and the next run sends them
// again first.
func (d *delivery) confirmAcks(ctx context.Context) error {
	sink := d.sink.(*NATSSink)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.ackWake:
		}
		d.ackMu.Lock()
		msgs := d.toAck
		d.toAck = nil
		d.ackMu.Unlock()
		if len(msgs) == 0 {
			continue
		}
		if err := sink.flush(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("projection %s: confirm events: %w", d.p.cfg.Name, err)
		}
		for _, m := range msgs {
			if err := m.Ack(); err != nil {
				d.p.log.WarnContext(ctx, "ack", "subject", m.Subject(), "error", err)
			}
		}
	}
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
		if errors.Is(err, ErrRejected) || try >= r.maxTries {
			return try, err
		}
		if err := bo.Wait(ctx); err != nil {
			return try, err
		}
	}
}
