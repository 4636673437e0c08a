package streams

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// readPage is how many journal messages one batched Direct Get returns.
// Replays longer than a page continue with an ordered consumer: Direct Get
// needs no set-up, which wins for the short tails after a snapshot, but the
// server rebuilds every message's headers for it, so a consumer streams long
// journals about three times faster (BenchmarkRecover).
const readPage = 256

// maxEmptyPages bounds how often Read waits for a lagging replica to catch
// up with the leader (about 20 s with the backoff's cap).
const maxEmptyPages = 40

// Record is one event read back from a journal, with its position: Seq is
// the event's own per-entity sequence number and StreamSeq the stream
// sequence of the message (command) that holds it.
type Record struct {
	Event
	Version
	// Time is when the event's command was committed.
	Time time.Time
}

// Head returns the entity's current Version: the position after its last
// committed event, or the zero Version if it has none. The answer comes from
// the stream leader, so it includes every acknowledged append.
func (j *Journal) Head(ctx context.Context, e Entity) (Version, error) {
	if err := e.Validate(); err != nil {
		return Version{}, err
	}
	last, err := lastMsg(ctx, j.js, j.stream, j.subject+e.token(), j.cfg)
	if err != nil || last == nil {
		return Version{}, err
	}
	first, events, err := decodeEntry(last.Data)
	if err != nil {
		return Version{}, fmt.Errorf("head %s: seq %d: %w", e, last.Sequence, err)
	}
	return Version{Seq: first + uint64(len(events)) - 1, StreamSeq: last.Sequence}, nil
}

// Read replays the entity's events after the given Version, in order, ending
// with the last event committed before Read was called (or later). Recovery
// is a snapshot's Version passed here; the zero Version replays everything.
// A Version with only Seq set (the per-entity sequence number, as the
// CloudState protocol has it) works too, but scans the journal from its start.
//
// Read is linearizable: it first asks the stream leader for the entity's
// last message, then streams the events up to it in pages of batched Direct
// Gets (served by any replica, so a lagging replica is waited for). It costs
// one round trip per readPage messages, and none beyond the first when the
// entity is already up to date. Sequence numbers are checked to be dense;
// a gap fails with ErrCorrupt. The iteration stops at the first error.
func (j *Journal) Read(ctx context.Context, e Entity, after Version) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		if err := e.Validate(); err != nil {
			yield(Record{}, err)
			return
		}
		subject := j.subject + e.token()
		head, err := lastMsg(ctx, j.js, j.stream, subject, j.cfg)
		if err != nil {
			yield(Record{}, fmt.Errorf("read %s: %w", subject, err))
			return
		}
		if head == nil || head.Sequence < after.StreamSeq {
			return
		}
		r := replay{next: after.Seq + 1, yield: yield}
		if head.Sequence == after.StreamSeq {
			// Up to date but for the rest of the head message, if any.
			if err := r.message(head.Sequence, head.Data, head.Time); err != nil && !errors.Is(err, errStop) {
				yield(Record{}, fmt.Errorf("read %s: %w", subject, err))
			}
			return
		}
		// Start at after.StreamSeq itself: a Version may point into the
		// middle of a multi-event message; replay skips what came before.
		from := max(after.StreamSeq, 1)
		bo := newBackoff()
		empty := 0
		pending := uint64(0) // messages left after the last page, as the server counted them
		for from <= head.Sequence {
			var got int
			var err error
			if pending > 0 {
				got, err = j.readConsumer(ctx, subject, from, pending, &r)
				pending = 0
				if err != nil && !errors.Is(err, errStop) && !errors.Is(err, ErrCorrupt) && ctx.Err() == nil {
					// Say the server has no room for another consumer: the
					// pages get there too.
					j.cfg.Logger.DebugContext(ctx, "replay consumer failed, reading pages", "subject", subject, "error", err)
					if err = nil; got == 0 {
						continue
					}
				}
			} else {
				got, pending, err = j.readPage(ctx, subject, from, &r)
			}
			if errors.Is(err, errStop) {
				return
			}
			if err != nil {
				if !transient(err) || ctx.Err() != nil {
					yield(Record{}, fmt.Errorf("read %s: %w", subject, err))
					return
				}
			}
			if got > 0 {
				from = r.lastStreamSeq + 1
				bo.Reset()
				continue
			}
			// The replica answering Direct Get is behind the leader: wait,
			// but not forever in case the messages were purged meanwhile.
			if empty++; empty > maxEmptyPages {
				yield(Record{}, fmt.Errorf("read %s: stream seq %d..%d not readable: %w", subject, from, head.Sequence, ErrCorrupt))
				return
			}
			if err := bo.Wait(ctx); err != nil {
				yield(Record{}, fmt.Errorf("read %s: %w", subject, err))
				return
			}
		}
	}
}

