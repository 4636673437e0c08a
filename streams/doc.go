// Package streams turns NATS JetStream into jetstate's datastore: per-entity
// event journals, snapshots, value-entity state and the replicated state of
// CRDT entities, and the provisioning of the streams and buckets a service
// needs.
//
// Layout, for a service S under prefix P (default "jetstate"):
//
//	stream P_S_journal     subjects P.S.<type>.<key>, one subject per entity
//	bucket P_S_snapshots   key <type>.<key>, the latest snapshot of an entity
//	bucket P_S_values      key <type>.<key>, the state of a value entity
//	stream P_S_crdt        subjects P_crdt.S.<type>.<key>.<replica>, one
//	                       message per subject: the replica's latest state of
//	                       a CRDT entity; replica "=" (the empty id) is the
//	                       entity's tombstone
//	subject P_crdtsync.S   core NATS, in no stream: CRDT write-consistency
//	                       confirmations (CRDTs.Confirm and Answer)
//
// Entity types and keys (and CRDT replica ids) are escaped by EncodeToken,
// so any key up to MaxKeyLen bytes works, including dots, spaces, wildcards
// and "".
//
// The contract callers rely on:
//   - Journal.Append commits all events of one command in one message
//     (atomic), fenced by Nats-Expected-Last-Subject-Sequence: it succeeds
//     only if nobody appended since the caller's Version, otherwise it
//     returns ErrConflict and writes nothing. Two writers can never fork an
//     entity's history, whoever believes it owns the entity.
//   - Per-entity event sequence numbers are dense from 1.
//   - Journal.Read and Journal.Head are linearizable: they see every
//     append acknowledged before they were called.
//   - Values.Put and Values.Delete are fenced by the entity's revision in
//     the same way; Values.Get is linearizable.
//   - Snapshots are derived data: reads may be stale, which only costs a
//     longer replay.
//   - CRDTs.Publish replaces the replica's previous state of the entity (the
//     stream keeps one message per subject: storage does not grow with
//     updates); states are opaque and merged by the caller. CRDTs.Load is
//     linearizable and returns a sequence after which CRDTs.Follow misses
//     nothing; CRDTs.FollowAll follows every entity of the service from the
//     stream's last sequence when called, so a Load made after it started
//     misses nothing either; a tombstone, once written, makes the entity
//     deleted for good.
//
// Everything here talks to a real server; streams knows nothing of gRPC,
// CloudState or ownership.
package streams
