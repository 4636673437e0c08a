package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// errLost reports that a delivery, or an event published in the
// sink's pipeline, may have been lost on the way: the consumer sequence
// jumped (messages sent while the connection was down) or went back (a new
// consumer leader that had not heard of the last deliveries), or the sink's
// connection reconnected while events were in flight. A lost delivery stays
// pending on the server and would come back only after the ack wait,
// behind later events of its entity; a lost event would be acknowledged
// unsent. The projector therefore starts the generation over from the
// consumer's ack floor.
var errLost = errors.New("a delivery or a send may have been lost")

// ackBatch is how many settled messages one cumulative acknowledgement
// covers at most while messages keep arriving; one is sent sooner when
// everything received so far is settled.
const ackBatch = 128

// acks acknowledges the journal messages a delivery settled (sent, or
// dead-lettered) and checks that every delivery arrives.
//
// On a consumer with AckPolicy all, an acknowledgement covers every
// message up to its stream sequence. acks keeps the window of messages
// received and not yet covered, in delivery order, and once a prefix of
// it is settled acknowledges the settled message with the highest stream
// sequence: one acknowledgement for up to ackBatch messages. A message
// settled behind one that is not (an entity still being sent) waits in the
// window, kept alive, until everything before it is settled. Since the
// prefix covers every delivery in consumer sequence order and a missing
// one ends the run (errLost), no message is acknowledged before it was
// settled.
//
// On an explicit-ack consumer (generations made with Config.AckEach, and
// those made before cumulative acknowledgements) every message is
// acknowledged on its own.
//
// confirm, if set, must succeed before any acknowledgement: a flush of the
// sink's connection that confirms the events published before it.
type acks struct {
	all       bool
	confirm   func(ctx context.Context) error
	keepAlive time.Duration
	log       *slog.Logger

	mu     sync.Mutex
	next   uint64 // the consumer sequence the next delivery carries
	first  uint64 // the consumer sequence of win[0]
	win    []slot // AckPolicy all: received, not yet acknowledged
	top    jetstream.Msg
	topSeq uint64 // stream sequence of top, the highest of the settled prefix
	acked  uint64 // stream sequence of the last acknowledgement
	since  int    // messages settled into the prefix since the last acknowledgement
	toAck  []jetstream.Msg
	wake   chan struct{}
}

// slot is one delivery in the window.
type slot struct {
	msg     jetstream.Msg
	seq     uint64 // stream sequence
	settled bool
}

// newAcks returns the acknowledgements for one run of a consumer whose
// next delivery carries consumer sequence next.
func newAcks(policy jetstream.AckPolicy, next uint64, confirm func(context.Context) error, keepAlive time.Duration, log *slog.Logger) *acks {
	return &acks{
		all:       policy == jetstream.AckAllPolicy,
		confirm:   confirm,
		keepAlive: keepAlive,
		log:       log,
		next:      next,
		first:     next,
		wake:      make(chan struct{}, 1),
	}
}

// received records a delivery, in the order the consumer's iterator
// returns them, before it is dispatched. It returns errLost if a delivery
// before it did not arrive.
func (a *acks) received(msg jetstream.Msg, md *jetstream.MsgMetadata) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if dseq := md.Sequence.Consumer; dseq != a.next {
		return fmt.Errorf("%w: consumer sequence %d, expected %d", errLost, dseq, a.next)
	}
	a.next++
	if a.all {
		a.win = append(a.win, slot{msg: msg, seq: md.Sequence.Stream})
	}
	return nil
}

// settled records that the delivery is done with: its events are accepted
// or dead-lettered, or it was a copy of one held or done with.
func (a *acks) settled(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata) {
	if !a.all {
		if a.confirm == nil {
			a.ackOne(ctx, msg)
			return
		}
		a.mu.Lock()
		a.toAck = append(a.toAck, msg)
		a.mu.Unlock()
		a.signal()
		return
	}
	a.mu.Lock()
	i := md.Sequence.Consumer - a.first
	if md.Sequence.Consumer < a.first || i >= uint64(len(a.win)) {
		a.mu.Unlock() // not received in this run (cannot happen)
		return
	}
	a.win[i].settled = true
	wake := false
	if i == 0 {
		n := 0
		for n < len(a.win) && a.win[n].settled {
			if s := a.win[n]; s.seq > a.topSeq {
				a.top, a.topSeq = s.msg, s.seq
			}
			a.win[n] = slot{}
			n++
		}
		a.win = a.win[n:]
		a.first += uint64(n)
		a.since += n
		wake = a.topSeq > a.acked && (a.since >= ackBatch || len(a.win) == 0)
	}
	a.mu.Unlock()
	if wake {
		a.signal()
	}
}

// copied records that the delivery was a redelivered copy of a message
// still held or settled lately, which the queue dropped: on an AckPolicy
// all consumer its place in the window is settled (the first copy's place
// comes before it).
func (a *acks) copied(md *jetstream.MsgMetadata) {
	if a.all {
		a.settled(context.Background(), nil, md)
	}
}

func (a *acks) signal() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *acks) ackOne(ctx context.Context, msg jetstream.Msg) {
	if err := msg.Ack(); err != nil {
		// The message comes again (at the latest on the next run) and is
		// sent again with the same ids.
		a.log.WarnContext(ctx, "ack", "subject", msg.Subject(), "error", err)
	}
}

// run sends the acknowledgements until ctx ends. It fails only if confirm
// does: what it covers stays unacknowledged and the next run sends it
// again first.
func (a *acks) run(ctx context.Context) error {
	var tick <-chan time.Time
	if a.all && a.keepAlive > 0 {
		t := time.NewTicker(a.keepAlive)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			a.keepSettledAlive()
			continue
		case <-a.wake:
		}
		if err := a.flush(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// finishTimeout bounds the confirmation of the last acknowledgements when
// a run stops.
const finishTimeout = 5 * time.Second

// finish acknowledges what is settled once the run has stopped (its
// workers have returned).
func (a *acks) finish(ctx context.Context) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	if err := a.flush(fctx); err != nil {
		a.log.DebugContext(ctx, "acknowledgements at stop", "error", err)
	}
}

// flush confirms the sends and acknowledges what they cover.
func (a *acks) flush(ctx context.Context) error {
	a.mu.Lock()
	top, topSeq := a.top, a.topSeq
	if topSeq <= a.acked {
		top = nil
	}
	msgs := a.toAck
	a.toAck = nil
	a.mu.Unlock()
	if top == nil && len(msgs) == 0 {
		return nil
	}
	if a.confirm != nil {
		if err := a.confirm(ctx); err != nil {
			return fmt.Errorf("confirm events: %w", err)
		}
	}
	if top != nil {
		a.mu.Lock()
		if topSeq > a.acked {
			a.acked, a.since = topSeq, 0
		} else {
			top = nil
		}
		a.mu.Unlock()
		if top != nil {
			a.ackOne(ctx, top)
		}
	}
	for _, m := range msgs {
		a.ackOne(ctx, m)
	}
	return nil
}

// keepSettledAlive marks the settled messages of the window in progress,
// so that the server does not redeliver them while they wait for an
// earlier message (the keyed queue keeps those it holds alive).
func (a *acks) keepSettledAlive() {
	a.mu.Lock()
	var msgs []jetstream.Msg
	for _, s := range a.win {
		if s.settled {
			msgs = append(msgs, s.msg)
		}
	}
	a.mu.Unlock()
	for _, m := range msgs {
		_ = m.InProgress()
	}
}
