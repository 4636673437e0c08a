package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// noRetry turns off nats.go's own retries on "no responders": publish
// retries itself, after telling a missing stream from a leader election.
var noRetry = jetstream.WithRetryAttempts(0)

// writeIDHeader carries a random id per write, the same on every retry of
// it, so that a retry whose first attempt landed can recognise it.
//
// It is deliberately not Nats-Msg-Id: the CAS already makes a duplicate
// append impossible, and the server's deduplication index (every id kept
// for the duplicate window, in memory) cost about 5% of append throughput
// at 64 concurrent entities in BenchmarkAppend (0.89x against 0.94x raw).
const writeIDHeader = "Jetstate-Write-Id"

// casWriter publishes messages fenced by the subject's last sequence, the
// one write path of the journal, the value store and the shard table (send,
// unfenced, is also the CRDT store's).
type casWriter struct {
	js     jetstream.JetStream
	stream string
	cfg    Config
}

// publish sends msg provided the last message on its subject has stream
// sequence expected (0: the subject holds none), and returns the new
// message's stream sequence.
//
// It retries what is transient until ctx is done, keeping writeID across
// attempts. When the server refuses a retry because the subject moved on,
// publish looks at the message that took the expected slot (the first on
// the subject after expected): if it carries writeID, an earlier attempt
// landed and its sequence is returned; otherwise another writer won and the
// result is a *ConflictError.
func (w casWriter) publish(ctx context.Context, msg *nats.Msg, writeID string, expected uint64) (uint64, error) {
	msg.Header[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(expected, 10)}
	msg.Header[writeIDHeader] = []string{writeID}
	return w.send(ctx, msg, func(ctx context.Context) (uint64, error) {
		// Someone appended, or an earlier attempt of ours did and its ack
		// was lost. Look at what is last now.
		return w.resolveConflict(ctx, msg.Subject, writeID, expected)
	})
}

// send publishes msg until the stream acknowledges it and returns its
// stream sequence: the retry loop of every write, fenced or not. It retries
// what is transient until ctx is done; a refusal for size fails with
// ErrTooLarge and a missing stream with ErrStreamNotFound. wrongLast
// decides the outcome of a fence's refusal (10071); an unfenced message
// never meets one and passes nil.
func (w casWriter) send(ctx context.Context, msg *nats.Msg, wrongLast func(context.Context) (uint64, error)) (uint64, error) {
	bo := newBackoff()
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, w.cfg.AttemptTimeout)
		ack, err := w.js.PublishMsg(actx, msg, noRetry)
		cancel()
		if err == nil {
			return ack.Sequence, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("append %s: %w (last attempt: %v)", msg.Subject, ctx.Err(), err)
		}
		var apiErr *jetstream.APIError
		switch {
		case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence && wrongLast != nil:
			return wrongLast(ctx)
		case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			// A replicated stream refuses while another write to the
			// subject is in flight; the real state is unknown. Retry.
		case TooLarge(err):
			return 0, fmt.Errorf("append %s: %d bytes: %w: %v", msg.Subject, len(msg.Data), ErrTooLarge, err)
		case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
			// No stream listens: it is missing, or it is electing a leader.
			if err := streamExists(ctx, w.js, w.stream, w.cfg.AttemptTimeout); err != nil {
				return 0, fmt.Errorf("append %s: %w", msg.Subject, err)
			}
		case errors.Is(err, context.DeadlineExceeded), transient(err):
			// The ack may be lost (the retry is deduplicated), or the
			// cluster has no leader or quorum for a moment.
		default:
			return 0, fmt.Errorf("append %s: %w", msg.Subject, err)
		}
		w.cfg.Logger.DebugContext(ctx, "append retry", "subject", msg.Subject, "attempt", attempt, "error", err)
		if err := bo.Wait(ctx); err != nil {
			return 0, fmt.Errorf("append %s: %w", msg.Subject, err)
		}
	}
}

// resolveConflict runs after a 10071 refusal. Every write to the subject is
// fenced, so the first message after expected is the one write that won the
// slot we asked for: if it is ours, an earlier attempt landed (its ack was
// lost) and the write succeeded, even if others appended after it.
func (w casWriter) resolveConflict(ctx context.Context, subject, writeID string, expected uint64) (uint64, error) {
	winner, err := leaderGetRetry(ctx, w.js, w.stream, msgGetRequest{Seq: expected + 1, NextFor: subject}, w.cfg)
	if err != nil {
		return 0, fmt.Errorf("append %s: after conflict: %w", subject, err)
	}
	if winner != nil && headerValue(winner.Header, writeIDHeader) == writeID {
		return winner.Sequence, nil
	}
	last, err := lastMsg(ctx, w.js, w.stream, subject, w.cfg)
	if err != nil {
		return 0, fmt.Errorf("append %s: after conflict: %w", subject, err)
	}
	conflict := &ConflictError{Subject: subject, Expected: expected}
	if last != nil {
		conflict.Actual = last.Sequence
	}
	return 0, conflict
}

// streamExists tells a missing stream (or a server without JetStream) from
// a stream that is only electing a leader: it returns nil for the latter.
func streamExists(ctx context.Context, js jetstream.JetStream, stream string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := js.Stream(ctx, stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("%w: %s", ErrStreamNotFound, stream)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		errors.Is(err, nats.ErrNoResponders):
		return ErrNoJetStream
	}
	return nil // exists, or unknown: let the caller retry
}
