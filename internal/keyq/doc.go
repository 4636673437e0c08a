// Package keyq is the keyed work queue between a JetStream consumer's
// message iterator and the code that handles each message, shared by
// projections and the sidecar's eventing.
//
// A Queue holds every message dispatched to it until the message is
// settled (Config.Process returned true) or handed back (Nak'ed when the
// queue stops). Messages are grouped by a key the caller computes
// (Config.Key: an entity's journal subject, a CloudEvent subject, ...), and
// Config.Workers workers each take one key at a time:
//
//   - Order per key: a key's messages are processed one after the other,
//     in the order they were dispatched (the consumer's delivery order).
//     Never two of one key at once.
//   - Parallel across keys: different keys are processed at the same time,
//     up to Workers; a slow or failing key holds up only itself.
//   - Fair: after each message a key goes to the back of the line of keys
//     waiting for a worker.
//   - Redeliveries: a message is known by its stream sequence and the time
//     it was stored (a stream deleted and made again numbers from 1 again).
//     A copy the server redelivers while the first is still held is
//     dropped. A copy of a message settled recently (Config.Remember) is
//     acknowledged again without being processed (its first ack may have
//     been lost), or only dropped with Config.NoReack.
//   - Keep-alive: every Config.KeepAlive, each held message (processed or
//     waiting behind its key's earlier ones) is marked in progress, so the
//     server does not redeliver it, and with it the key's later messages,
//     while this process still works on it.
//
// Who does what. The caller owns the consumer and its iterator: it passes
// Run a consume function that calls Dispatch for every message and, once
// Run's context ends, drains the iterator (MessagesContext.Drain, not Stop)
// and returns when Next reports ErrMsgIteratorClosed. The queue owns its
// workers and its keep-alive goroutine. Process acknowledges (or Naks,
// Terms) the message itself; the queue only acknowledges redelivered copies
// and Naks what it still holds at the end. Run stops in this order:
//
//  1. Its context ends (or consume returns early): idle workers exit, a
//     worker in Process finishes that call and then exits. Process sees the
//     ended context and returns true (settled) or false (the message stays
//     held).
//  2. consume drains the iterator; what it still dispatches is held.
//  3. When the workers and consume have returned, the keep-alive stops and
//     every held message is Nak'ed, in stream order, so the server
//     redelivers them at once and in that order (to another process, or
//     the next run) rather than after the ack wait. The drain in step 2
//     makes sure none of them can come back to this iterator; a consumer
//     info request just before the Naks makes the server forget the
//     iterator's pull requests (see Config.Consumer).
//  4. Run returns consume's error.
//
// A Queue serves one Run.
package keyq
