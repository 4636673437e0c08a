package crdt

import (
	"errors"
	"fmt"
)

var (
	// ErrWrongType: a delta or a state of another CRDT type than the state's.
	ErrWrongType = errors.New("crdt: wrong CRDT type")
	// ErrInvalidDelta: a delta the CRDT cannot take (a flag switched off, an
	// empty delta, an entry without a key).
	ErrInvalidDelta = errors.New("crdt: invalid delta")
	// ErrCorrupt: stored bytes that do not decode to a state.
	ErrCorrupt = errors.New("crdt: corrupt state encoding")
)

var errFlagOff = fmt.Errorf("apply Flag: %w: cannot switch a flag off", ErrInvalidDelta)
