package controller

import (
	"errors"
	"fmt"
)

// errSecretMissing: a secret a StatefulStore names does not exist.
var errSecretMissing = errors.New("not found")

// reasonError is an error with the Ready condition's reason it surfaces as.
type reasonError struct {
	Reason string
	Err    error
}

func (e *reasonError) Error() string { return e.Err.Error() }
func (e *reasonError) Unwrap() error { return e.Err }

// withReason wraps err (nil stays nil) so that reasonOf finds reason.
func withReason(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &reasonError{Reason: reason, Err: err}
}

// reasonf is withReason over a formatted error.
func reasonf(reason, format string, args ...any) error {
	return &reasonError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// reasonOf is the condition reason carried by err, or def.
func reasonOf(err error, def string) string {
	if re, ok := errors.AsType[*reasonError](err); ok {
		return re.Reason
	}
	return def
}
