// Package streams turns NATS JetStream into jetstate's datastore: per-entity
// event journals, snapshots and value-entity state, and the provisioning of
// the streams and buckets a service needs.
//
// Layout, for a service S under prefix P (default "jetstate"):
//
//	stream P_S_journal     subjects P.S.<type>.<key>, one subject per entity
//	bucket P_S_snapshots   key <type>.<key>, the latest snapshot of an entity
//	bucket P_S_values      key <type>.<key>, the state of a value entity
//
// Entity types and keys are escaped by EncodeToken, so any key up to
// MaxKeyLen bytes works, including dots, spaces, wildcards and "".
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
//
// Everything here talks to a real server; streams knows nothing of gRPC,
// CloudState or ownership.
package streams
