// Package entity runs the sidecar's stateful entities: one Runtime per
// user service of an entity kind (event-sourced, value; the CRDT runtime
// joins them), each keeping at most one active instance per entity key.
//
// An active entity is one bidirectional stream to the user function,
// opened with init and the entity's stored state (for event-sourced
// entities the latest snapshot and the journal after it), and a small
// struct; a goroutine runs it only while it has commands. Commands for it
// are queued (bounded, ErrEntityBusy beyond) and sent one at a time; a
// reply's state change is stored, fenced by the store's CAS and checked by
// the Guard just before, and only then is the command answered.
// A protocol error, a command timeout or a failed write crashes the entity:
// its command and those queued fail with ErrEntityFailed and the next one
// re-activates it from storage. A command that could not be sent because
// the entity's stream had already ended (the function restarted while the
// entity was idle) never reached the function: the entity is re-activated
// at once and the command sent once more on the new stream; a command that
// was sent is never sent again. A write fenced off (another sidecar wrote
// the entity, or the Guard refused) fails with ErrMoved: the command did not
// change anything and runs again at the shard's owner. Idle entities are
// passivated; a Limit shared by the runtimes bounds the active entities,
// passivating the least recently used idle one to make room (or refusing
// with ErrTooManyActive when none is idle); PassivateShard passivates a
// shard's entities for a handoff; Shutdown stops them all.
//
// The package consumes two small interfaces, Guard (sharding: where an
// entity may run and be written) and Load (the autoscaler's signals), and
// knows nothing of ingress protocols, routing or eventing.
package entity
