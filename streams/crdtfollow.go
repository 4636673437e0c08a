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
	head := c.cfg.crdtEntitySubject(e) + "."
	f := &follower{c: c, what: e.String(), filter: head + "*", next: after + 1,
		deliver: func(subject string, s CRDTState) error {
			replica, err := parseReplica(subject, head)
			if err != nil {
				return err
			}
			s.Replica = replica
			fn(s, replica == tombstoneReplica)
			return nil
		}}
	return f.start(ctx)
}

// FollowAll calls fn for each state of every entity of the service
// published after it was called, in stream order, with deleted true for a
// tombstone, until stop is called or ctx ends: one ordered consumer for
// the whole service, for a replica that follows all its active entities.
// It returns the stream sequence it follows after: every state stored after
// it reaches fn, so an entity whose Load returned a last sequence at or
// after it misses nothing. Otherwise as Follow.
func (c *CRDTs) FollowAll(ctx context.Context, fn func(e Entity, s CRDTState, deleted bool)) (after uint64, stop func(), err error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
	defer cancel()
	info, err := c.stream.Info(actx)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return 0, nil, fmt.Errorf("follow crdts: %w: %s", ErrStreamNotFound, c.w.stream)
	case err != nil:
		return 0, nil, fmt.Errorf("follow crdts: %w", err)
	}
	after = info.State.LastSeq
	head := c.cfg.Prefix + "_crdt." + c.cfg.Service + "."
	f := &follower{c: c, what: c.w.stream, filter: c.cfg.CRDTSubjects(), next: after + 1,
		deliver: func(subject string, s CRDTState) error {
			e, replica, err := parseCRDTSubject(subject, head)
			if err != nil {
				return err
			}
			s.Replica = replica
			fn(e, s, replica == tombstoneReplica)
			return nil
		}}
	stop, err = f.start(ctx)
	if err != nil {
		return 0, nil, err
	}
	return after, stop, nil
}

// start opens the follower's consumer and runs it in a goroutine until the
// returned stop is called or ctx ends.
func (f *follower) start(ctx context.Context) (stop func(), err error) {
	it, err := f.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("follow crdt %s: %w", f.what, err)
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

// follower is the state of one Follow or FollowAll, owned by its goroutine.
type follower struct {
	c       *CRDTs
	what    string // for logs
	filter  string // the consumer's subject filter
	next    uint64 // the first stream sequence not delivered yet
	deliver func(subject string, s CRDTState) error
}

// open starts an ordered consumer of e's subjects at f.next. The consumer
// recreates itself once on a gap, a reconnect or missed heartbeats; when
// that fails, run opens a new one with its own back-off, which ends with
// ctx (nats.go's own waits do not).
func (f *follower) open(ctx context.Context) (jetstream.MessagesContext, error) {
	actx, cancel := context.WithTimeout(ctx, f.c.cfg.AttemptTimeout)
	defer cancel()
	cons, err := f.c.js.OrderedConsumer(actx, f.c.w.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects:   []string{f.filter},
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
			f.hand(ctx, m)
			continue
		}
		log.DebugContext(ctx, "crdt follow: consumer failed, reopening", "following", f.what, "next", f.next, "error", err)
		it.Stop()
		for {
			if bo.Wait(ctx) != nil {
				return
			}
			if it, err = f.open(ctx); err == nil {
				break
			}
			log.DebugContext(ctx, "crdt follow: reopen failed", "following", f.what, "next", f.next, "error", err)
		}
	}
}

// hand passes one stored message on. A message that does not parse (not
// written by CRDTs) is skipped.
func (f *follower) hand(ctx context.Context, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		f.c.cfg.Logger.WarnContext(ctx, "crdt follow: message without metadata", "following", f.what, "error", err)
		return
	}
	f.next = md.Sequence.Stream + 1
	if err := f.deliver(m.Subject(), CRDTState{Data: m.Data(), Seq: md.Sequence.Stream}); err != nil {
		f.c.cfg.Logger.WarnContext(ctx, "crdt follow: skipped", "following", f.what, "seq", md.Sequence.Stream, "error", err)
	}
}
