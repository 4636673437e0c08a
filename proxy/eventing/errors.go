package eventing

import "errors"

// ErrUnservable reports an eventing set-up that retrying cannot fix (a
// consumer name too long for the server, an invalid Config).
var ErrUnservable = errors.New("eventing cannot be served")
