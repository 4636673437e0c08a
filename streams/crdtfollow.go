package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/internal/backoff"
)

// followBuffer is how many states a Follow's consumer sends ahead of fn: a
// state may be as large as the stream's max message size.
const followBuffer = 16

// Pacing of a Follow's recovery when its consumer cannot be recreated (the
// server is down or electing a leader): slower than a write's retries, as
// nobody waits on it but the caller's replicas.
const (
	followBackoffMin = 100 * time.Millisecond
	followBackoffMax = 5 * time.Second
)

// Follow calls fn for each state of e published after stream sequence
// after, in stream order, with deleted true for e's tombstone, until stop
// is called or ctx ends. fn is called from one goroutine at a time, never
// concurrently; it should return promptly, as the next state waits for it.
//
// Follow resumes by itself after the last state it delivered across NATS
// reconnects, server restarts and stream leader changes, so fn sees every
// state published after after that is still stored when Follow gets to it
// (a state replaced before Follow reached it is skipped: its replica's
// later state follows). It reads through an ordered consumer, one per
// Follow, which lives on the server while Follow runs.
//
// stop cancels the following and waits until fn has returned for the last
// time; it may be called more than once. Follow fails at once, and starts
// nothing, for an invalid entity or a stream that does not exist
// (ErrStreamNotFound).
func (c *CRDTs) Follow(ctx context.Context, e Entity, after uint64, fn func(s CRDTState, deleted bool)) (stop func(), err error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	f := &follower{c: c, e: e, head: c.cfg.crdtEntitySubject(e) + ".", next: after + 1, fn: fn}
	it, err := f.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("follow crdt %s: %w", e, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.run(ctx, it)
	}()
	return func() {
		cancel()
		<-done
	}, nil
}

// follower is the state of one Follow, owned by its goroutine.
type follower struct {
	c    *CRDTs
	e    Entity
	head string // e's subjects without the replica token
	next uint64 // the first stream sequence not delivered yet
	fn   func(CRDTState, bool)
}

// open starts an ordered consumer of e's subjects at f.next. The consumer
// recreates itself once on a gap, a reconnect or missed heartbeats; when
// that fails, run opens a new one with its own back-off, which ends with
// ctx (nats.go's own waits do not).
func (f *follower) open(ctx context.Context) (jetstream.MessagesContext, error) {
	actx, cancel := context.WithTimeout(ctx, f.c.cfg.AttemptTimeout)
	defer cancel()
	cons, err := f.c.js.OrderedConsumer(actx, f.c.w.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects:   []string{f.head + "*"},
		DeliverPolicy:    jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:      f.next,
		MaxResetAttempts: 1,
	})
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("%w: %s", ErrStreamNotFound, f.c.w.stream)
	case err != nil:
		return nil, err
	}
	return cons.Messages(jetstream.PullMaxMessages(followBuffer))
}

// run delivers states until ctx ends, reopening the consumer after f.next
// whenever it fails.
func (f *follower) run(ctx context.Context, it jetstream.MessagesContext) {
	defer func() {
		if it != nil {
			it.Stop()
		}
	}()
	bo := backoff.Backoff{Min: followBackoffMin, Max: followBackoffMax}
	log := f.c.cfg.Logger
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			bo.Reset()
			f.deliver(ctx, m)
			continue
		}
		log.DebugContext(ctx, "crdt follow: consumer failed, reopening", "entity", f.e.String(), "next", f.next, "error", err)
		it.Stop()
		for {
			if bo.Wait(ctx) != nil {
				return
			}
			if it, err = f.open(ctx); err == nil {
				break
			}
			log.DebugContext(ctx, "crdt follow: reopen failed", "entity", f.e.String(), "next", f.next, "error", err)
		}
	}
}

// deliver hands one stored message to fn. A message that does not parse
// (not written by CRDTs) is skipped.
func (f *follower) deliver(ctx context.Context, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		f.c.cfg.Logger.WarnContext(ctx, "crdt follow: message without metadata", "entity", f.e.String(), "error", err)
		return
	}
	f.next = md.Sequence.Stream + 1
	replica, err := parseReplica(m.Subject(), f.head)
	if err != nil {
		f.c.cfg.Logger.WarnContext(ctx, "crdt follow: skipped", "entity", f.e.String(), "seq", md.Sequence.Stream, "error", err)
		return
	}
	f.fn(CRDTState{Replica: replica, Data: m.Data(), Seq: md.Sequence.Stream}, replica == tombstoneReplica)
}
