// Package readmodel is a CQRS read model of the shopping cart example: it
// receives the cart's journal events as CloudEvents over HTTP (as
// `jetstate project` sends them, binary or structured, data as JSON or
// protobuf), keeps a view in SQLite (the items of every cart, and the
// products added most) and answers queries over HTTP with JSON.
//
// The contract with the projection:
//   - Idempotent. Each event's (source, id) is recorded in the same
//     transaction as its change to the view; an event seen before is
//     acknowledged (200) and changes nothing, so redeliveries are harmless.
//   - A failure to store answers 500: the projection retries with back-off,
//     and the event is not lost. A malformed CloudEvent or event data
//     answers 400, which the projection sends to its dead-letter subject.
//     Events of other types are acknowledged and ignored (logged).
//   - Rebuildable. Reset empties the view and forgets the ids, and the
//     projection's rebuild (`jetstate projection rebuild`) replays every
//     event into it; the view it builds equals the one it replaced.
//
// The view relies on the projection's per-entity order: a cart's events
// arrive one at a time in journal order.
package readmodel
