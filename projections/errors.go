package projections

import "errors"

var (
	// ErrRejected marks a sink's refusal that retrying cannot fix (an HTTP
	// 400, 413 or 415, say). A Sink wraps it into the error it returns; the
	// projection then sends the event to the dead-letter subject at once
	// instead of retrying.
	ErrRejected = errors.New("event rejected by the sink")

	// ErrBadEvent reports an event that no retry can deliver because of
	// the event itself: here, a journal message or event that cannot
	// become a CloudEvent (a body jetstate did not write, a subject outside
	// the service, an empty type, or data that does not decode with the
	// descriptor the resolver returned). Such events go to the dead-letter
	// subject at once (cause "bad_event") without being offered to the
	// sink. It is meant as jetstate's one bad-event sentinel: the sidecar's
	// eventing may wrap it for its own (an undecodable journal entry or
	// topic message, a payload that is not the method's input type), with
	// its own words after it ("%w: %v"), and callers then match both with
	// errors.Is(err, projections.ErrBadEvent).
	ErrBadEvent = errors.New("bad event")

	// ErrSuperseded is returned by Run when a newer generation of the
	// projection became the active one (a rebuild finished): this
	// projector's consumer was retired and it must not deliver any more.
	ErrSuperseded = errors.New("projection superseded by a newer generation")

	// ErrNoProjection reports an operation (Pause, Resume, Status) on a
	// projection that has no active generation yet: it never ran.
	ErrNoProjection = errors.New("projection has no active consumer")
)
