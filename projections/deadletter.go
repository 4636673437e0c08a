package projections

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/jetstate/jetstate/internal/backoff"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of a dead-letter message. A dead letter of an event the sink
// refused is that CloudEvent in binary mode (ce-* headers, data as the
// body); one of a message or event that could not be converted carries the
// raw journal bytes. Both carry these headers.
const (
	// HeaderReason says why the event is a dead letter.
	HeaderReason = "Jetstate-Dead-Letter-Reason"
	// HeaderCause is one of "rejected" (the sink refused it for good),
	// "retries" (the sink failed MaxTries times) or "bad_event" (it could
	// not be converted).
	HeaderCause = "Jetstate-Dead-Letter-Cause"
	// HeaderTries is how often the sink was tried.
	HeaderTries = "Jetstate-Dead-Letter-Tries"
	// HeaderJournalSubject, HeaderStreamSeq and HeaderEventIndex locate the
	// event in the journal stream (the index is -1 when the whole message
	// is bad).
	HeaderJournalSubject = "Jetstate-Journal-Subject"
	HeaderStreamSeq      = "Jetstate-Stream-Seq"
	HeaderEventIndex     = "Jetstate-Event-Index"
	// HeaderEventType is the journal's type URL of a raw event.
	HeaderEventType = "Jetstate-Event-Type"
	// HeaderDataOmitted is set, to the size of the data left out, on a dead
	// letter whose data would have made it too large for the server or the
	// stream; HeaderJournalSubject and HeaderStreamSeq find the event.
	HeaderDataOmitted = "Jetstate-Dead-Letter-Data-Omitted"
)

// deadLetter is what goes to the dead-letter subject.
type deadLetter struct {
	cause  string
	reason error
	tries  int
	ev     *event.Event // the CloudEvent, if there is one
	raw    []byte       // otherwise the journal's bytes
}

// deadLetter publishes dl and retries until it is accepted or ctx ends
// (reported as false): the projection moves past an event only once its
// dead letter is out. If a stream captures the subject the dead letter is
// stored with an acknowledgement; otherwise it is published on core NATS
// and a warning says that it was not stored.
func (d *delivery) deadLetter(ctx context.Context, msg jetstream.Msg, pos position, dl deadLetter) bool {
	cfg := d.p.cfg
	var out *nats.Msg
	if dl.ev != nil {
		m, err := NATSMsg(cfg.DeadLetterSubject, dl.ev, false)
		if err == nil {
			out = m
		}
	}
	if out == nil {
		out = nats.NewMsg(cfg.DeadLetterSubject)
		out.Data = dl.raw
		if pos.typ != "" {
			out.Header.Set(HeaderEventType, headerSafe(pos.typ))
		}
	}
	out.Header.Set(HeaderReason, headerSafe(dl.reason.Error()))
	out.Header.Set(HeaderCause, dl.cause)
	out.Header.Set(HeaderTries, strconv.Itoa(dl.tries))
	out.Header.Set(HeaderJournalSubject, pos.subject)
	out.Header.Set(HeaderStreamSeq, strconv.FormatUint(pos.streamSeq, 10))
	out.Header.Set(HeaderEventIndex, strconv.Itoa(pos.index))

	log := d.p.log.With(pos.attrs()...)
	bo := backoff.Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax}
	for {
		err := d.publishDeadLetter(ctx, out)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		if len(out.Data) > 0 && tooLarge(err) {
			// The event filled the limit and the headers push it over:
			// the dead letter says where the event is instead.
			out.Header.Set(HeaderDataOmitted, strconv.Itoa(len(out.Data)))
			out.Data = nil
			continue
		}
		log.WarnContext(ctx, "dead letter not published, retrying", "subject", cfg.DeadLetterSubject, "error", err)
		_ = msg.InProgress()
		if bo.Wait(ctx) != nil {
			return false
		}
	}
	d.p.m.deadLetters.WithLabelValues(dl.cause).Inc()
	log.WarnContext(ctx, "event dead-lettered", "cause", dl.cause, "reason", dl.reason, "tries", dl.tries)
	return true
}

func (d *delivery) publishDeadLetter(ctx context.Context, out *nats.Msg) error {
	pctx, cancel := context.WithTimeout(ctx, d.p.cfg.SendTimeout)
	defer cancel()
	_, err := d.p.js.PublishMsg(pctx, out)
	if !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) {
		return err
	}
	nc := d.p.js.Conn()
	// No stream stores it: a subscriber may still be listening.
	out.Reply = ""
	if err := nc.PublishMsg(out); err != nil {
		return err
	}
	if err := nc.FlushWithContext(pctx); err != nil {
		return err
	}
	d.p.log.WarnContext(ctx, "no stream captures the dead-letter subject: dead letter published but not stored",
		"subject", d.p.cfg.DeadLetterSubject)
	return nil
}

// tooLarge reports a publish refused for its size, by the server's max
// payload or by the stream's max message size: trying again cannot help.
func tooLarge(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrMaxPayload) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum
}

// headerSafe keeps a header value on one line.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7F {
			return ' '
		}
		return r
	}, s)
}