// errStop says the consumer of an iterator stopped early.
var errStop = errors.New("stop")

// readPage reads one batch of messages on subject from stream sequence from
// and hands them to r. It returns how many messages it got and how many
// more the subject held after them when the server answered.
func (j *Journal) readPage(ctx context.Context, subject string, from uint64, r *replay) (got int, pending uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, j.cfg.AttemptTimeout)
	defer cancel()
	msgs, err := jetstreamext.GetBatch(ctx, j.js, j.stream, readPage,
		jetstreamext.GetBatchSeq(from), jetstreamext.GetBatchSubject(subject))
	if err != nil {
		return 0, 0, j.mapReadErr(ctx, err)
	}
	for m, err := range msgs {
		if err != nil {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				break
			}
			return got, 0, j.mapReadErr(ctx, err)
		}
		got++
		pending, _ = strconv.ParseUint(headerValue(m.Header, numPendingHeader), 10, 64)
		if err := r.message(m.Sequence, m.Data, m.Time); err != nil {
			return got, 0, err
		}
	}
	return got, pending, nil
}

// readConsumer streams up to n messages on subject from stream sequence
// from through an ordered consumer, deleted afterwards, and hands them to r.
func (j *Journal) readConsumer(ctx context.Context, subject string, from, n uint64, r *replay) (got int, err error) {
	cons, err := j.js.OrderedConsumer(ctx, j.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{subject},
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		InactiveThreshold: j.cfg.AttemptTimeout, // cleans up if the delete below is lost
	})
	if err != nil {
		return 0, err
	}
	defer func() {
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), j.cfg.AttemptTimeout)
			_ = j.js.DeleteConsumer(dctx, j.stream, info.Name) // best effort: it also expires
			cancel()
		}
	}()
	batch, err := cons.Fetch(int(min(n, math.MaxInt32)), jetstream.FetchMaxWait(j.cfg.AttemptTimeout))
	if err != nil {
		return 0, err
	}
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			return got, err
		}
		got++
		if err := r.message(md.Sequence.Stream, m.Data(), md.Timestamp); err != nil {
			return got, err
		}
	}
	if err := batch.Error(); err != nil && got == 0 {
		return 0, err
	}
	return got, nil
}

func (j *Journal) mapReadErr(ctx context.Context, err error) error {
	if errors.Is(err, jetstreamext.ErrNoMessages) {
		return nil
	}
	if errors.Is(err, jetstreamext.ErrBatchUnsupported) {
		return fmt.Errorf("%w: batched Direct Get needs nats-server 2.11", ErrUnsupportedServer)
	}
	if errors.Is(err, nats.ErrNoResponders) {
		if serr := streamExists(ctx, j.js, j.stream, j.cfg.AttemptTimeout); serr != nil {
			return serr
		}
		return context.DeadlineExceeded // leader election: transient
	}
	return err
}

// replay turns journal messages into Records, checking that per-entity
// sequence numbers are dense and skipping events at or before the start.
type replay struct {
	next          uint64 // the sequence number the next event must have
	lastStreamSeq uint64
	yield         func(Record, error) bool
}

func (r *replay) message(streamSeq uint64, data []byte, t time.Time) error {
	r.lastStreamSeq = streamSeq
	first, events, err := decodeEntry(data)
	if err != nil {
		return fmt.Errorf("stream seq %d: %w", streamSeq, err)
	}
	if first > r.next {
		return fmt.Errorf("%w: stream seq %d starts at event %d, expected %d", ErrCorrupt, streamSeq, first, r.next)
	}
	for i, ev := range events {
		seq := first + uint64(i)
		if seq < r.next {
			continue
		}
		if !r.yield(Record{Event: ev, Version: Version{Seq: seq, StreamSeq: streamSeq}, Time: t}, nil) {
			return errStop
		}
		r.next = seq + 1
	}
	return nil
}

// numPendingHeader is set by batched Direct Get on every message: how many
// messages matching the request follow it.
const numPendingHeader = "Nats-Num-Pending"
