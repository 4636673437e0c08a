package proxy_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// sized is a serialized test.Value of exactly n bytes (n >= 2): n unset,
// the bytes in an unknown field 2, which decoding keeps and Echo echoes.
func sized(n int) []byte {
	l := n - 1 - protowire.SizeVarint(uint64(n))
	for 1+protowire.SizeVarint(uint64(l))+l < n {
		l++
	}
	for 1+protowire.SizeVarint(uint64(l))+l > n {
		l--
	}
	b := protowire.AppendTag(nil, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, bytes.Repeat([]byte{'x'}, l))
	if len(b) != n {
		panic("sized: " + strconv.Itoa(len(b)) + " bytes, not " + strconv.Itoa(n))
	}
	return b
}

// echoes counts the Echo commands the test function has seen.
func echoes(f *testFunction) int {
	n := 0
	for _, r := range f.recorded() {
		if cmd, ok := r.in.(*actionpb.ActionCommand); ok && cmd.GetName() == "Echo" {
			n++
		}
	}
	return n
}

// startHarnessOn is startHarness on a server started with opts and the
// function f served by srv (registered by the caller).
func startHarnessOn(t *testing.T, f *testFunction, register func(*grpc.Server), tune func(*proxy.Config), opts ...streamstest.Option) *harness {
	t.Helper()
	nats := streamstest.RunServer(t, opts...)
	h := &harness{t: t, js: nats.JetStream(t), uf: f, types: newTestTypes(t)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	register(gs)
	go gs.Serve(lis)
	t.Cleanup(func() {
		close(f.hang)
		gs.Stop()
	})
	h.ufAddr = lis.Addr().String()
	h.startProxy(tune)
	return h
}

// registerAll serves f as serveFunction does.
func registerAll(f *testFunction) func(*grpc.Server) {
	return func(gs *grpc.Server) {
		cloudstate.RegisterEntityDiscoveryServer(gs, f)
		eventsourced.RegisterEventSourcedServer(gs, f)
		valueentity.RegisterValueEntityServer(gs, valueFunction{f})
		actionpb.RegisterActionProtocolServer(gs, f)
	}
}

// Issue 12, item 2: the ingress took 12 MiB while the store took 1 MiB, so
// a 1-12 MiB request ran the function and then failed with 503 (retry!),
// having buffered the whole body. Now there is one limit, what the store
// accepts (the server's max payload, or the streams' max message size,
// less streams.MessageOverhead), and a request over it is refused before
// it is read: HTTP 413 or RESOURCE_EXHAUSTED, naming the limit, without
// the function seeing it. A request at the limit is served.
func TestRequestSizeLimit(t *testing.T) {
	for _, c := range []struct {
		name  string
		opts  []streamstest.Option
		limit int // 0: what the store takes
	}{
		{"default server", nil, 0},
		{"max_payload 64 KiB", []streamstest.Option{streamstest.WithMaxPayload(64 << 10)}, 0},
		{"the operator's smaller limit", nil, 4000},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newTestFunction(t)
			h := startHarnessOn(t, f, registerAll(f), func(cfg *proxy.Config) { cfg.MaxRequestSize = c.limit }, c.opts...)
			limit := int(h.js.Conn().MaxPayload()) - streams.MessageOverhead
			if c.limit > 0 {
				limit = c.limit
			}
			base := "http://" + h.p.Addr().String()
			post := func(t *testing.T, body io.Reader, size int64, ct string) (*http.Response, string) {
				t.Helper()
				req, err := http.NewRequestWithContext(t.Context(), "POST", base+"/test.Echo/Echo", body)
				if err != nil {
					t.Fatal(err)
				}
				req.ContentLength = size // -1: chunked
				req.Header.Set("Content-Type", ct)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp, string(b)
			}
			// {"n":"1"} padded with spaces to n bytes.
			jsonOf := func(n int) string { return `{"n":"1"` + strings.Repeat(" ", n-len(`{"n":"1"}`)) + "}" }
			wantRefused := func(t *testing.T, what string, seen int) {
				t.Helper()
				if got := echoes(f); got != seen {
					t.Fatalf("%s reached the function", what)
				}
			}

			t.Run("grpc at the limit", func(t *testing.T) {
				var reply []byte
				err := h.conn.Invoke(t.Context(), "/test.Echo/Echo", sized(limit), &reply, grpc.ForceCodec(rawCodec{}))
				if err != nil || len(reply) != limit {
					t.Fatalf("Echo of %d bytes = %d bytes, %v", limit, len(reply), err)
				}
			})
			t.Run("grpc over the limit", func(t *testing.T) {
				seen := echoes(f)
				var reply []byte
				err := h.conn.Invoke(t.Context(), "/test.Echo/Echo", sized(limit+1), &reply, grpc.ForceCodec(rawCodec{}))
				if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), strconv.Itoa(limit)) {
					t.Fatalf("Echo of %d bytes = %v; want RESOURCE_EXHAUSTED naming the limit %d", limit+1, err, limit)
				}
				wantRefused(t, "the gRPC request over the limit", seen)
			})
			t.Run("http at the limit", func(t *testing.T) {
				body := jsonOf(limit)
				if resp, got := post(t, strings.NewReader(body), int64(len(body)), "application/json"); resp.StatusCode != 200 || got != `{"n":"1"}` {
					t.Fatalf("POST of %d bytes = %d %q", limit, resp.StatusCode, got)
				}
			})
			t.Run("http over the limit", func(t *testing.T) {
				seen := echoes(f)
				body := jsonOf(limit + 1)
				resp, got := post(t, strings.NewReader(body), int64(len(body)), "application/json")
				if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(got, strconv.Itoa(limit)) {
					t.Fatalf("POST of %d bytes = %d %q; want 413 naming the limit %d", limit+1, resp.StatusCode, got, limit)
				}
				wantRefused(t, "the HTTP request over the limit", seen)
			})
			t.Run("http chunked over the limit", func(t *testing.T) {
				seen := echoes(f)
				body := jsonOf(limit + 1)
				resp, got := post(t, io.MultiReader(strings.NewReader(body)), -1, "application/json")
				if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(got, strconv.Itoa(limit)) {
					t.Fatalf("chunked POST of %d bytes = %d %q; want 413 naming the limit %d", limit+1, resp.StatusCode, got, limit)
				}
				wantRefused(t, "the chunked HTTP request over the limit", seen)
			})
			for _, chunked := range []bool{false, true} {
				t.Run("grpc-web over the limit, chunked "+strconv.FormatBool(chunked), func(t *testing.T) {
					seen := echoes(f)
					msg := sized(limit + 1)
					body := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
					body = append(body, msg...)
					size := int64(len(body))
					var r io.Reader = bytes.NewReader(body)
					if chunked {
						size, r = -1, io.MultiReader(r)
					}
					resp, got := post(t, r, size, "application/grpc-web+proto")
					// Refused at once: the status is in the headers; after
					// the transcoder began: in the body's trailer frame.
					if resp.Header.Get("Grpc-Status") != "8" && !strings.Contains(got, "grpc-status: 8") {
						t.Fatalf("gRPC-Web Echo of %d bytes = %d %v %q; want grpc-status 8 (RESOURCE_EXHAUSTED)", limit+1, resp.StatusCode, resp.Header, got)
					}
					if !strings.Contains(resp.Header.Get("Grpc-Message")+got, strconv.Itoa(limit)) {
						t.Fatalf("gRPC-Web refusal %v %q does not name the limit %d", resp.Header, got, limit)
					}
					wantRefused(t, "the gRPC-Web request over the limit", seen)
				})
			}
		})
	}
}

