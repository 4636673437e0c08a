package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
)

// httpResult is a whole HTTP response.
type httpResult struct {
	code     int
	ct       string
	body     string
	chunked  bool
	truncErr error // reading the body failed
}

// httpDo sends one request to the sidecar's HTTP ingress and reads the
// whole answer.
func (h *harness) httpDo(t *testing.T, method, path, accept, body string) httpResult {
	t.Helper()
	resp := h.httpOpen(t, t.Context(), method, path, accept, body)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return httpResult{
		code: resp.StatusCode, ct: resp.Header.Get("Content-Type"), body: string(b),
		chunked: len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked", truncErr: err,
	}
}

func (h *harness) httpOpen(t *testing.T, ctx context.Context, method, path, accept, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+h.p.Addr().String()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestHTTPServerStreams checks server-streaming actions over HTTP/JSON: SSE
// when the client accepts it, NDJSON otherwise, raw chunks for HttpBody,
// through rules (path, query, response_body) and the default binding, and
// failures before and after the first reply.
func TestHTTPServerStreams(t *testing.T) {
	h := startHarness(t, nil)
	const sse, ndjson = "text/event-stream", "application/x-ndjson"
	cases := []struct {
		name, method, path, accept, body string
		code                             int
		ct, want                         string
	}{
		{"sse, default binding", "POST", "/test.Echo/Count", sse, `{"n":3}`, 200, sse,
			"data: {\"n\":\"1\"}\n\ndata: {\"n\":\"2\"}\n\ndata: {\"n\":\"3\"}\n\n"},
		{"sse among other types", "GET", "/numbers/2", "text/html, text/event-stream;q=0.5", "", 200, sse,
			"data: {\"n\":\"1\"}\n\ndata: {\"n\":\"2\"}\n\n"},
		{"sse refused by quality", "GET", "/numbers/1", "text/event-stream;q=0, */*", "", 200, ndjson, "{\"n\":\"1\"}\n"},
		{"ndjson by default", "POST", "/test.Echo/Count", "", `{"n":"3"}`, 200, ndjson,
			"{\"n\":\"1\"}\n{\"n\":\"2\"}\n{\"n\":\"3\"}\n"},
		{"ndjson for json clients", "GET", "/numbers?n=2", "application/json", "", 200, ndjson, "{\"n\":\"1\"}\n{\"n\":\"2\"}\n"},
		{"response_body", "GET", "/tens/2", sse, "", 200, sse, "data: \"1\"\n\ndata: \"2\"\n\n"},
		{"empty stream", "GET", "/numbers/0", sse, "", 200, sse, ""},
		{"httpbody chunks", "GET", "/pages/3/stream", sse, "", 200, "text/html", "<p>1</p><p>2</p><p>3</p>"},
		{"sse failure mid-stream", "POST", "/test.Echo/Fails", sse, `{"n":2}`, 200, sse,
			"data: {\"n\":\"1\"}\n\ndata: {\"n\":\"2\"}\n\nevent: error\ndata: broke after 2\n\n"},
		{"ndjson failure mid-stream", "POST", "/test.Echo/Fails", "", `{"n":1}`, 200, ndjson,
			"{\"n\":\"1\"}\n{\"error\":\"broke after 1\"}\n"},
		{"failure before the first reply", "POST", "/test.Echo/Fails", sse, `{"n":0}`, 500, "text/plain; charset=utf-8", "broke after 0"},
		{"body that does not decode", "POST", "/test.Echo/Count", sse, `{"n":`, 400, "text/plain; charset=utf-8", ""},
		{"path value that does not parse", "GET", "/numbers/many", "", "", 400, "text/plain; charset=utf-8", ""},
		{"wrong verb", "GET", "/test.Echo/Count", "", "", 405, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.httpDo(t, c.method, c.path, c.accept, c.body)
			if r.code != c.code || (c.ct != "" && r.ct != c.ct) || (c.want != "" || c.code == 200) && r.body != c.want {
				t.Fatalf("%s %s = %d %q %q, want %d %q %q", c.method, c.path, r.code, r.ct, r.body, c.code, c.ct, c.want)
			}
			if r.code == 200 && r.body != "" && !r.chunked {
				t.Fatalf("%s %s: not chunked", c.method, c.path)
			}
		})
	}

	t.Run("httpbody failure mid-stream aborts", func(t *testing.T) {
		r := h.httpDo(t, "GET", "/pages/-1/stream", "", "")
		if r.code != 200 || r.ct != "text/html" || r.body != "<p>1</p>" || r.truncErr == nil {
			t.Fatalf("= %d %q %q, read error %v; want the first chunk, then a truncated body", r.code, r.ct, r.body, r.truncErr)
		}
	})

	// The function got the request decoded from the query, and the
	// request's headers as metadata.
	var numbers []string
	for _, r := range h.uf.recorded() {
		if c, ok := r.in.(*actionpb.ActionCommand); ok && c.GetName() == "Numbers" {
			md := map[string]string{}
			for _, e := range c.GetMetadata().GetEntries() {
				md[e.GetKey()] = e.GetStringValue()
			}
			numbers = append(numbers, fmt.Sprintf("%s %d %s", c.GetServiceName(), h.types.intField("Value", "n", c.GetPayload().GetValue()), md["accept"]))
		}
	}
	if !slices.Contains(numbers, "test.Echo 2 application/json") {
		t.Fatalf("Numbers commands %q lack the query call", numbers)
	}
}

