// Package deadletter publishes dead letters, the events projections and the
// sidecar's eventing give up on, in one format:
//
//   - The body is the event's data (or the bytes as stored, when there is
//     no event); an event's attributes travel as ce-* headers,
//     percent-encoded as the CloudEvents binding says (internal/cebinding),
//     so cebinding.EventFromNATS (projections.EventFromNATS) reads it back.
//   - jetstate's own headers (HeaderReason, HeaderCause, ...) say why and
//     where from, each kept on one line. Headers the server acts on
//     (Nats-*) are never copied from the caller's; Nats-Msg-Id is set from
//     Letter.MsgID, so the stream stores one dead letter per event however
//     often it is redelivered within its duplicate window.
//
// Publish retries until the dead letter is stored or its context ends,
// calling a keep-alive hook between tries (the caller marks its message in
// progress). A dead letter refused for its size is sent again at once
// without its body, HeaderDataOmitted saying how much was left out. When
// no stream captures the subject (asked before each try), the dead letter
// is published on core NATS, confirmed by a flush, and a warning says it
// was not stored.
package deadletter
