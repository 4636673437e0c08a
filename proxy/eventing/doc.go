// Package eventing runs CloudState eventing (spec 2.9) on JetStream:
// methods with (cloudstate.eventing).in consume an event-sourced entity
// type's journal (event_log) or a topic through one durable consumer per
// (service, consumer group, source), shared by the service's sidecars;
// replies of methods with out.topic are published to the topic as
// CloudEvents (Publisher, for client calls too).
//
// Delivery is at least once: messages are queued per ordering key (an
// entity's journal subject, a topic message's CloudEvent subject) and N
// workers hand one key's events to the function in order through a Caller
// (the command router, package proxy), with CloudEvent metadata. A failed
// call is retried with back-off; after MaxTries, or at once for an event
// that cannot become a command, the event goes to the service's dead-letter
// subject and the consumer moves on. By default one sidecar at a time
// consumes each subscription (a pinned priority group), so an entity's
// events keep their order across replicas; Config.Shared spreads them.
//
// Names of the JetStream resources are in names.go. The package knows the
// model and the store, not the ingress or the entity runtimes.
package eventing
