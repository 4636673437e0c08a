package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// TailStart returns the stream sequence of the first of the last n messages
// on subject in stream (of the subject's first message if it has no more
// than n), or 0 if the subject has none. The stream must allow Direct Get,
// as the journal and CRDT streams do.
//
// It binary-searches the stream's sequences with batched Direct Gets of one
// message, each of which says how many messages on subject follow it
// (Nats-Num-Pending): about log2 of the subject's last sequence requests,
// however many messages the subject holds, where reading the subject from
// its start to find its end costs a read of every one. The answer is
// served by any replica; messages appended meanwhile make the tail longer,
// never shorter.
func TailStart(ctx context.Context, js jetstream.JetStream, stream, subject string, n int) (uint64, error) {
	n = max(n, 1)
	last, err := leaderGet(ctx, js, stream, msgGetRequest{LastFor: subject})
	if err != nil {
		return 0, fmt.Errorf("tail of %s: %w", subject, err)
	}
	if last == nil {
		return 0, nil
	}
	m, err := searchLast(ctx, js, stream, subject, last.Sequence, func(_ *jetstream.RawStreamMsg, pending uint64) (bool, error) {
		return pending >= uint64(n-1), nil
	})
	if m == nil || err != nil {
		return 0, err
	}
	return m.Sequence, nil
}

// Tail returns the Version after which Read yields the entity's last n
// events (all of them if it has no more), found as TailStart finds a
// subject's last messages, by the events' sequence numbers: for showing
// the end of a long journal without reading it from the start.
func (j *Journal) Tail(ctx context.Context, e Entity, n int) (Version, error) {
	if err := e.Validate(); err != nil {
		return Version{}, err
	}
	head, err := j.Head(ctx, e)
	if err != nil || head.Seq <= uint64(max(n, 1)) {
		return Version{}, err // all of them
	}
	target := head.Seq - uint64(max(n, 1)) + 1 // the first event wanted
	m, err := searchLast(ctx, j.js, j.stream, j.subject+e.token(), head.StreamSeq, func(m *jetstream.RawStreamMsg, _ uint64) (bool, error) {
		first, _, err := decodeEntry(m.Data)
		if err != nil {
			return false, fmt.Errorf("tail %s: stream seq %d: %w", e, m.Sequence, err)
		}
		return first <= target, nil
	})
	if m == nil || err != nil {
		return Version{}, err
	}
	// Read skips the events of m before target: m may hold several.
	return Version{Seq: target - 1, StreamSeq: m.Sequence}, nil
}

// searchLast returns the last message on subject, up to stream sequence
// last (the subject's last message, as the leader named it), for which ok
// holds, where ok holds for a prefix of the subject's messages (given each
// with how many messages on subject follow it); the subject's first
// message if ok holds for none; nil if the subject has none. It
// binary-searches the stream's sequences, one batched Direct Get of one
// message a step.
func searchLast(ctx context.Context, js jetstream.JetStream, stream, subject string, last uint64,
	ok func(m *jetstream.RawStreamMsg, pending uint64) (bool, error)) (*jetstream.RawStreamMsg, error) {
	// after(s) is the subject's first message at or after stream sequence
	// s, with how many follow it; nil if there is none.
	after := func(s uint64) (*jetstream.RawStreamMsg, uint64, error) {
		msgs, err := jetstreamext.GetBatch(ctx, js, stream, 1, jetstreamext.GetBatchSeq(s), jetstreamext.GetBatchSubject(subject))
		if err == nil {
			for m, ierr := range msgs {
				if ierr != nil {
					err = ierr
					break
				}
				pending, perr := strconv.ParseUint(headerValue(m.Header, numPendingHeader), 10, 64)
				if perr != nil {
					return nil, 0, fmt.Errorf("tail of %s: %s %q: %w", subject, numPendingHeader, headerValue(m.Header, numPendingHeader), perr)
				}
				return m, pending, nil
			}
		}
		switch {
		case err == nil, errors.Is(err, jetstreamext.ErrNoMessages):
			return nil, 0, nil
		case errors.Is(err, jetstreamext.ErrBatchUnsupported):
			return nil, 0, fmt.Errorf("tail of %s: %w: batched Direct Get needs nats-server 2.11", subject, ErrUnsupportedServer)
		case errors.Is(err, nats.ErrNoResponders):
			return nil, 0, fmt.Errorf("tail of %s: stream %s does not answer Direct Get: %w", subject, stream, err)
		}
		return nil, 0, fmt.Errorf("tail of %s: %w", subject, err)
	}
	first, pending, err := after(1)
	if first == nil || err != nil {
		return nil, err
	}
	if good, err := ok(first, pending); !good || err != nil {
		return first, err
	}
	// Invariant: ok holds for best, at lo; no sequence in (hi, last]
	// starts a message for which it holds.
	lo, hi, best := first.Sequence, max(last, first.Sequence), first
	for lo < hi {
		mid := lo + (hi-lo)/2 + 1
		m, p, err := after(mid)
		if err != nil {
			return nil, err
		}
		good := false
		if m != nil {
			if good, err = ok(m, p); err != nil {
				return nil, err
			}
		}
		if good {
			lo, best = m.Sequence, m
		} else {
			hi = mid - 1
		}
	}
	return best, nil
}
