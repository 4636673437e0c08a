package keyq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Consumer is what a Queue needs of the consumer whose messages it holds
// (a jetstream.Consumer has it).
type Consumer interface {
	Info(ctx context.Context) (*jetstream.ConsumerInfo, error)
}

// Config describes a Queue. A zero field means its documented default.
type Config struct {
	// Consumer is the consumer whose messages are dispatched. Required.
	// Before handing messages back, Run asks for its info: that makes the
	// server drop the pull requests of the drained iterator. One left
	// there makes the server take the first Nak'ed message for it and,
	// finding nobody listening, queue it again behind the others, out of
	// stream order (nats-server 2.15). A handle names the consumer, so one
	// taken before the consumer was deleted and made again serves.
	Consumer Consumer

	// Workers is how many messages (of different keys) are processed at
	// once. Default 1.
	Workers int

	// Key returns a message's ordering key. Required. It is called once per
	// dispatched message, on the goroutine that calls Dispatch.
	Key func(msg jetstream.Msg, md *jetstream.MsgMetadata) string

	// Process handles one message and settles it: it acknowledges it (or
	// Naks or Terms it) and returns true. It returns false only when ctx
	// ended first: the message then stays held, and Run Naks it. Required.
	// Process is called from several workers at once, never for two
	// messages of one key at the same time, and should return promptly
	// once ctx is done (or finish within a bound of its own).
	Process func(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata) bool

	// KeepAlive is how often every held message is marked in progress
	// (msg.InProgress). Give it well below the consumer's ack wait (a
	// third, say). Default 0: never.
	KeepAlive time.Duration

	// Remember is how many settled messages the queue remembers, to know
	// a redelivered copy of one: such a copy is acknowledged again (the
	// first acknowledgement may have been lost) and not processed. Memory
	// is bounded by Remember. Default 0: none, a copy that comes after its
	// message was settled is processed again.
	Remember int

	// NoReack drops a redelivered copy of a remembered message without
	// acknowledging it, for a caller whose acknowledgements follow Process
	// (a batch confirmed later: the first one is still to come), or whose
	// consumer acknowledges cumulatively (AckPolicy all: acknowledging a
	// copy would acknowledge every earlier message, processed or not).
	NoReack bool

	// Logger receives warnings about messages the queue cannot take. Nil
	// discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with the config at once.
func (c Config) Validate() error {
	var errs []error
	if c.Consumer == nil {
		errs = append(errs, errors.New("keyq: no Consumer"))
	}
	if c.Key == nil {
		errs = append(errs, errors.New("keyq: no Key function"))
	}
	if c.Process == nil {
		errs = append(errs, errors.New("keyq: no Process function"))
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("keyq: workers %d is negative", c.Workers))
	}
	if c.KeepAlive < 0 {
		errs = append(errs, fmt.Errorf("keyq: keep-alive %v is negative", c.KeepAlive))
	}
	if c.Remember < 0 {
		errs = append(errs, fmt.Errorf("keyq: remember %d is negative", c.Remember))
	}
	return errors.Join(errs...)
}

// ErrRunTwice is returned by a second Run of one Queue.
var ErrRunTwice = errors.New("keyq: Run called twice")

// Queue holds a consumer's messages per key for a fixed number of workers;
// see the package documentation. Dispatch and Run are safe for concurrent
// use.
type Queue struct {
	cfg Config
	ran atomic.Bool

	mu       sync.Mutex
	wake     *sync.Cond
	stopping bool                 // workers exit
	done     bool                 // Run has handed back what it held
	queues   map[string]*keyQueue // keys with held messages
	ready    []*keyQueue          // keys with a message waiting and no worker
	held     map[msgID]struct{}
	settled  recentSet
}

// keyQueue is one key's held messages, in dispatch order. The first one is
// being processed while a worker holds the key.
type keyQueue struct {
	key  string
	msgs []held
}

type held struct {
	msg jetstream.Msg
	md  *jetstream.MsgMetadata
	id  msgID
}

// msgID identifies a stored message across redeliveries: its stream
// sequence and the time it was stored, since a stream deleted and made
// again numbers its messages from 1 again while old ones may still be held.
type msgID struct {
	seq    uint64
	stored int64
}

// New returns a queue for cfg.
func New(cfg Config) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	q := &Queue{
		cfg:     cfg.withDefaults(),
		queues:  make(map[string]*keyQueue),
		held:    make(map[msgID]struct{}),
		settled: newRecentSet(cfg.Remember),
	}
	q.wake = sync.NewCond(&q.mu)
	return q, nil
}

// Dispatch queues msg behind the held messages of its key, or drops it if
// it is a redelivered copy (see the package documentation); it reports
// whether msg was such a copy (dup). It does not block on processing. Call it
// from Run's consume function; a message dispatched once Run has handed
// back what it held is Nak'ed at once.
func (q *Queue) Dispatch(msg jetstream.Msg) (dup bool) {
	md, err := msg.Metadata()
	if err != nil {
		q.cfg.Logger.Warn("message without JetStream metadata", "subject", msg.Subject(), "error", err)
		return false
	}
	return q.DispatchMeta(msg, md)
}

