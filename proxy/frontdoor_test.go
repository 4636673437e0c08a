package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/jetstate/jetstate/proxy"
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

// failsafe bounds a wait that should end on an event long before: reaching
// it fails the test, it does not measure anything.
const failsafe = time.Minute

// grpcFrame is a Value{n} request as one gRPC message.
func grpcFrame(n byte) []byte { return []byte{0, 0, 0, 0, 2, 0x08, n} }

// h2client is a raw HTTP/2 client connection with prior knowledge, for
// what well-behaved clients do not do (too many streams, too many pings,
// no answer to pings).
type h2client struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

func dialH2(t *testing.T, addr string) *h2client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(failsafe))
	c := &h2client{t: t, conn: conn, fr: http2.NewFramer(conn, conn)}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c
}

// call opens stream id with a gRPC request of Value{n} to path.
func (c *h2client) call(id uint32, path string, n byte) {
	c.t.Helper()
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", path}, {":authority", "sidecar"},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
	if err := c.fr.WriteData(id, true, grpcFrame(n)); err != nil {
		c.t.Fatal(err)
	}
}

// next reads the next frame; at the end of the connection it returns nil
// and the error.
func (c *h2client) next() (http2.Frame, error) {
	f, err := c.fr.ReadFrame()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatal("nothing within the failsafe")
	}
	return f, err
}

// callDone makes a whole Echo call on stream id (the connection then goes
// to the native gRPC server) and reads up to its end.
func (c *h2client) callDone(id uint32) {
	c.t.Helper()
	c.call(id, "/test.Echo/Echo", 1)
	for {
		f, err := c.next()
		if err != nil {
			c.t.Fatalf("connection ended during a call: %v", err)
		}
		if f.Header().StreamID == id && f.Header().Flags.Has(http2.FlagHeadersEndStream) {
			if h, ok := f.(*http2.MetaHeadersFrame); !ok || headerValue(h, "grpc-status") != "0" {
				c.t.Fatalf("call ended with %v", f)
			}
			return
		}
	}
}

func headerValue(h *http2.MetaHeadersFrame, name string) string {
	for _, f := range h.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// TestStreamsPerConnection: a client opening more gRPC streams on one
// connection than MaxConcurrentStreams, without waiting as grpc-go does,
// has the extra ones refused; the server says the limit in its SETTINGS.
func TestStreamsPerConnection(t *testing.T) {
	h := startHarness(t, func(c *proxy.Config) { c.MaxConcurrentStreams = 3 })
	c := dialH2(t, h.p.Addr().String())
	for id := uint32(1); id <= 7; id += 2 { // 4 streams, each held open by the function
		c.call(id, "/test.Echo/Hold", 1)
	}
	limit, answered := uint32(0), map[uint32]bool{}
	for {
		f, err := c.next()
		if err != nil {
			t.Fatalf("connection ended: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
				limit = v
			}
		case *http2.MetaHeadersFrame:
			answered[f.StreamID] = true
		case *http2.RSTStreamFrame:
			if f.StreamID != 7 || f.ErrCode != http2.ErrCodeRefusedStream {
				t.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
			}
		}
		if answered[7] {
			t.Fatal("the fourth stream was served")
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == 7 {
			break
		}
	}
	if limit != 3 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want 3", limit)
	}
	// The three first streams are served.
	for !answered[1] || !answered[3] || !answered[5] {
		f, err := c.next()
		if err != nil {
			t.Fatalf("connection ended: %v", err)
		}
		if f, ok := f.(*http2.MetaHeadersFrame); ok {
			answered[f.StreamID] = true
		}
	}
}

// TestTooManyPings: a gRPC client pinging more often than KeepaliveMinTime
// is sent GOAWAY too_many_pings and disconnected. (grpc-go's own default
// policy did this before the policy was configurable.)
func TestTooManyPings(t *testing.T) {
	h := startHarness(t, func(c *proxy.Config) {
		c.KeepaliveMinTime = time.Hour
		c.KeepalivePermitWithoutStream = true
	})
	c := dialH2(t, h.p.Addr().String())
	for i := range 5 {
		if err := c.fr.WritePing(false, [8]byte{byte(i)}); err != nil {
			break // the server may have closed the connection already
		}
	}
	for {
		f, err := c.next()
		if err != nil {
			t.Fatalf("connection ended without GOAWAY: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeEnhanceYourCalm || string(g.DebugData()) != "too_many_pings" {
				t.Fatalf("GOAWAY %v %q", g.ErrCode, g.DebugData())
			}
			break
		}
	}
	for {
		if _, err := c.next(); err != nil {
			break // disconnected
		}
	}
}

// TestIdleConnectionsAreClosed: an HTTP/1.1 keep-alive connection and a
// gRPC connection that have no request in flight for IdleTimeout are
// closed by the server (the gRPC one with a GOAWAY).
func TestIdleConnectionsAreClosed(t *testing.T) {
	h := startHarness(t, func(c *proxy.Config) { c.IdleTimeout = 100 * time.Millisecond })
	addr := h.p.Addr().String()

	t.Run("http keep-alive", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(failsafe))
		fmt.Fprint(conn, "GET /counters/idle HTTP/1.1\r\nHost: sidecar\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("answer %d, close %v", resp.StatusCode, resp.Close)
		}
		if n, err := br.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("idle connection: read %d, %v; want it closed (EOF)", n, err)
		}
	})
	t.Run("grpc", func(t *testing.T) {
		c := dialH2(t, addr)
		c.callDone(1)
		for {
			f, err := c.next()
			if err != nil {
				t.Fatalf("connection ended without GOAWAY: %v", err)
			}
			if g, ok := f.(*http2.GoAwayFrame); ok {
				if g.ErrCode != http2.ErrCodeNo {
					t.Fatalf("GOAWAY %v %q", g.ErrCode, g.DebugData())
				}
				return
			}
		}
	})
}

