package console

import (
	"errors"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
)

var (
	// ErrBadInput reports a request whose parameters cannot name anything:
	// a missing entity key, an unknown operation.
	ErrBadInput = errors.New("bad input")

	// ErrUnknownService reports a service that is not provisioned under the
	// console's prefix.
	ErrUnknownService = errors.New("no such service")

	// ErrUnknownType reports an entity type that the service's function
	// did not declare (known only when its discovery answer is stored).
	ErrUnknownType = errors.New("no such entity type")

	// ErrNoPage reports a path that names no page.
	ErrNoPage = errors.New("no such page: the console's pages start at /")

	// ErrReadOnly reports a change asked of a console started without
	// Config.AllowWrites.
	ErrReadOnly = errors.New("the console is read-only: start it with -allow-writes to pause, resume or rebuild projections")
)

// httpStatus is the one mapping of the console's errors to HTTP statuses.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, ErrBadInput), errors.Is(err, streams.ErrInvalidKey), errors.Is(err, streams.ErrInvalidName):
		return http.StatusBadRequest
	case errors.Is(err, ErrReadOnly):
		return http.StatusForbidden
	case errors.Is(err, ErrNoPage), errors.Is(err, ErrUnknownService), errors.Is(err, ErrUnknownType), errors.Is(err, projections.ErrNoProjection),
		errors.Is(err, streams.ErrStreamNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		return http.StatusNotFound
	}
	return http.StatusBadGateway // NATS failed us
}
