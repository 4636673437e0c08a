// Package crdt holds the sidecar's side of CloudState CRDT entities: the
// replicated CRDT state of one entity, as a pure data structure (no NATS,
// no gRPC). The CRDT entity runtime (proxy/entity) owns one State per active
// entity; replication between sidecar replicas (through JetStream) ships
// whole states, encoded with Marshal, and merges them.
//
// # Who calls what
//
//   - The first delta of an entity: New(delta) makes the empty State of its
//     type, then Apply.
//   - A state_action.update from the user function: State.Apply(env,
//     delta), env.Replica being this sidecar's replica id (and
//     env.NowMillis the wall clock, for LWWRegister). Apply validates as
//     the reference proxy does: a delta of another type is ErrWrongType (so
//     is an ORMap entry delta of another type than the entry's value); a
//     flag cannot be switched off (ErrInvalidDelta); ORMap updates of absent
//     keys are ignored. GCounter cannot decrement (its increment is uint64).
//   - A state from another replica: State.Merge(Unmarshal(bytes)). Merge is
//     commutative, associative and idempotent, so redelivered, reordered or
//     duplicated states are harmless.
//   - What the user function sees: State.Value(env) is the full value
//     (CrdtInit.delta); Diff(oldValue, newValue) is the delta to send it
//     after merges changed the state (nil if nothing changed). ApplyValue is
//     the user function's side of a delta; ApplyValue(old, Diff(old, new))
//     equals new.
//   - Vote counts only the replicas in env.Live (the membership, given by
//     the caller): a replica that left has no vote.
//
// # Bounded state
//
// ORSet and ORMap keys are optimized add-wins OR-sets (Bieniusa et al.
// 2012): each live element carries at most one dot (replica, counter) per
// replica that added it, and the state has one causal context, a version
// vector: one counter per replica ever seen. A remove keeps no tombstone:
// the context remembers the dots, so merging an older state that still has
// the element does not bring it back, while an add the remover had not seen
// (a concurrent add) wins. State size is thus the live elements plus one
// counter per replica, whatever the history of adds and removes. GCounter,
// PNCounter and Vote also hold one entry per replica.
//
// Entries of departed replicas are never dropped yet. They could be pruned
// later as Akka Distributed Data does: once every live replica has merged
// a state in which the departed replica's counts are folded into a
// surviving replica's entry (counters) or its dots are known to all
// (contexts), a pruning marker, itself replicated, lets each replica drop
// the entry; the marker must outlive any state that could still carry the
// entry, so it needs the membership's agreement.
//
// ORMap merges values per key, also for keys that are no longer live, to
// keep Merge a lattice join: a re-added key's value starts from what any
// replica still held for it (as in Akka's ORMap). The replica that removes
// a key drops its value, but a merge with a state that had not seen the
// remove brings the value back (unseen: the key stays removed), so an ORMap
// may carry one value per key ever removed concurrently with a replica that
// still held it; add/remove cycles of one key do not make it grow. Pruning
// those values needs the same agreement as pruning departed replicas.
//
// # Encoding
//
// Marshal/Unmarshal encode a state as the protobuf message
// jetstate.crdtstate.State (protocol/jetstate/crdtstate/state.proto), with
// repeated fields in sorted order: equal states encode to equal bytes.
// Unmarshal treats its input as outside input (ErrCorrupt, bounded nesting).
//
// A State is not safe for concurrent use; its owner serializes access.
package crdt
