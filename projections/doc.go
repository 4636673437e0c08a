// Package projections turns a service's event journals into CloudEvents
// 1.0 for read models and other consumers (CQRS): a Projection is a
// durable JetStream consumer over the service's journal stream (every
// entity type, or those in Config.Types) that hands each event to a Sink.
// Sinks for NATS (NATSSink) and HTTP (HTTPSink, Knative-compatible) are
// included.
//
// Each event becomes one CloudEvent:
//
//	id              <journal stream>:<stream seq>:<index in the message>
//	source          Config.Source + "/" + entity type (default /jetstate/<service>/<type>)
//	type            the event's message name (its type URL after the last '/')
//	subject         the entity key
//	time            when the command's events were appended
//	jetstateseq     the event's per-entity sequence number (a decimal string)
//	datacontenttype application/protobuf (the event's bytes), or
//	                application/json with a Config.Resolver that knows the type;
//	                CloudState's json.cloudstate.io and p.cloudstate.io string
//	                and bytes payloads are unwrapped (JSON, text, bytes)
//
// The contract:
//   - At least once. A journal message is acknowledged only after the sink
//     accepted all its events (or they were dead-lettered), so a crash
//     loses nothing; an event may arrive more than once, always with the
//     same id. Consumers dedupe by id, or keep the highest jetstateseq per
//     subject. A generation's consumer acknowledges cumulatively (AckPolicy
//     all): once the deliveries received so far are settled up to some
//     point, one acknowledgement covers them all (sent after 128 more, or
//     when nothing received is left unsettled), and a message settled
//     behind one still being sent waits, kept alive, for it.
//     Config.AckEach makes consumers that acknowledge every message on its
//     own instead. Events a NATS sink publishes without waiting are
//     confirmed by a flush of its connection before the acknowledgement.
//     A delivery that never arrived (the consumer sequence jumps) or a
//     sink connection that reconnected with events in flight makes the
//     projector start over from the ack floor, so nothing lost on the way
//     is covered by an acknowledgement, and the sink publishes nothing on
//     the new connection before that.
//   - Per-entity order. An entity's events reach the sink one at a time in
//     journal order; different entities are sent in parallel (Workers), so
//     a slow or failing entity holds up only itself, until MaxAckPending
//     messages wait for it (with cumulative acknowledgements, every
//     message delivered after it counts). At start a projector
//     hands messages that a previous run left unacknowledged back to the
//     consumer (consumer reset to its ack floor), so they are delivered
//     again before newer ones and order holds across crashes. One
//     projector per projection delivers at a time. What a projector holds
//     is marked in progress every third of AckWait, so a long retry does
//     not let the server redeliver it; a projector that stops finishes
//     nothing new, drains its pulls and hands back (Nak, in stream order)
//     what it holds.
//   - Retries. A failed send is retried with exponential back-off and
//     jitter (RetryMin..RetryMax) up to MaxTries; an error wrapping
//     ErrRejected is not retried. Then the event goes to the dead-letter
//     subject with the reason in the Jetstate-Dead-Letter-Reason header,
//     and the entity's next events flow on. Events that cannot be
//     converted (ErrBadEvent) go there at once. A dead letter's
//     Nats-Msg-Id is "dead:<consumer>:<event id>", so a stream on the
//     dead-letter subject keeps one per event.
//   - Position. A new projection starts at the beginning, at "now" or at a
//     time (Config.Start); afterwards it resumes where it stopped.
//   - Generations. The consumer of generation n is "<Name>-g<n>". Rebuild
//     replays everything into a new generation (with its own sink) while
//     the active one keeps serving; once it has caught up it becomes
//     active, the older consumers are deleted and their Run returns
//     ErrSuperseded. Reset instead starts over in place: a new generation
//     from the beginning is active at once and a running Run carries on
//     with it into the same sink. Pause, Resume, Reset, Delete, Status and
//     List act on the server's consumers, so they work from any process
//     and survive restarts.
//   - Metrics (Config.Registry): jetstate_projection_pending_messages (lag,
//     the consumer's num_pending), _ack_pending_messages, _paused,
//     _generation, _events_delivered_total, _send_failures_total,
//     _events_dead_lettered_total{cause} and _delivery_lag_seconds (append
//     to acceptance).
//
// Binary content mode maps attributes to ce-* headers whose values are
// percent-encoded (HTTP binding 3.1.3.2); EventFromNATS reads both modes
// back. projections imports streams, never proxy or the sdk.
package projections
