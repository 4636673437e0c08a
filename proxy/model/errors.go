package model

import (
	"errors"
	"strings"
)

// The errors a call can end with that belong to no single part of the
// sidecar: the request, the model and the user function's own answers.
// Entity runtimes (entity.ErrEntityBusy, ...) and routing (shard.ErrNoOwner)
// have their own; an invalid entity key is streams.ErrInvalidKey.
var (
	// ErrUnknownMethod reports a call to a service or method the user
	// function did not declare.
	ErrUnknownMethod = errors.New("unknown service or method")
	// ErrBadRequest reports a request that does not decode.
	ErrBadRequest = errors.New("malformed request")
	// ErrForwardLoop reports forwards and side effects nested too deeply.
	ErrForwardLoop = errors.New("forwards or side effects nested too deeply")
)

// UserFailure is a failure the user function returned for a command
// (ClientAction.failure): the client sees its description.
type UserFailure struct{ Description string }

func (f *UserFailure) Error() string { return f.Description }

// ValidationError is a discovery answer the sidecar cannot serve. It is
// reported to the user function (reportError) and discovery is not retried.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string {
	return "invalid entity spec: " + strings.Join(e.Problems, "; ")
}
