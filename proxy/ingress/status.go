package ingress

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jetstate/jetstate/proxy/entity"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/proxy/shard"
	"github.com/jetstate/jetstate/streams"
)

// Status maps an error of a call to the status the client gets; it is the
// one mapping of the sidecar's errors. User failures are UNKNOWN with their
// description, as in the reference proxy. HTTP/JSON clients get the HTTP
// status vanguard derives from it (UNKNOWN 500, INVALID_ARGUMENT 400,
// UNIMPLEMENTED 404 or 501, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503), except
// that a size refusal (streams.ErrTooLarge) is 413 (markTooLarge).
// UNAVAILABLE means retrying may succeed: the sidecar is stopping, the
// entity crashed, no sidecar serves its shard yet, or the forwards loop
// (which a function fixed and restarted may not).
func Status(err error) *status.Status {
	var uf *model.UserFailure
	switch {
	case errors.As(err, &uf):
		return status.New(codes.Unknown, uf.Description)
	case errors.Is(err, model.ErrUnknownMethod):
		return status.New(codes.Unimplemented, err.Error())
	case errors.Is(err, model.ErrBadRequest), errors.Is(err, streams.ErrInvalidKey):
		return status.New(codes.InvalidArgument, err.Error())
	case errors.Is(err, entity.ErrEntityBusy), errors.Is(err, streams.ErrTooLarge):
		return status.New(codes.ResourceExhausted, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, err.Error())
	case errors.Is(err, entity.ErrStopping), errors.Is(err, entity.ErrEntityFailed),
		errors.Is(err, shard.ErrNoOwner), errors.Is(err, model.ErrForwardLoop):
		return status.New(codes.Unavailable, err.Error())
	}
	if s, ok := status.FromError(err); ok {
		return s
	}
	return status.New(codes.Internal, err.Error())
}
