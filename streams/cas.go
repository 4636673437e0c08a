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

// casWriter publishes messages fenced by the subject's last sequence, the
// one write path of the journal and the value store.
type casWriter struct {
	js     jetstream.JetStream
	stream string
	cfg    Config
}

// publish sends msg provided the last message on its subject has stream
// sequence expected (0: the subject holds none), and returns the new
// message's stream sequence.
//
// It retries what is transient until ctx is done, keeping msgID across
// attempts, so that the server's deduplication (or, on a standalone server
// that checks the sequence first, our look at the last message) recognises
// an attempt that already landed. A real conflict is a *ConflictError.
func (w casWriter) publish(ctx context.Context, msg *nats.Msg, msgID string, expected uint64) (uint64, error) {
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	var bo backoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, w.cfg.AttemptTimeout)
		ack, err := w.js.PublishMsg(actx, msg, jetstream.WithRetryAttempts(0))
		cancel()
		if err == nil {
			// A duplicate ack means an earlier attempt of ours landed: the
			// server reports that attempt's sequence.
			return ack.Sequence, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("append %s: %w (last attempt: %v)", msg.Subject, ctx.Err(), err)
		}
		var apiErr *jetstream.APIError
		switch {
		case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
			// Someone appended, or an earlier attempt of ours did and its
			// ack was lost. Look at what is last now.
			return w.resolveConflict(ctx, msg.Subject, msgID, expected)
		case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			// A replicated stream refuses while another write to the
			// subject is in flight; the real state is unknown. Retry.
		case errors.Is(err, nats.ErrMaxPayload),
			errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
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
		if err := bo.wait(ctx); err != nil {
			return 0, fmt.Errorf("append %s: %w", msg.Subject, err)
		}
	}
}

// resolveConflict runs after a 10071 refusal: if the last message on the
// subject is our own earlier attempt, the append succeeded; otherwise it is
// a real conflict.
func (w casWriter) resolveConflict(ctx context.Context, subject, msgID string, expected uint64) (uint64, error) {
	last, err := lastMsg(ctx, w.js, w.stream, subject, w.cfg)
	if err != nil {
		return 0, fmt.Errorf("append %s: after conflict: %w", subject, err)
	}
	if last != nil && headerValue(last.Header, jetstream.MsgIDHeader) == msgID {
		return last.Sequence, nil
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
