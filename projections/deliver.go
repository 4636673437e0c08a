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
	"github.com/jetstate/jetstate/streams"
)

// delivery takes a consumer's messages and hands them to the sink: one
// queue per entity (journal subject), a fixed number of workers, each
// taking the next entity that has a message waiting and is not already
// being sent. An entity's messages therefore go out one at a time in
// delivery order, different entities in parallel, and a slow or failing
// entity holds up only itself (until its waiting messages fill
// MaxAckPending).
//
// Redeliveries are filtered: a message the server sends again while the
// first copy still waits here (its ack wait ran out during a long retry)
// is dropped, and one that was settled recently is acknowledged again
// without being sent, so neither overtakes the entity's newer events.
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

	mu       sync.Mutex
	wake     *sync.Cond
	closed   bool
	queues   map[string]*entityQueue
	ready    []*entityQueue      // entities with a message waiting and no worker
	inflight map[uint64]struct{} // stream seqs received and not yet settled
	settled  recentSet           // stream seqs settled lately
}

type entityQueue struct {
	subject string
	msgs    []queued
}

// queued is a message with its parsed metadata.
type queued struct {
	msg jetstream.Msg
	md  *jetstream.MsgMetadata
}

func newDelivery(p *Projection, sink Sink) *delivery {
	d := &delivery{
		p:        p,
		sink:     sink,
		confirm:  true,
		queues:   make(map[string]*entityQueue),
		inflight: make(map[uint64]struct{}),
		settled:  newRecentSet(2 * p.cfg.MaxAckPending),
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
	d.wake = sync.NewCond(&d.mu)
	return d
}

// dispatch queues msg behind its entity's earlier messages.
func (d *delivery) dispatch(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		d.p.log.Warn("message without JetStream metadata", "subject", msg.Subject(), "error", err)
		return
	}
	seq := md.Sequence.Stream
	d.mu.Lock()
	if md.NumDelivered > 1 {
		if _, ok := d.inflight[seq]; ok {
			d.mu.Unlock()
			return // the first copy is still here
		}
		if d.settled.has(seq) {
			d.mu.Unlock()
			if !d.batched { // batched: its ack may still wait for the flush
				_ = msg.Ack() // the first ack may have been lost
			}
			return
		}
	}
	d.inflight[seq] = struct{}{}
	subj := msg.Subject()
	q := d.queues[subj]
	if q == nil {
		q = &entityQueue{subject: subj}
		d.queues[subj] = q
	}
	q.msgs = append(q.msgs, queued{msg, md})
	if len(q.msgs) == 1 {
		d.ready = append(d.ready, q)
		d.wake.Signal()
	}
	d.mu.Unlock()
}

// close wakes the workers to exit.
func (d *delivery) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.wake.Broadcast()
}

// work sends entities' messages until close. A queue is in ready only
// while no worker holds it, so one entity is never sent by two workers.
func (d *delivery) work(ctx context.Context) {
	for {
		d.mu.Lock()
		for len(d.ready) == 0 && !d.closed {
			d.wake.Wait()
		}
		if d.closed {
			d.mu.Unlock()
			return
		}
		q := d.ready[0]
		d.ready[0] = nil
		d.ready = d.ready[1:]
		next := q.msgs[0]
		d.mu.Unlock()

		settled := d.process(ctx, next.msg, next.md)

		d.mu.Lock()
		if !settled {
			// Shutting down: the message stays unacknowledged and the
			// next run gets it first.
			d.mu.Unlock()
			return
		}
		delete(d.inflight, next.md.Sequence.Stream)
		d.settled.add(next.md.Sequence.Stream)
		q.msgs[0] = queued{}
		q.msgs = q.msgs[1:]
		if len(q.msgs) > 0 {
			d.ready = append(d.ready, q) // behind the others: fair between entities
			d.wake.Signal()
		} else {
			delete(d.queues, q.subject)
		}
		d.mu.Unlock()
	}
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
		if !d.deadLetter(ctx, msg, pos, deadLetter{cause: causeBadEvent, reason: err, raw: msg.Data()}) {
			return false
		}
		return d.ack(ctx, msg)
	}
	for i, rec := range recs {
		pos.index, pos.seq, pos.typ = i, rec.Seq, rec.Type
		ev, err := d.p.conv.event(ent, rec, i)
		if err != nil {
			if !d.deadLetter(ctx, msg, pos, deadLetter{cause: causeBadEvent, reason: err, raw: rec.Data}) {
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
			cause := causeRetries
			if errors.Is(err, ErrRejected) {
				cause = causeRejected
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

// recentSet remembers the last n values added.
type recentSet struct {
	ring []uint64
	next int
	set  map[uint64]struct{}
}

func newRecentSet(n int) recentSet {
	return recentSet{ring: make([]uint64, 0, n), set: make(map[uint64]struct{}, n)}
}

func (r *recentSet) has(v uint64) bool { _, ok := r.set[v]; return ok }

func (r *recentSet) add(v uint64) {
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, v)
	} else {
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = v
		r.next = (r.next + 1) % len(r.ring)
	}
	r.set[v] = struct{}{}
}
