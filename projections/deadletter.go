package projections

import (
	"context"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/internal/deadletter"
)

// Headers of a dead-letter message. A dead letter of an event the sink
// refused is that CloudEvent in binary mode (ce-* headers, percent-encoded,
// data as the body: EventFromNATS reads it); one of a message or event
// that could not be converted carries the raw journal bytes. Both carry
// these headers, and a Nats-Msg-Id ("dead:<consumer>:<event id>") so that
// a stream on the dead-letter subject keeps one dead letter per event
// however often it is redelivered within its duplicate window. The
// sidecar's eventing writes its dead letters with the same headers.
const (
	// HeaderReason says why the event is a dead letter.
	HeaderReason = deadletter.HeaderReason
	// HeaderCause is one of "rejected" (the sink refused it for good),
	// "retries" (the sink failed MaxTries times) or "bad_event" (it could
	// not be converted).
	HeaderCause = deadletter.HeaderCause
	// HeaderTries is how often the sink was tried.
	HeaderTries = deadletter.HeaderTries
	// HeaderJournalSubject, HeaderStreamSeq and HeaderEventIndex locate the
	// event in the journal stream (the index is -1 when the whole message
	// is bad).
	HeaderJournalSubject = deadletter.HeaderJournalSubject
	HeaderStreamSeq      = deadletter.HeaderStreamSeq
	HeaderEventIndex     = deadletter.HeaderEventIndex
	// HeaderEventType is the journal's type URL of a raw event.
	HeaderEventType = deadletter.HeaderEventType
	// HeaderDataOmitted is set, to the size of the data left out, on a dead
	// letter whose data would have made it too large for the server or the
	// stream; HeaderJournalSubject and HeaderStreamSeq find the event.
	HeaderDataOmitted = deadletter.HeaderDataOmitted
)

// deadLetter is what goes to the dead-letter subject.
type deadLetter struct {
	cause  string // a deadletter.Cause* value
	reason error
	tries  int
	ev     *event.Event // the CloudEvent, if there is one
	raw    []byte       // otherwise the journal's bytes
}

// deadLetter publishes dl and retries until it is accepted or ctx ends
// (reported as false): the projection moves past an event only once its
// dead letter is out. If a stream captures the subject the dead letter is
// stored with an acknowledgement; otherwise it is published on core NATS
// and a warning says that it was not stored (see internal/deadletter).
func (d *delivery) deadLetter(ctx context.Context, msg jetstream.Msg, pos position, dl deadLetter) bool {
	l := deadletter.Letter{
		Subject:        d.p.cfg.DeadLetterSubject,
		Event:          dl.ev,
		Cause:          dl.cause,
		Reason:         dl.reason,
		Tries:          dl.tries,
		JournalSubject: pos.subject,
		StreamSeq:      pos.streamSeq,
		Index:          pos.index,
		MsgID:          "dead:" + d.consumer + ":" + EventID(d.p.stream, pos.streamSeq, pos.index),
	}
	if dl.ev == nil {
		l.Data, l.EventType = dl.raw, pos.typ
	}
	if err := d.dl.Publish(ctx, l, func() { _ = msg.InProgress() }); err != nil {
		return false // ctx ended
	}
	d.p.m.deadLetters.WithLabelValues(dl.cause).Inc()
	d.p.log.With(pos.attrs()...).WarnContext(ctx, "event dead-lettered", "cause", dl.cause, "reason", dl.reason, "tries", dl.tries)
	return true
}
