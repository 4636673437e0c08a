package proxy_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStreamedActionMalformedRequest sends a request that does not decode
// on each streaming action shape, leaving the request stream open: the call
// ends at once with INVALID_ARGUMENT (a bidi call used to hang until the
// client gave up, its function stream waiting for more input).
func TestStreamedActionMalformedRequest(t *testing.T) {
	h := startHarness(t, nil)
	for _, c := range []struct {
		method         string
		client, server bool
	}{
		{"Count", false, true},
		{"Sum", true, false},
		{"Chat", true, true},
	} {
		t.Run(c.method, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			s, err := h.conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: c.client, ServerStreams: c.server},
				"/test.Echo/"+c.method, grpc.ForceCodec(bytesCodec{}))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SendMsg([]byte{0xff}); err != nil {
				t.Fatal(err)
			}
			if err := s.RecvMsg(h.types.msg("Value")); status.Code(err) != codes.InvalidArgument {
				t.Fatalf("%s with a malformed request = %v, want INVALID_ARGUMENT", c.method, err)
			}
		})
	}
	// The action still serves streams afterwards.
	s, err := h.conn.NewStream(t.Context(), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/test.Echo/Chat")
	if err != nil {
		t.Fatal(err)
	}
	v := h.types.msg("Value")
	if err := s.SendMsg(v); err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(h.types.msg("Value")); err != nil {
		t.Fatalf("Chat after the malformed requests: %v", err)
	}
}