// TestUnansweredPingsCloseTheConnection: a gRPC connection silent for
// KeepaliveTime is pinged, and closed when the answer does not come within
// KeepaliveTimeout (a client that went away without a word).
func TestUnansweredPingsCloseTheConnection(t *testing.T) {
	h := startHarness(t, func(c *proxy.Config) {
		c.KeepaliveTime = time.Second // grpc-go's least
		c.KeepaliveTimeout = 100 * time.Millisecond
	})
	c := dialH2(t, h.p.Addr().String())
	c.callDone(1)
	pinged := false
	for {
		f, err := c.next()
		if err != nil {
			if !pinged {
				t.Fatalf("connection ended before a ping: %v", err)
			}
			return // closed
		}
		if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
			pinged = true // and not answered
		}
	}
}

// TestSlowBodiesAreCutOff: a request body that trickles in is cut off after
// BodyTimeout, over HTTP/1.1 and HTTP/2; a client-streaming call is not
// bounded by it.
func TestSlowBodiesAreCutOff(t *testing.T) {
	h := startHarness(t, func(c *proxy.Config) { c.BodyTimeout = 200 * time.Millisecond })
	addr := h.p.Addr().String()
	// trickle sends headers and the first byte of a 20-byte body, then
	// nothing, and returns once the server answered or closed.
	trickle := func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(failsafe))
		fmt.Fprint(conn, "POST /test.Echo/Echo HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			t.Fatal("the trickling body was not cut off")
		case err == nil:
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Fatalf("trickling body answered %d", resp.StatusCode)
			}
		}
	}
	t.Run("http1", trickle)

	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	transport := &http.Transport{Protocols: protocols}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	ctx, cancel := context.WithTimeout(t.Context(), failsafe)
	defer cancel()

	t.Run("h2c", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		go func() { _, _ = io.WriteString(pw, `{"n":`) }()
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/test.Echo/Echo", pr)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		switch {
		case ctx.Err() != nil:
			t.Fatal("the trickling body was not cut off")
		case err == nil:
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Fatalf("trickling body answered %d", resp.StatusCode)
			}
		}
	})

	t.Run("client stream", func(t *testing.T) {
		// The h2c connection went to the HTTP side with a JSON request; a
		// gRPC bidi stream on it goes through net/http too.
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/test.Echo/Echo", strings.NewReader(`{"n":"1"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		pr, pw := io.Pipe()
		defer pw.Close()
		go func() { _, _ = pw.Write(grpcFrame(1)) }()
		req, _ = http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/test.Echo/Chat", pr)
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		resp, err = client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		echo := func(n byte) {
			t.Helper()
			got := make([]byte, len(grpcFrame(n)))
			if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, grpcFrame(n)) {
				t.Fatalf("echo of %d = %v, %v (trailers %v)", n, got, err, resp.Trailer)
			}
		}
		echo(1)
		// A trickling body started after this stream was cut off, so the
		// stream has been open for longer than BodyTimeout.
		trickle(t)
		go func() { _, _ = pw.Write(grpcFrame(2)) }()
		echo(2)
		pw.Close()
		if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 || resp.Trailer.Get("Grpc-Status") != "0" {
			t.Fatalf("end of stream: %q, %v, trailers %v", rest, err, resp.Trailer)
		}
	})
}
