package ingress

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nuid"
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
//
// Only user failures and refusals that describe the client's own request
// (malformed, invalid key, unknown method, busy, a message over the limit)
// keep their text. Every other failure (a crashed entity, the function
// unreachable, the store, routing, anything unexpected) has a text that
// may name addresses, subjects or the function's internals: its status
// has the code and a short message only, and the details are for the log
// (Server.fail logs them once, at the boundary, under a request id it adds
// to the message).
func Status(err error) *status.Status {
	st, _ := classify(err)
	return st
}

// classify is Status, and whether err's text is shown (public) or must
// be logged instead.
func classify(err error) (st *status.Status, public bool) {
	var uf *model.UserFailure
	var sh shown
	switch {
	case errors.As(err, &sh):
		return sh.st, true
	case errors.As(err, &uf):
		return status.New(codes.Unknown, uf.Description), true
	case errors.Is(err, model.ErrUnknownMethod):
		return status.New(codes.Unimplemented, err.Error()), true
	case errors.Is(err, model.ErrBadRequest), errors.Is(err, streams.ErrInvalidKey):
		return status.New(codes.InvalidArgument, err.Error()), true
	case errors.Is(err, entity.ErrEntityBusy):
		return status.New(codes.ResourceExhausted, err.Error()), true
	case errors.Is(err, streams.ErrTooLarge):
		return status.New(codes.ResourceExhausted, "the command's changes are larger than the store accepts"), false
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded"), false
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "cancelled"), false
	case errors.Is(err, entity.ErrWriteConsistency):
		// Applied here, not yet where asked: the reference proxy's words.
		return status.New(codes.Unavailable, entity.ErrWriteConsistency.Error()), false
	case errors.Is(err, entity.ErrStopping), errors.Is(err, entity.ErrEntityFailed),
		errors.Is(err, shard.ErrNoOwner), errors.Is(err, model.ErrForwardLoop):
		return status.New(codes.Unavailable, "unavailable, retry later"), false
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.InvalidArgument, codes.Unimplemented, codes.ResourceExhausted, codes.Canceled:
			// The transport's, about the client's call: a message over the
			// limit (naming it), a call the client ended.
			return s, true
		}
		return status.New(s.Code(), "internal error"), false
	}
	return status.New(codes.Internal, "internal error"), false
}

// shown is a status made for the client (by fail), passed on as it is.
type shown struct{ st *status.Status }

func (s shown) Error() string              { return s.st.Err().Error() }
func (s shown) GRPCStatus() *status.Status { return s.st }

// fail is the error a call of method that failed with err ends with: its
// Status, with a request id added to the message when err's own text is not
// shown, err being logged under that id. It is the boundary: errors are
// logged here, once.
func (ing *Server) fail(ctx context.Context, method string, err error) error {
	if errors.Is(err, streams.ErrTooLarge) {
		markTooLarge(ctx)
	}
	st, public := classify(err)
	if public {
		return shown{st}
	}
	id := nuid.Next()
	level := slog.LevelWarn
	switch st.Code() {
	case codes.Canceled:
		level = slog.LevelDebug // the client went away
	case codes.Internal, codes.Unknown:
		level = slog.LevelError
	}
	ing.cfg.Log.LogAttrs(ctx, level, "call failed", slog.String("request", id), slog.String("method", method),
		slog.String("code", st.Code().String()), slog.String("error", err.Error()))
	return shown{status.Newf(st.Code(), "%s (request %s)", st.Message(), id)}
}
