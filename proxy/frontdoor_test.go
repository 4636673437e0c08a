package proxy_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Tests of the ingress as clients reach it (issue 12, "Hardening the front
// door").

// TestHTTPJSONOverH2C: HTTP/JSON over cleartext HTTP/2 with prior knowledge
// (curl --http2-prior-knowledge) is served like over HTTP/1.1, unary and
// server streams, on one connection, while gRPC clients keep the native
// gRPC server.
func TestHTTPJSONOverH2C(t *testing.T) {
	h := startHarness(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a failsafe
	defer cancel()
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	transport := &http.Transport{Protocols: protocols}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	do := func(method, path, body string) (string, int, string, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, "http://"+h.p.Addr().String()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Proto, resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	steps := []struct {
		method, path, body string
		ct, want           string
	}{
		{"POST", "/test.Echo/Echo", `{"n":"7"}`, "application/json", `{"n":"7"}`}, // default binding (Connect)
		{"POST", "/counters/h2c/add", `{"n":"2"}`, "application/json", `{"n":"2"}`},
		{"GET", "/counters/h2c", "", "application/json", `{"n":"2"}`},
		{"GET", "/numbers/2", "", "application/x-ndjson", "{\"n\":\"1\"}\n{\"n\":\"2\"}\n"},
	}
	for _, s := range steps {
		proto, code, ct, body := do(s.method, s.path, s.body)
		if proto != "HTTP/2.0" || code != 200 || !strings.HasPrefix(ct, s.ct) || body != s.want {
			t.Fatalf("%s %s %s over h2c = %s %d %q %q, want HTTP/2.0 200 %q %q", s.method, s.path, s.body, proto, code, ct, body, s.ct, s.want)
		}
	}
	h.mustCall("Counter/Get", "h2c", nil, 2) // gRPC
}