// TestHTTPServerStreamFlushesAndCancels reads a stream that stays open after
// three replies: they arrive without waiting for more (each is flushed), and
// closing the connection cancels the function's stream.
func TestHTTPServerStreamFlushesAndCancels(t *testing.T) {
	h := startHarness(t, nil)
	for _, accept := range []string{"", "text/event-stream"} {
		t.Run("accept "+accept, func(t *testing.T) {
			before := cancelledHolds(h)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			resp := h.httpOpen(t, ctx, "POST", "/test.Echo/Hold", accept, `{"n":3}`)
			lines := bufio.NewReader(resp.Body)
			var events []string
			for len(events) < 3 {
				line, err := lines.ReadString('\n')
				if err != nil {
					t.Fatalf("after %q: %v", events, err)
				}
				if line != "\n" {
					events = append(events, line)
				}
			}
			want := []string{"{\"n\":\"1\"}\n", "{\"n\":\"2\"}\n", "{\"n\":\"3\"}\n"}
			if accept != "" {
				for i := range want {
					want[i] = "data: " + want[i]
				}
			}
			if strings.Join(events, "") != strings.Join(want, "") {
				t.Fatalf("events %q, want %q", events, want)
			}
			resp.Body.Close() // not read to the end: the client closes the connection
			waitFor(t, "the function's stream cancelled", func() bool { return cancelledHolds(h) > before })
		})
	}
}

func cancelledHolds(h *harness) int {
	n := 0
	for _, r := range h.uf.recorded() {
		if r.cancelled {
			n++
		}
	}
	return n
}

// TestHTTPUnaryBesideStreams checks that unary calls over HTTP/JSON and the
// gRPC protocols' streams are unaffected by the REST stream routes.
func TestHTTPUnaryBesideStreams(t *testing.T) {
	h := startHarness(t, nil)
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/test.Echo/Echo", `{"n":"7"}`, 200, `{"n":"7"}`},
		{"GET", "/counters/u", "", 200, `{"n":"0"}`},
		{"POST", "/counters/u/add", `{"n":2}`, 200, `{"n":"2"}`},
		{"GET", "/counters/u/n", "", 200, `"2"`},
		{"GET", "/pages/4", "", 200, "<h1>page 4</h1>"},
		{"POST", "/test.Counter/Fail", `{"key":"u"}`, 500, "boom"},
		{"POST", "/test.Echo/Sum", `{"n":1}`, 415, ""}, // client streams are not served over HTTP/JSON
	} {
		r := h.httpDo(t, c.method, c.path, "text/event-stream", c.body)
		if r.code != c.code || (c.want != "" && r.body != c.want) {
			t.Fatalf("%s %s = %d %q, want %d %q", c.method, c.path, r.code, r.body, c.code, c.want)
		}
	}

	// A gRPC-Web server stream still streams protobuf frames.
	in := h.types.value(2).GetValue()
	req, err := http.NewRequestWithContext(t.Context(), "POST", "http://"+h.p.Addr().String()+"/test.Echo/Count",
		bytes.NewReader(append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(in))), in...)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("gRPC-Web Count = %d, %v", resp.StatusCode, err)
	}
	var got []string
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if 5+n > len(b) {
			t.Fatalf("gRPC-Web Count: truncated frame after %q", got)
		}
		if b[0]&0x80 != 0 { // trailers
			got = append(got, strings.TrimSpace(strings.ToLower(string(b[5:5+n]))))
		} else {
			got = append(got, fmt.Sprint(h.types.intField("Value", "n", b[5:5+n])))
		}
		b = b[5+n:]
	}
	if len(got) != 3 || got[0] != "1" || got[1] != "2" || !strings.Contains(got[2], "grpc-status: 0") {
		t.Fatalf("gRPC-Web Count frames %q", got)
	}
}