// DispatchMeta is Dispatch for a caller that has parsed msg's metadata
// already.
func (q *Queue) DispatchMeta(msg jetstream.Msg, md *jetstream.MsgMetadata) (dup bool) {
	id := msgID{md.Sequence.Stream, md.Timestamp.UnixNano()}
	key := q.cfg.Key(msg, md)
	q.mu.Lock()
	if q.done {
		q.mu.Unlock()
		_ = msg.Nak()
		return false
	}
	if _, ok := q.held[id]; ok {
		q.mu.Unlock()
		return true // the first copy is still here
	}
	if q.settled.has(id) {
		q.mu.Unlock()
		if !q.cfg.NoReack {
			_ = msg.Ack() // the first acknowledgement may have been lost
		}
		return true
	}
	q.held[id] = struct{}{}
	kq := q.queues[key]
	if kq == nil {
		kq = &keyQueue{key: key}
		q.queues[key] = kq
	}
	kq.msgs = append(kq.msgs, held{msg, md, id})
	if len(kq.msgs) == 1 {
		q.ready = append(q.ready, kq)
		q.wake.Signal()
	}
	q.mu.Unlock()
	return false
}

// Run processes the dispatched messages with the configured workers while
// consume runs, and stops as the package documentation says: once ctx
// ends, consume must drain its iterator (dispatching what it still gets)
// and return; Run then waits for the workers' calls in hand, Naks every
// message still held, in stream order, and returns consume's error. If
// consume returns before ctx ends, Run stops the same way.
//
// consume is called once, with ctx, on Run's goroutine. A Queue serves one
// Run; a second returns ErrRunTwice.
func (q *Queue) Run(ctx context.Context, consume func(ctx context.Context) error) error {
	if q.ran.Swap(true) {
		return ErrRunTwice
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(wctx, func() {
		q.mu.Lock()
		q.stopping = true
		q.mu.Unlock()
		q.wake.Broadcast()
	})
	defer stop()
	var workers sync.WaitGroup
	for range q.cfg.Workers {
		workers.Go(func() { q.work(wctx) })
	}
	keepDone := make(chan struct{})
	var keeper sync.WaitGroup
	if q.cfg.KeepAlive > 0 {
		keeper.Go(func() { q.keepAlive(keepDone) })
	}

	err := consume(ctx)

	cancel()
	workers.Wait()
	close(keepDone)
	keeper.Wait()
	q.handBack(ctx)
	return err
}

// work processes keys' messages until the queue stops. A key is in ready
// only while no worker holds it, so one key is never processed by two
// workers.
func (q *Queue) work(ctx context.Context) {
	for {
		q.mu.Lock()
		for len(q.ready) == 0 && !q.stopping {
			q.wake.Wait()
		}
		// ctx too: the AfterFunc that sets stopping may not have run yet.
		if q.stopping || ctx.Err() != nil {
			q.mu.Unlock()
			return
		}
		kq := q.ready[0]
		q.ready[0] = nil
		q.ready = q.ready[1:]
		next := kq.msgs[0]
		q.mu.Unlock()

		if !q.cfg.Process(ctx, next.msg, next.md) {
			return // stopping: the key stays held, Run hands it back
		}

		q.mu.Lock()
		delete(q.held, next.id)
		q.settled.add(next.id)
		kq.msgs[0] = held{}
		kq.msgs = kq.msgs[1:]
		if len(kq.msgs) > 0 {
			q.ready = append(q.ready, kq) // behind the others: fair between keys
			q.wake.Signal()
		} else {
			delete(q.queues, kq.key)
		}
		q.mu.Unlock()
	}
}

// keepAlive marks every held message in progress every KeepAlive until
// done is closed.
func (q *Queue) keepAlive(done <-chan struct{}) {
	t := time.NewTicker(q.cfg.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		for _, m := range q.snapshot() {
			_ = m.msg.InProgress()
		}
	}
}

// snapshot returns the held messages.
func (q *Queue) snapshot() []held {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]held, 0, len(q.held))
	for _, kq := range q.queues {
		out = append(out, kq.msgs...)
	}
	return out
}

// infoTimeout bounds the consumer info request of handBack.
const infoTimeout = 5 * time.Second

// handBack Naks every held message in stream order, and any dispatched
// from now on. ctx has ended or is about to: only its values are used.
func (q *Queue) handBack(ctx context.Context) {
	q.mu.Lock()
	q.done = true
	msgs := make([]held, 0, len(q.held))
	for _, kq := range q.queues {
		msgs = append(msgs, kq.msgs...)
	}
	q.queues = map[string]*keyQueue{}
	q.ready = nil
	q.held = map[msgID]struct{}{}
	q.mu.Unlock()
	if len(msgs) == 0 {
		return
	}
	slices.SortFunc(msgs, func(a, b held) int {
		return cmp.Or(cmp.Compare(a.id.seq, b.id.seq), cmp.Compare(a.id.stored, b.id.stored))
	})
	// See Config.Consumer. Best effort: the connection may be gone too.
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), infoTimeout)
	_, err := q.cfg.Consumer.Info(ictx)
	cancel()
	if err != nil {
		q.cfg.Logger.DebugContext(ctx, "consumer info before handing back", "error", err)
	}
	for _, m := range msgs {
		if err := m.msg.Nak(); err != nil {
			q.cfg.Logger.Debug("nak", "subject", m.msg.Subject(), "stream_seq", m.id.seq, "error", err)
		}
	}
}

// recentSet remembers the last n values added.
type recentSet struct {
	ring []msgID
	next int
	set  map[msgID]struct{}
}

func newRecentSet(n int) recentSet {
	return recentSet{ring: make([]msgID, 0, n), set: make(map[msgID]struct{}, n)}
}

func (r *recentSet) has(id msgID) bool { _, ok := r.set[id]; return ok }

func (r *recentSet) add(id msgID) {
	switch {
	case cap(r.ring) == 0:
		return
	case len(r.ring) < cap(r.ring):
		r.ring = append(r.ring, id)
	default:
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = id
		r.next = (r.next + 1) % len(r.ring)
	}
	r.set[id] = struct{}{}
}
