package proxy

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jetstate/jetstate/streams"
)

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

// grpcStatus maps an error of a call to the status the client gets: user
// failures are UNKNOWN with their description, as in the reference proxy.
// HTTP/JSON clients get the HTTP status vanguard derives from it (UNKNOWN
// 500, INVALID_ARGUMENT 400, UNIMPLEMENTED 404 or 501, UNAVAILABLE 503).
func grpcStatus(err error) *status.Status {
	var uf *UserFailure
	switch {
	case errors.As(err, &uf):
		return status.New(codes.Unknown, uf.Description)
	case errors.Is(err, ErrUnknownMethod):
		return status.New(codes.Unimplemented, err.Error())
	case errors.Is(err, ErrBadRequest), errors.Is(err, ErrInvalidEntityKey), errors.Is(err, streams.ErrInvalidKey):
		return status.New(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrEntityBusy), errors.Is(err, streams.ErrTooLarge):
		return status.New(codes.ResourceExhausted, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, err.Error())
	case errors.Is(err, ErrStopping), errors.Is(err, ErrEntityFailed):
		return status.New(codes.Unavailable, err.Error())
	}
	if s, ok := status.FromError(err); ok {
		return s
	}
	return status.New(codes.Internal, err.Error())
}
