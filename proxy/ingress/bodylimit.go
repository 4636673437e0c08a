package ingress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Request size, over HTTP. Native gRPC refuses a message over
// MaxRequestSize by its length prefix (grpc.MaxRecvMsgSize); HTTP bodies
// are refused here, before the transcoder buffers them: by Content-Length
// when it is declared, else by a capped reader. Either way nothing over the
// limit is held in memory, and the function never sees it.

// envelopeSize is the prefix of each message in the enveloped protocols
// (gRPC-Web, Connect streaming): flags and length.
const envelopeSize = 5

// limitBody refuses r if its declared length is over the limit (413 with
// the limit, or RESOURCE_EXHAUSTED in gRPC-Web's own form) and reports
// whether it answered; a body of unknown length is capped instead, and
// reading past the limit fails the call as RESOURCE_EXHAUSTED, which
// e turns into 413.
func (ing *Server) limitBody(w http.ResponseWriter, r *http.Request, e *errorBody) bool {
	ct := r.Header.Get("Content-Type")
	limit := int64(ing.cfg.MaxRequestSize)
	if strings.HasPrefix(ct, "application/grpc-web") || strings.HasPrefix(ct, "application/connect+") {
		if m := ing.cfg.Model.Methods[r.URL.Path]; m != nil && m.Desc.IsStreamingClient() {
			return false // many messages, each bounded by the gRPC server
		}
		limit += envelopeSize
	}
	msg := fmt.Sprintf("request larger than the limit of %d bytes", ing.cfg.MaxRequestSize)
	switch {
	case r.ContentLength > limit:
		if strings.HasPrefix(ct, "application/grpc-web") {
			grpcErrorAs(w, ct, status.New(codes.ResourceExhausted, msg))
			return true
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = io.WriteString(w, msg)
		return true
	case r.ContentLength < 0:
		// Without w: the transcoder reads the body on goroutines of its
		// own, which must not touch the response's headers (MaxBytesReader
		// would set Connection: close there). net/http closes a connection
		// whose body was left unread anyway.
		r.Body = &cappedBody{ReadCloser: http.MaxBytesReader(nil, r.Body, limit), e: e, msg: msg}
	}
	return false
}

// cappedBody is a body of unknown length read through http.MaxBytesReader:
// past the limit it fails with a RESOURCE_EXHAUSTED the transcoder passes
// on in the client's protocol, and marks e.
type cappedBody struct {
	io.ReadCloser
	e   *errorBody
	msg string
}

func (c *cappedBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		c.e.tooLarge.Store(true)
		err = connect.NewError(connect.CodeResourceExhausted, errors.New(c.msg))
	}
	return n, err
}

// markTooLarge records that a transcoded call failed for a size limit, so
// that its HTTP answer is 413.
func markTooLarge(ctx context.Context) {
	if e, ok := ctx.Value(responseKey{}).(*errorBody); ok {
		e.tooLarge.Store(true)
	}
}
