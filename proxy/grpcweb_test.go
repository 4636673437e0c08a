package proxy_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// grpcWebResult is a gRPC-Web response split into its frames.
type grpcWebResult struct {
	code     int
	header   http.Header
	messages [][]byte
	trailers string // the trailer frame, lower-cased
}

// grpcWebCall sends one gRPC-Web request (binary, or base64 for the -text
// content type) and reads the whole answer.
func (h *harness) grpcWebCall(t *testing.T, path, contentType string, msg []byte) grpcWebResult {
	t.Helper()
	body := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg))), msg...)
	text := strings.HasPrefix(contentType, "application/grpc-web-text")
	if text {
		body = []byte(base64.StdEncoding.EncodeToString(body))
	}
	req, err := http.NewRequestWithContext(t.Context(), "POST", "http://"+h.p.Addr().String()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Grpc-Web", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: read body: %v", path, err)
	}
	if text && resp.StatusCode == 200 {
		// Each frame may be base64 on its own (padding between them).
		var dec []byte
		for len(b) > 0 {
			n := len(b)
			if i := bytes.IndexByte(b, '='); i >= 0 {
				n = i
				for n < len(b) && b[n] == '=' {
					n++
				}
			}
			d, err := base64.StdEncoding.DecodeString(string(b[:n]))
			if err != nil {
				t.Fatalf("%s: response is not base64: %v (%q)", path, err, b)
			}
			dec, b = append(dec, d...), b[n:]
		}
		b = dec
	}
	r := grpcWebResult{code: resp.StatusCode, header: resp.Header}
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if 5+n > len(b) {
			t.Fatalf("%s: truncated frame", path)
		}
		if b[0]&0x80 != 0 {
			r.trailers = strings.ToLower(string(b[5 : 5+n]))
		} else {
			r.messages = append(r.messages, b[5:5+n])
		}
		b = b[5+n:]
	}
	if len(b) != 0 {
		t.Fatalf("%s: %d bytes after the last frame", path, len(b))
	}
	return r
}

// status is the call's grpc-status, from the trailer frame or, for a
// trailers-only answer, the headers.
func (r grpcWebResult) status() string {
	for line := range strings.SplitSeq(r.trailers, "\r\n") {
		if v, ok := strings.CutPrefix(line, "grpc-status:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return r.header.Get("Grpc-Status")
}

// TestGRPCWeb: browsers' gRPC-Web (binary and base64 text) reaches actions
// and entities like gRPC, with the same status codes for bad input, and a
// reply's metadata as headers.
func TestGRPCWeb(t *testing.T) {
	h := startHarness(t, nil)
	value := func(n int64) []byte { return h.types.value(n).GetValue() }
	add, err := proto.Marshal(h.types.request("web", ptr(5)))
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range []string{"application/grpc-web+proto", "application/grpc-web-text+proto"} {
		t.Run(ct, func(t *testing.T) {
			r := h.grpcWebCall(t, "/test.Echo/Echo", ct, value(7))
			if r.code != 200 || r.status() != "0" || len(r.messages) != 1 || h.types.intField("Value", "n", r.messages[0]) != 7 {
				t.Fatalf("Echo = %d status %q, %d messages", r.code, r.status(), len(r.messages))
			}
			r = h.grpcWebCall(t, "/test.Counter/Add", ct, add)
			if r.code != 200 || r.status() != "0" || len(r.messages) != 1 || h.types.intField("Value", "n", r.messages[0]) == 0 {
				t.Fatalf("Counter/Add = %d status %q, %d messages", r.code, r.status(), len(r.messages))
			}
			r = h.grpcWebCall(t, "/test.Echo/Count", ct, value(2))
			if r.code != 200 || r.status() != "0" || len(r.messages) != 2 || r.header.Get("X-Reply") != "1" {
				t.Fatalf("Count = %d status %q, %d messages, X-Reply %q", r.code, r.status(), len(r.messages), r.header.Get("X-Reply"))
			}
			for _, c := range []struct {
				path   string
				msg    []byte
				status string
			}{
				{"/test.Echo/Nope", value(1), "12"},            // UNIMPLEMENTED
				{"/no.Such/Service", value(1), "12"},           // UNIMPLEMENTED
				{"/test.Echo/Echo", []byte{0xff, 0xff}, "3"},   // INVALID_ARGUMENT: malformed protobuf
				{"/test.Counter/Add", []byte{0x0a, 0x05}, "3"}, // INVALID_ARGUMENT: truncated
			} {
				r := h.grpcWebCall(t, c.path, ct, c.msg)
				if r.status() != c.status || len(r.messages) != 0 {
					t.Errorf("%s = %d status %q (%d messages), want status %s", c.path, r.code, r.status(), len(r.messages), c.status)
				}
			}
		})
	}

	// A text-mode body that is not base64 is INVALID_ARGUMENT.
	req, err := http.NewRequestWithContext(t.Context(), "POST", "http://"+h.p.Addr().String()+"/test.Echo/Echo", strings.NewReader("!!not base64!!"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc-web-text")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "3" || resp.Header.Get("Content-Type") != "application/grpc-web-text" {
		t.Fatalf("bad base64 = %d %v", resp.StatusCode, resp.Header)
	}
}
