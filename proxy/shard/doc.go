// Package shard assigns the entities of a service to its sidecars and
// carries commands to them. Entities hash to a fixed number of shards
// (streams.Ownership); each shard has at most one serving sidecar at a
// time. Every sidecar heartbeats its membership (a KV key with a TTL) and
// computes the same sticky assignment from the live members (assign);
// taking a shard is a fenced write in the shard table, serving it needs a
// live lease, and a handoff stops serving (refusing new commands,
// passivating the shard's entities through Local) before the new owner is
// written.
//
// Route runs a command where its shard is served: through Local when this
// sidecar serves it, else as a request on the shard's route subject
// (protocol jetstate.route) to the owner, retried while the shard moves
// (entity.ErrMoved) until Config.RouteTimeout (ErrNoOwner). Ownership is
// for locality only: every write is fenced by the store's CAS, and Check is
// the entity runtimes' last look before writing.
package shard
