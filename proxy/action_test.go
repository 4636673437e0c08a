package proxy_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
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

// TestStreamReplyMetadataHeaders: the metadata of a server stream's first
// reply reaches the client as response headers, over gRPC and over
// HTTP/JSON (binary values in base64 there); later replies' metadata
// cannot (the headers are gone) and reserved headers are not overwritten.
func TestStreamReplyMetadataHeaders(t *testing.T) {
	h := startHarness(t, nil)
	s, err := h.conn.NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, "/test.Echo/Count")
	if err != nil {
		t.Fatal(err)
	}
	req := h.types.msg("Value")
	req.Set(req.Descriptor().Fields().ByName("n"), protoreflect.ValueOfInt64(3))
	if err := s.SendMsg(req); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if err := s.RecvMsg(h.types.msg("Value")); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
	hdr, err := s.Header()
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 || !slices.Equal(hdr.Get("x-reply"), []string{"1"}) || !slices.Equal(hdr.Get("x-reply-bin"), []string{"\x00\x01"}) {
		t.Fatalf("gRPC: %d replies, headers %v; want 3 and x-reply [1], x-reply-bin [\\x00\\x01]", n, hdr)
	}

	for _, accept := range []string{"", "text/event-stream"} {
		resp := h.httpOpen(t, t.Context(), "POST", "/test.Echo/Count", accept, `{"n":2}`)
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Header.Values("X-Reply"); resp.StatusCode != 200 || !slices.Equal(got, []string{"1"}) {
			t.Errorf("HTTP (accept %q): %d, X-Reply %q; want 200 and [1]", accept, resp.StatusCode, got)
		}
		if got := resp.Header.Get("X-Reply-Bin"); got != base64.RawStdEncoding.EncodeToString([]byte{0, 1}) {
			t.Errorf("HTTP (accept %q): X-Reply-Bin %q", accept, got)
		}
		if ct := resp.Header.Get("Content-Type"); ct == "text/evil" {
			t.Errorf("HTTP (accept %q): reply metadata replaced the Content-Type", accept)
		}
	}
}