// rawCodec sends and receives messages as the bytes they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// bigEvents is the test function, except that its event-sourced commands
// persist one event of eventSize bytes.
type bigEvents struct {
	*testFunction
	eventSize int
}

func (b bigEvents) Handle(stream grpc.BidiStreamingServer[eventsourced.EventSourcedStreamIn, eventsourced.EventSourcedStreamOut]) error {
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		cmd := in.GetCommand()
		if cmd == nil {
			continue
		}
		reply := &eventsourced.EventSourcedReply{
			CommandId:    cmd.GetId(),
			Events:       []*anypb.Any{{TypeUrl: "type.googleapis.com/test.Value", Value: sized(b.eventSize)}},
			ClientAction: replyAction(b.types.value(1)),
		}
		if err := stream.Send(&eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Reply{Reply: reply}}); err != nil {
			return err
		}
	}
}

// Issue 12, item 2: a command whose events the store refuses for their
// size failed with UNAVAILABLE / 503, which tells clients to retry; no
// retry can succeed, so it is RESOURCE_EXHAUSTED / 413.
func TestStoreRefusalForSizeIsNotRetryable(t *testing.T) {
	const maxPayload = 64 << 10
	f := newTestFunction(t)
	big := bigEvents{testFunction: f, eventSize: 2 * maxPayload}
	logs := &logBuffer{}
	h := startHarnessOn(t, f, func(gs *grpc.Server) {
		cloudstate.RegisterEntityDiscoveryServer(gs, f)
		eventsourced.RegisterEventSourcedServer(gs, big)
		valueentity.RegisterValueEntityServer(gs, valueFunction{f})
		actionpb.RegisterActionProtocolServer(gs, f)
	}, func(c *proxy.Config) { c.Logger = logs.logger() }, streamstest.WithMaxPayload(maxPayload))

	_, err := h.call("Counter/Add", "big", ptr(1))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("a command with a %d-byte event on a %d-byte store = %v; want RESOURCE_EXHAUSTED", 2*maxPayload, maxPayload, err)
	}
	// Item 3: the store's error names the journal subject; the client
	// gets a request id, the log the details.
	if line := internalError(t, logs, "Counter/Add", st.Message()); !strings.Contains(line, "jetstate.test.counter.big") {
		t.Fatalf("the log line %q lacks the details (the subject)", line)
	}
	code, b := h.postJSON("/counters/big/add", `{"n":"1"}`)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("over HTTP = %d %q; want 413", code, b)
	}
	internalError(t, logs, "POST /counters/big/add", b)
}

