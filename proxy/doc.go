// Package proxy is the jetstate sidecar: it speaks the CloudState
// user-function protocol (0.2) to a user function over gRPC, serves the
// function's services to clients, and runs its entities with JetStream as
// the store (package streams).
//
// Start-up: Discover asks the function for its entities (retrying while it
// is not up), BuildModel validates the answer; only then is the ingress
// port bound and the sidecar ready.
//
// Entities: every event-sourced or value entity that receives a command
// gets one bidirectional stream to the function, opened with init (and the
// journal's events after the latest snapshot), one command in flight at a
// time, a bounded queue, and passivation after an idle timeout. A reply's
// events (or new value) are stored, fenced by the journal's CAS, before the
// client is answered; side effects then run in order, and forwards are
// followed. A protocol error, a timeout or a failed write crashes the
// entity: its commands fail and the next one re-activates it from storage.
//
// Eventing: methods with (cloudstate.eventing).in consume an event-sourced
// entity type's journal (event_log) or a topic through a durable JetStream
// consumer per (service, consumer group, source) shared by the service's
// sidecars, at least once, with CloudEvent metadata; replies of methods with
// out.topic are published to the topic as CloudEvents. See ARCHITECTURE.md.
//
// Load: from joining until draining, the sidecar publishes every second
// on <prefix>_load.<service> the time-weighted concurrency of its unary
// requests, of commands in the user function and of store operations
// (load.go, protocol jetstate.load), for the operator's autoscaler.
//
// The proxy never imports the sdk; it knows the function only through the
// protocol.
package proxy
