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

// TestQueryCannotOverrideBoundFields: a query parameter may set only fields
// that neither the path nor the body of the matched google.api.http rule
// binds, and none at all with body "*" (google.api.http). vanguard applied
// the query last, so GET /counters/attacker?key=victim read victim's
// counter; such requests are refused.
func TestQueryCannotOverrideBoundFields(t *testing.T) {
	h := startHarness(t, nil)
	if r := h.httpDo(t, "POST", "/counters/victim/add", "", `{"n":"5"}`); r.code != 200 || r.body != `{"n":"5"}` {
		t.Fatalf("add = %d %q", r.code, r.body)
	}
	cases := []struct {
		name, method, path, body string
		code                     int
		want                     string // the body, or for 400 a part of it
	}{
		{"path key, query key", "GET", "/counters/attacker?key=victim", "", 400, `query parameter "key" overrides key, which the path of GET /counters/{key} binds`},
		{"additional binding", "GET", "/counters/attacker/n?key=victim", "", 400, "GET /counters/{key}/n"},
		{"body * and a query", "POST", "/counters/victim/add?n=100", `{"n":"1"}`, 400, `POST /counters/{key}/add takes no query parameters`},
		{"body * and a query key", "POST", "/counters/attacker/add?key=victim", `{"n":"1"}`, 400, "takes no query parameters"},
		{"stream, path variable", "GET", "/numbers/1?n=5", "", 400, "GET /numbers/{n}"},
		{"stream, default binding", "POST", "/test.Echo/Count?n=5", `{"n":"1"}`, 400, "POST /test.Echo/Count takes no query parameters"},
		{"no path variable: the query binds", "GET", "/counters?key=victim", "", 200, `{"n":"5"}`},
		{"stream, no path variable", "GET", "/numbers?n=2", "", 200, "{\"n\":\"1\"}\n{\"n\":\"2\"}\n"},
		{"path key alone", "GET", "/counters/attacker", "", 200, `{"n":"0"}`},
		{"victim unchanged", "GET", "/counters/victim", "", 200, `{"n":"5"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.httpDo(t, c.method, c.path, "", c.body)
			if r.code != c.code || (c.code == 200 && r.body != c.want) || (c.code != 200 && !strings.Contains(r.body, c.want)) {
				t.Fatalf("%s %s %s = %d %q, want %d %q", c.method, c.path, c.body, r.code, r.body, c.code, c.want)
			}
			if c.code == 400 && !strings.HasPrefix(r.ct, "text/plain") {
				t.Fatalf("content type %q", r.ct)
			}
		})
	}
}
