package ingress

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// grpcWebText serves gRPC-Web's text mode (content type
// application/grpc-web-text, the default mode of the grpc-web JavaScript
// client, which browsers need for server streams over XHR), which vanguard
// does not speak: the base64 request body is decoded and the call is
// passed on as binary gRPC-Web; the answer is base64-encoded back, padded
// at every flush (each streamed reply, and the end), so a reply is never
// held back waiting for the bytes that would complete a base64 group.
// Written here because vanguard has no text mode and the gRPC-Web
// wrappers that do (improbable-eng/grpc-web) would replace vanguard's
// handling of the binary mode too. maxBody bounds the decoded request.
func grpcWebText(next http.Handler, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sub, ok := strings.CutPrefix(r.Header.Get("Content-Type"), "application/grpc-web-text")
		if !ok || (sub != "" && sub[0] != '+' && sub[0] != ';') {
			next.ServeHTTP(w, r)
			return
		}
		body, err := decodeBase64Chunks(io.LimitReader(r.Body, 2*maxBody+1024))
		if err != nil {
			w.Header().Set("Content-Type", "application/grpc-web-text"+sub)
			w.Header().Set("Grpc-Status", "3") // INVALID_ARGUMENT
			w.Header().Set("Grpc-Message", "grpc-web-text: the request body is not base64")
			w.WriteHeader(http.StatusOK)
			return
		}
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(strings.NewReader(string(body)))
		r2.ContentLength = int64(len(body))
		r2.Header.Set("Content-Type", "application/grpc-web"+sub)
		r2.Header.Del("Content-Length")
		tw := &textWriter{ResponseWriter: w}
		defer tw.finish()
		next.ServeHTTP(tw, r2)
	})
}

// decodeBase64Chunks decodes a body that may be several base64 strings one
// after the other, each padded (what streaming encoders send).
func decodeBase64Chunks(r io.Reader) ([]byte, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	text := strings.TrimSpace(string(raw))
	var out []byte
	for text != "" {
		n := len(text)
		if i := strings.IndexByte(text, '='); i >= 0 {
			n = i
			for n < len(text) && text[n] == '=' {
				n++
			}
		}
		b, err := base64.StdEncoding.DecodeString(text[:n])
		if err != nil {
			return nil, fmt.Errorf("base64: %w", err)
		}
		out, text = append(out, b...), text[n:]
	}
	return out, nil
}

// textWriter base64-encodes a gRPC-Web answer: whole groups of three
// bytes as they come, the rest (padded) at a flush or the end.
type textWriter struct {
	http.ResponseWriter
	mu      sync.Mutex
	pending []byte
	wrote   bool
	err     error
}

func (t *textWriter) WriteHeader(code int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.writeHeader(code)
}

func (t *textWriter) writeHeader(code int) {
	if t.wrote {
		return
	}
	t.wrote = true
	h := t.ResponseWriter.Header()
	if sub, ok := strings.CutPrefix(h.Get("Content-Type"), "application/grpc-web"); ok {
		h.Set("Content-Type", "application/grpc-web-text"+sub)
	}
	h.Del("Content-Length")
	t.ResponseWriter.WriteHeader(code)
}

func (t *textWriter) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.writeHeader(http.StatusOK)
	t.pending = append(t.pending, b...)
	if whole := len(t.pending) / 3 * 3; whole >= 3*1024 {
		t.emit(t.pending[:whole])
		t.pending = append(t.pending[:0], t.pending[whole:]...)
	}
	if t.err != nil {
		return 0, t.err
	}
	return len(b), nil
}

// emit writes b base64-encoded (padded when len(b) is not a multiple of 3).
func (t *textWriter) emit(b []byte) {
	if len(b) == 0 || t.err != nil {
		return
	}
	_, t.err = t.ResponseWriter.Write([]byte(base64.StdEncoding.EncodeToString(b)))
}

func (t *textWriter) Flush() {
	t.mu.Lock()
	t.emit(t.pending)
	t.pending = t.pending[:0]
	t.mu.Unlock()
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (t *textWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

func (t *textWriter) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.emit(t.pending)
	t.pending = nil
}
