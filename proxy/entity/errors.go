package entity

import "errors"

var (
	// ErrEntityBusy reports a command refused because the entity's queue is
	// full (Config.QueueSize commands are already waiting).
	ErrEntityBusy = errors.New("entity busy: too many queued commands")
	// ErrEntityFailed reports that the entity crashed (the user function
	// broke the protocol, its stream ended, or its state could not be
	// stored) while the command was queued or running. The next command
	// re-activates the entity from its stored state. A command whose
	// writes the store refused for their size also matches
	// streams.ErrTooLarge (no retry can succeed).
	ErrEntityFailed = errors.New("unexpected entity failure")
	// ErrStopping reports a command that arrived while the sidecar shuts down.
	ErrStopping = errors.New("sidecar is stopping")
	// ErrMoved reports a command that reached a sidecar not (or no longer)
	// serving the entity's shard, or whose write was fenced off: it did not
	// change the entity, and the router tries again at the shard's owner.
	ErrMoved = errors.New("shard not served here")
	// ErrTooManyActive reports a command for an entity that is not active,
	// refused because the sidecar's Limit is reached and every active
	// entity is busy. Nothing ran; the command may be retried. It matches
	// ErrEntityBusy (what clients see: RESOURCE_EXHAUSTED).
	ErrTooManyActive error = busyError("too many active entities, none idle to passivate")
)

// busyError is an error that is a kind of ErrEntityBusy.
type busyError string

func (e busyError) Error() string      { return string(e) }
func (busyError) Is(target error) bool { return target == ErrEntityBusy }
