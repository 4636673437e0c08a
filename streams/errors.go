package streams

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrInvalidKey reports an entity key or type that cannot be stored:
	// longer than MaxKeyLen (MaxTypeLen for types), or a type that is empty.
	ErrInvalidKey = errors.New("invalid entity key")

	// ErrInvalidName reports a service name or subject prefix that is not a
	// plain token of letters, digits, '-' and '_'.
	ErrInvalidName = errors.New("invalid name")

	// ErrConflict reports that the entity's journal (or a value's revision)
	// moved on since the caller read it: another writer appended first. The
	// caller must reload the entity before trying again. The error is a
	// *ConflictError carrying the current position.
	ErrConflict = errors.New("conflict: entity was written concurrently")

	// ErrTooLarge reports a command's events (or a value or snapshot) that
	// exceed the largest message the server or the stream accepts.
	ErrTooLarge = errors.New("message too large")

	// ErrStreamNotFound reports that the stream or bucket a service needs
	// does not exist: the service was not provisioned.
	ErrStreamNotFound = errors.New("stream not found (service not provisioned?)")

	// ErrNoJetStream reports a NATS server that does not have JetStream
	// enabled for this account.
	ErrNoJetStream = errors.New("JetStream is not enabled on this server")

	// ErrUnsupportedServer reports a server whose JetStream API level is
	// below MinAPILevel.
	ErrUnsupportedServer = errors.New("NATS server too old")

	// ErrCorrupt reports a stored record that does not decode: the journal
	// or bucket holds data jetstate did not write.
	ErrCorrupt = errors.New("corrupt record")
)

// ConflictError is the error Append returns when the expected position does
// not match the entity's journal. It matches ErrConflict with errors.Is.
type ConflictError struct {
	// Subject is the entity's journal subject.
	Subject string
	// Expected is the stream sequence the caller expected to be last.
	Expected uint64
	// Actual is the stream sequence that is really last on the subject, as
	// reported by the server (0 when the server did not say).
	Actual uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("append %s: expected last stream sequence %d, found %d: %v",
		e.Subject, e.Expected, e.Actual, ErrConflict)
}

// Is makes errors.Is(err, ErrConflict) true for a *ConflictError.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// TooLarge reports whether err is a refusal for size, which no retry can
// overcome: ErrTooLarge, the server's max payload (nats.ErrMaxPayload,
// refused by the client before sending) or a stream's max message size
// (JetStream error 10054).
func TooLarge(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, ErrTooLarge) || errors.Is(err, nats.ErrMaxPayload) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum
}

// ConfirmError is the error of a CRDTs.Confirm whose context ended before
// every replica it waited for answered. It unwraps to the context's error.
type ConfirmError struct {
	// Entity and Seq are what Confirm asked about.
	Entity Entity
	Seq    uint64
	// Missing are the replicas that did not answer, sorted.
	Missing []string
	// Err is the context's error.
	Err error
}

func (e *ConfirmError) Error() string {
	return fmt.Sprintf("confirm crdt %s at %d: no answer from %s: %v", e.Entity, e.Seq, strings.Join(e.Missing, ", "), e.Err)
}

// Unwrap returns the context's error.
func (e *ConfirmError) Unwrap() error { return e.Err }
