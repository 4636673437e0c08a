// Package proxy is the jetstate sidecar: it speaks the CloudState
// user-function protocol (0.2) to a user function over gRPC, serves the
// function's services to clients, and runs its entities with JetStream as
// the store (package streams). It is the composition root of its parts and
// holds the command router:
//
//   - model: discovery and the service/method model (Discover, BuildModel);
//   - ingress: gRPC, HTTP/JSON, gRPC-Web, reflection, health, admin, and the
//     one error-to-status mapping; it calls the router (ingress.Caller);
//   - shard: membership, shard assignment and handoff, routing commands to
//     the shard's owner over NATS; it runs local commands through the
//     runtimes (shard.Local);
//   - entity: the entity runtimes (event-sourced, value), fenced by the
//     shard's Guard and measured by a Load;
//   - eventing: event-log and topic consumers and out-topic publishing; it
//     calls the router (eventing.Caller);
//   - load: the autoscaler's load signals and reports.
//
// Start-up: Discover asks the function for its entities (retrying while it
// is not up), BuildModel validates the answer; only then is the ingress
// port bound and the sidecar ready.
//
// The router (router.go, action.go) decodes a call, sends an entity command
// where its shard is served (shard.Route) or calls an action, then runs the
// reply's side effects in order and follows forwards. calls.go holds the
// three adapters through which the parts call back into it; no part reaches
// into another's fields.
//
// Stop: the ingress drains (DrainTimeout), eventing hands back what it has
// not finished, the shards are handed to the other sidecars, the entities
// closed. See ARCHITECTURE.md.
//
// The proxy never imports the sdk; it knows the function only through the
// protocol.
package proxy
