package proxy_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// logBuffer collects a sidecar's log as text, for tests that look for a
// line; safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// line returns the logged line that contains s, or "".
func (l *logBuffer) line(s string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for line := range strings.Lines(l.b.String()) {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

var requestID = regexp.MustCompile(`\(request ([0-9A-Za-z]+)\)$`)

// internalError checks that msg, a message a client got for an internal
// failure, names no address, transport or subject, and carries a request
// id under which the sidecar logged the details; it returns that log line.
// The sidecar logs before it answers, so the line is there once the client
// has the answer.
func internalError(t *testing.T, logs *logBuffer, what, msg string) string {
	t.Helper()
	for _, leak := range []string{"127.0.0.1", "tcp", "dial", "jetstate.", "rpc error"} {
		if strings.Contains(msg, leak) {
			t.Errorf("%s: the client's message %q reveals %q", what, msg, leak)
		}
	}
	m := requestID.FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("%s: the client's message %q has no request id", what, msg)
	}
	line := logs.line("request=" + m[1])
	if line == "" {
		t.Fatalf("%s: nothing logged under request id %s", what, m[1])
	}
	return line
}

// Issue 12, item 3: errors sent to clients revealed internals (`dial tcp
// 127.0.0.1:8080`, journal subjects). A client of a sidecar whose user
// function is down gets a short message with a request id; the details are
// logged once, under that id, at the ingress.
func TestInternalErrorsAreNotShown(t *testing.T) {
	f := newTestFunction(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	registerAll(f)(gs)
	go gs.Serve(lis)
	t.Cleanup(func() {
		close(f.hang)
		gs.Stop()
	})
	nats := streamstest.RunServer(t)
	h := &harness{t: t, js: nats.JetStream(t), uf: f, types: newTestTypes(t), ufAddr: lis.Addr().String()}
	logs := &logBuffer{}
	h.startProxy(func(c *proxy.Config) { c.Logger = logs.logger() })
	h.mustCall("Counter/Add", "up", ptr(1), 1)

	// Refusals of the client's own request keep their text (and need no id).
	for _, c := range []struct {
		method string
		req    []byte
		code   codes.Code
		want   string
	}{
		{"/test.Counter/Nope", nil, codes.Unimplemented, "unknown method /test.Counter/Nope"},
		{"/test.Counter/Get", []byte{0xff}, codes.InvalidArgument, "not a valid test.GetRequest"},
	} {
		var reply []byte
		err := h.conn.Invoke(t.Context(), c.method, c.req, &reply, grpc.ForceCodec(rawCodec{}))
		if st := status.Convert(err); st.Code() != c.code || !strings.Contains(st.Message(), c.want) || requestID.MatchString(st.Message()) {
			t.Fatalf("%s %x = %v; want %v %q without a request id", c.method, c.req, err, c.code, c.want)
		}
	}

	gs.Stop() // the function goes down

	t.Run("grpc action", func(t *testing.T) {
		// A call on the connection the function just closed fails with EOF;
		// once the sidecar has noticed, its calls fail dialling the
		// function's address, which the log must then show, and the client
		// not. A minute is only a failsafe.
		for deadline := time.Now().Add(time.Minute); ; {
			var reply []byte
			err := h.conn.Invoke(t.Context(), "/test.Echo/Echo", sized(8), &reply, grpc.ForceCodec(rawCodec{}))
			st := status.Convert(err)
			if st.Code() != codes.Unavailable {
				t.Fatalf("Echo with the function down = %v, want UNAVAILABLE", err)
			}
			if line := internalError(t, logs, "Echo", st.Message()); strings.Contains(line, h.ufAddr) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no failure to reach the function's address %s logged within a minute", h.ufAddr)
			}
		}
	})
	t.Run("grpc entity", func(t *testing.T) {
		_, err := h.call("Counter/Add", "down", ptr(1))
		st := status.Convert(err)
		if st.Code() != codes.Unavailable {
			t.Fatalf("Counter/Add with the function down = %v, want UNAVAILABLE", err)
		}
		internalError(t, logs, "Counter/Add", st.Message())
	})
	t.Run("http", func(t *testing.T) {
		code, b := h.postJSON("/test.Echo/Echo", `{"n":"1"}`)
		if code != http.StatusServiceUnavailable {
			t.Fatalf("POST /test.Echo/Echo with the function down = %d %q, want 503", code, b)
		}
		internalError(t, logs, "POST /test.Echo/Echo", b)
	})
}

// postJSON posts body as JSON to path on h's sidecar and returns the
// status and body of the answer.
func (h *harness) postJSON(path, body string) (int, string) {
	t := h.t
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", "http://"+h.p.Addr().String()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