// A command routed to its shard's owner, whose events the store refuses for
// their size there, is RESOURCE_EXHAUSTED at the ingress too: the route
// protocol carries the cause (it came back as a retryable UNAVAILABLE).
func TestRoutedStoreRefusalForSizeIsNotRetryable(t *testing.T) {
	const maxPayload = 64 << 10
	srv := streamstest.RunServer(t, streamstest.WithMaxPayload(maxPayload))
	js := srv.JetStream(t)
	store := &streams.StoreConfig{Shards: 8}
	serveBig := func() string {
		f := newTestFunction(t)
		big := bigEvents{testFunction: f, eventSize: 2 * maxPayload}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		cloudstate.RegisterEntityDiscoveryServer(gs, f)
		eventsourced.RegisterEventSourcedServer(gs, big)
		valueentity.RegisterValueEntityServer(gs, valueFunction{f})
		actionpb.RegisterActionProtocolServer(gs, f)
		go gs.Serve(lis)
		t.Cleanup(gs.Stop)
		return lis.Addr().String()
	}
	tune := func(c *proxy.Config) { c.Provision = store }
	a := startSidecar(t, baseConfig(t, js, serveBig(), tune), js, nil)
	b := startSidecar(t, baseConfig(t, js, serveBig(), tune), js, nil)
	waitFor(t, "both sidecars serving shards", func() bool {
		na, nb := a.p.OwnedShards(), b.p.OwnedShards()
		return na > 0 && nb > 0 && na+nb == store.Shards
	})
	own, err := streams.NewOwnership(t.Context(), js, streams.Config{Service: "test"})
	if err != nil {
		t.Fatal(err)
	}
	key := ""
	for i := 0; key == ""; i++ {
		if k := fmt.Sprint("routed-", i); proxy.Serves(b.p, own.ShardOf(streams.Entity{Type: "counter", Key: k})) {
			key = k
		}
	}
	err = invoke(t.Context(), a.conn, newTestTypes(t), "Counter/Add", key, ptr(1))
	if code := status.Code(err); code != codes.ResourceExhausted {
		t.Fatalf("a routed command with a %d-byte event on a %d-byte store = %v; want RESOURCE_EXHAUSTED", 2*maxPayload, maxPayload, err)
	}
}
