package proxy_test

// Regression tests for bugs of the sidecar's life cycle and error mapping:
// errors that must be retryable (no owner, forward loop), shutdown bounded
// by the drain time rather than the command timeout, and metrics
// registration (a data race with /metrics, a shared registry).
//
// They use the exported API of package proxy only (New, Config, Run,
// Serving, Addr, AdminHandler, OwnedShards), the test user function of
// uf_test.go and the harness of proxy_test.go.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// sidecar is one proxy whose Run these tests control.
type sidecar struct {
	p      *proxy.Proxy
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan error // Run's result (a panic in Run is reported as an error)

	stopOnce sync.Once
	stopped  chan struct{} // closed once Run returned after stop
	err      error
}

// startSidecar creates a proxy, calls before (if set) with it, runs it and
// waits until it serves. The sidecar is stopped at the end of the test.
func startSidecar(t *testing.T, cfg proxy.Config, js jetstream.JetStream, before func(*proxy.Proxy)) *sidecar {
	t.Helper()
	p, err := proxy.New(cfg, js)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &sidecar{p: p, cancel: cancel, done: make(chan error, 1), stopped: make(chan struct{})}
	go func() {
		// A panic would end the whole test binary: make it Run's error.
		defer func() {
			if r := recover(); r != nil {
				s.done <- fmt.Errorf("Run panicked: %v", r)
			}
		}()
		s.done <- p.Run(ctx)
	}()
	select {
	case <-p.Serving():
	case err := <-s.done:
		cancel()
		t.Fatalf("sidecar stopped before serving: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("sidecar not serving within 30s")
	}
	s.conn, err = grpc.NewClient(p.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("proxy Run: %v", err)
		}
	})
	return s
}

// stop cancels Run's context and returns Run's error once it returned.
// Concurrent and repeated calls wait for the same stop.
func (s *sidecar) stop() error {
	s.stopOnce.Do(func() {
		s.conn.Close()
		s.cancel()
		s.err = <-s.done
		close(s.stopped)
	})
	return s.err
}

// stopWithin stops s and fails the test unless Run returns within limit;
// it returns how long Run took.
func (s *sidecar) stopWithin(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	go s.stop()
	select {
	case <-s.stopped:
	case <-time.After(limit):
		t.Fatalf("Run had not returned %v after its context was cancelled", limit)
	}
	if s.err != nil {
		t.Errorf("proxy Run: %v", s.err)
	}
	return time.Since(start)
}

// invoke calls /test.<method> on conn and returns the error.
func invoke(ctx context.Context, conn *grpc.ClientConn, types testTypes, method, key string, n *int64) error {
	return conn.Invoke(ctx, "/test."+method, types.request(key, n), types.msg("Value"))
}

// httpDo sends an HTTP/JSON request to a sidecar's ingress and returns the
// status code and body.
func httpDo(t *testing.T, s *sidecar, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+s.p.Addr().String()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// short cuts a long error message (a forward loop's trace) for failure
// output.
func short(s string) string {
	if len(s) > 160 {
		return s[:160] + "..."
	}
	return s
}

// scrape gets /metrics from an admin handler.
func scrape(h http.Handler) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Code, rec.Body.String()
}

// commandSeen tells when an entity command of a given name has reached a
// user function: the moment it is observably in the function.
type commandSeen struct {
	mu   sync.Mutex
	seen map[string]chan struct{}
}

// wait returns a channel closed once a command named name has arrived.
func (c *commandSeen) wait(name string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.channel(name)
}

func (c *commandSeen) channel(name string) chan struct{} {
	if c.seen == nil {
		c.seen = map[string]chan struct{}{}
	}
	ch, ok := c.seen[name]
	if !ok {
		ch = make(chan struct{})
		c.seen[name] = ch
	}
	return ch
}

func (c *commandSeen) saw(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.channel(name)
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// seenStream reports the entity commands received on a function's stream.
type seenStream struct {
	grpc.ServerStream
	seen *commandSeen
}

func (s seenStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		switch in := m.(type) {
		case *eventsourced.EventSourcedStreamIn:
			if cmd := in.GetCommand(); cmd != nil {
				s.seen.saw(cmd.GetName())
			}
		case *valueentity.ValueEntityStreamIn:
			if cmd := in.GetCommand(); cmd != nil {
				s.seen.saw(cmd.GetName())
			}
		}
	}
	return err
}

// watchedFunction is a test function served like serveFunction does, but
// whose entity commands are reported as they arrive, and whose hanging
// commands (Counter/Hang) can be released early, before the sidecars using
// it are stopped at the end of the test.
type watchedFunction struct {
	*testFunction
	addr    string
	seen    *commandSeen
	release func() // ends every hanging command; idempotent
}

func serveWatched(t *testing.T, actions actionpb.ActionProtocolServer) *watchedFunction {
	t.Helper()
	f := newTestFunction(t)
	w := &watchedFunction{testFunction: f, seen: &commandSeen{}, release: sync.OnceFunc(func() { close(f.hang) })}
	if actions == nil {
		actions = f
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, seenStream{ServerStream: ss, seen: w.seen})
	}))
	cloudstate.RegisterEntityDiscoveryServer(srv, f)
	eventsourced.RegisterEventSourcedServer(srv, f)
	valueentity.RegisterValueEntityServer(srv, valueFunction{f})
	actionpb.RegisterActionProtocolServer(srv, actions)
	go srv.Serve(lis)
	t.Cleanup(func() {
		w.release()
		srv.Stop()
	})
	w.addr = lis.Addr().String()
	return w
}

// ranEntity reports whether f has had a stream for entity key.
func ranEntity(f *testFunction, key string) bool {
	for _, r := range f.recorded() {
		if entityOf(r) == key {
			return true
		}
	}
	return false
}

// baseConfig is the harness's sidecar configuration for a function at
// ufAddr, tuned.
func baseConfig(t *testing.T, js jetstream.JetStream, ufAddr string, tune func(*proxy.Config)) proxy.Config {
	h := &harness{t: t, js: js, ufAddr: ufAddr}
	return h.config(tune)
}

// Bug 1a (ErrNoOwner reached clients as INTERNAL / HTTP 500): a command
// whose shard has no serving owner within Config.RouteTimeout is retryable
// (ARCHITECTURE.md: UNAVAILABLE / 503). The shard table gives every shard
// to a "ghost" member that heartbeats, so the sidecar never claims its
// shards, but never serves them either.
func TestNoOwnerIsUnavailable(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	storage := streams.Config{Service: "test"}
	store := streams.StoreConfig{Shards: 4}
	if err := streams.Provision(t.Context(), js, storage, store); err != nil {
		t.Fatal(err)
	}
	own, err := streams.NewOwnership(t.Context(), js, storage)
	if err != nil {
		t.Fatal(err)
	}
	const ghost = "ghost"
	if err := own.Heartbeat(t.Context(), ghost, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for shard := range own.Shards() {
		if _, err := own.SetOwner(t.Context(), shard, ghost, 0); err != nil {
			t.Fatal(err)
		}
	}
	// The ghost stays a member for the whole test.
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		tick := time.NewTicker(own.MemberTTL() / 4)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := own.Heartbeat(ctx, ghost, []byte(`{}`)); err != nil && ctx.Err() == nil {
				t.Errorf("ghost heartbeat: %v", err)
			}
		}
	})

	uf := newTestFunction(t)
	s := startSidecar(t, baseConfig(t, js, serveFunction(t, uf, nil), func(c *proxy.Config) {
		c.Provision = &store
		c.RouteTimeout = 300 * time.Millisecond
	}), js, nil)
	if n := s.p.OwnedShards(); n != 0 {
		t.Fatalf("the sidecar serves %d shards of the ghost's", n)
	}
	types := newTestTypes(t)

	t.Run("grpc", func(t *testing.T) {
		err := invoke(t.Context(), s.conn, types, "Counter/Get", "k", nil)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("Counter/Get with no serving owner = %v, want UNAVAILABLE", err)
		}
	})
	t.Run("http", func(t *testing.T) {
		if code, body := httpDo(t, s, "GET", "/counters/k", ""); code != http.StatusServiceUnavailable {
			t.Fatalf("GET /counters/k with no serving owner = %d %q, want 503", code, body)
		}
	})
}

// loopActions is an action implementation whose commands never end:
// Echo forwards to itself, ToCounter runs itself as a synchronous side
// effect (then replies).
type loopActions struct {
	actionpb.UnimplementedActionProtocolServer
	types testTypes
}

func (l loopActions) HandleUnary(_ context.Context, cmd *actionpb.ActionCommand) (*actionpb.ActionResponse, error) {
	switch cmd.GetName() {
	case "Echo":
		return &actionpb.ActionResponse{Response: &actionpb.ActionResponse_Forward{Forward: &cloudstate.Forward{
			ServiceName: "test.Echo", CommandName: "Echo", Payload: cmd.GetPayload()}}}, nil
	case "ToCounter":
		return &actionpb.ActionResponse{
			Response:    &actionpb.ActionResponse_Reply{Reply: &cloudstate.Reply{Payload: l.types.value(0)}},
			SideEffects: []*cloudstate.SideEffect{{ServiceName: "test.Echo", CommandName: "ToCounter", Payload: cmd.GetPayload(), Synchronous: true}},
		}, nil
	}
	return nil, fmt.Errorf("unknown action %s", cmd.GetName())
}

// Bug 1b (ErrForwardLoop reached clients as INTERNAL / HTTP 500): forwards
// or side effects nested deeper than the limit fail the call as retryable
// (ARCHITECTURE.md: UNAVAILABLE / 503), over gRPC and HTTP/JSON.
func TestForwardLoopIsUnavailable(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	uf := serveWatched(t, loopActions{types: newTestTypes(t)})
	s := startSidecar(t, baseConfig(t, js, uf.addr, nil), js, nil)
	types := newTestTypes(t)

	t.Run("grpc forward", func(t *testing.T) {
		err := s.conn.Invoke(t.Context(), "/test.Echo/Echo", types.msg("Value"), types.msg("Value"))
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("Echo forwarding to itself = %s, want UNAVAILABLE", short(fmt.Sprint(err)))
		}
	})
	t.Run("grpc side effect", func(t *testing.T) {
		err := invoke(t.Context(), s.conn, types, "Echo/ToCounter", "k", ptr(1))
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("ToCounter running itself as a side effect = %s, want UNAVAILABLE", short(fmt.Sprint(err)))
		}
	})
	t.Run("http forward", func(t *testing.T) {
		if code, body := httpDo(t, s, "POST", "/test.Echo/Echo", `{"n":"1"}`); code != http.StatusServiceUnavailable {
			t.Fatalf("POST /test.Echo/Echo forwarding to itself = %d %q, want 503", code, short(body))
		}
	})
}

// Bug 2 (shutdown waited for the command timeout, not the drain time):
// with a user-function command hanging, Run returns soon after its context
// is cancelled (DrainTimeout 500 ms), not when the command times out
// (CommandTimeout 30 s). The bound below is a generous failsafe for -race
// on loaded machines, far under the command timeout.
func TestStopDoesNotWaitForTheCommandTimeout(t *testing.T) {
	const (
		commandTimeout = 30 * time.Second
		drainTimeout   = 500 * time.Millisecond
		limit          = commandTimeout / 3
	)
	tune := func(store *streams.StoreConfig) func(*proxy.Config) {
		return func(c *proxy.Config) {
			c.CommandTimeout = commandTimeout
			c.DrainTimeout = drainTimeout
			c.Provision = store
		}
	}
	// hang sends Counter/Hang for key through s in the background, until
	// the test ends.
	hang := func(t *testing.T, s *sidecar, key string) {
		types := newTestTypes(t)
		var wg sync.WaitGroup
		t.Cleanup(wg.Wait) // the call ends with t.Context, before cleanups
		wg.Go(func() { _ = invoke(t.Context(), s.conn, types, "Counter/Hang", key, nil) })
	}

	t.Run("local entity", func(t *testing.T) {
		srv := streamstest.RunServer(t)
		js := srv.JetStream(t)
		uf := serveWatched(t, nil)
		s := startSidecar(t, baseConfig(t, js, uf.addr, tune(&streams.StoreConfig{})), js, nil)
		t.Cleanup(uf.release) // first: a sidecar stopped at cleanup need not wait out the hang

		hang(t, s, "h")
		select {
		case <-uf.seen.wait("Hang"):
		case <-time.After(20 * time.Second):
			t.Fatal("the hanging command never reached the function")
		}
		took := s.stopWithin(t, limit)
		t.Logf("Run returned %v after cancel (drain %v, command timeout %v)", took, drainTimeout, commandTimeout)
	})

	// The owner of a routed entity hands its shard off on stop: the
	// handoff must not wait for the hung command either.
	t.Run("routed entity handoff", func(t *testing.T) {
		srv := streamstest.RunServer(t)
		js := srv.JetStream(t)
		store := &streams.StoreConfig{Shards: 8}
		ufA, ufB := serveWatched(t, nil), serveWatched(t, nil)
		a := startSidecar(t, baseConfig(t, js, ufA.addr, tune(store)), js, nil)
		b := startSidecar(t, baseConfig(t, js, ufB.addr, tune(store)), js, nil)
		t.Cleanup(ufA.release)
		t.Cleanup(ufB.release)
		waitFor(t, "both sidecars serving shards", func() bool {
			na, nb := a.p.OwnedShards(), b.p.OwnedShards()
			return na > 0 && nb > 0 && na+nb == store.Shards
		})

		// A key whose entity runs at b, for commands that come in at a.
		types := newTestTypes(t)
		key := ""
		for i := 0; key == "" && i < 200; i++ {
			k := fmt.Sprint("routed-", i)
			if err := invoke(t.Context(), a.conn, types, "Counter/Get", k, nil); err != nil {
				t.Fatalf("Counter/Get(%s) through a: %v", k, err)
			}
			if ranEntity(ufB.testFunction, k) {
				key = k
			}
		}
		if key == "" {
			t.Fatal("no key of 200 was routed from a to b")
		}

		hang(t, a, key)
		select {
		case <-ufB.seen.wait("Hang"):
		case <-time.After(20 * time.Second):
			t.Fatal("the routed hanging command never reached b's function")
		}
		took := b.stopWithin(t, limit)
		t.Logf("the owner's Run returned %v after cancel (drain %v, command timeout %v)", took, drainTimeout, commandTimeout)
	})
}

// Bug 3 (data race): /metrics scraped while Run's start-up still fills the
// sidecar's runtimes (the active-entities collector read them unguarded).
// The admin handler is scraped in a loop from before Run is called until
// the sidecar serves; under -race the race detector fails the test.
func TestMetricsScrapedDuringStartup(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	reg := prometheus.NewRegistry()
	cfg := baseConfig(t, js, serveFunction(t, newTestFunction(t), nil), func(c *proxy.Config) { c.Registry = reg })
	var wg sync.WaitGroup
	scrapes := 0
	s := startSidecar(t, cfg, js, func(p *proxy.Proxy) {
		admin := p.AdminHandler(reg)
		wg.Go(func() {
			for {
				if code, body := scrape(admin); code != http.StatusOK {
					t.Errorf("/metrics during start-up = %d %q", code, body)
					return
				}
				scrapes++
				select {
				case <-p.Serving():
					return
				case <-t.Context().Done():
					return
				default:
				}
			}
		})
	})
	wg.Wait()
	t.Logf("%d scrapes during start-up", scrapes)
	if code, body := scrape(s.p.AdminHandler(reg)); code != http.StatusOK || !strings.Contains(body, "jetstate_proxy_shards_owned") {
		t.Fatalf("/metrics once serving = %d:\n%s", code, body)
	}
}

// Bug 4 (MustRegister panicked on a second registration): two sidecars
// sharing one Prometheus registry, at once or one after the other, both
// run, and /metrics works.
func TestSidecarsShareARegistry(t *testing.T) {
	t.Run("two at once", func(t *testing.T) {
		srv := streamstest.RunServer(t)
		js := srv.JetStream(t)
		reg := prometheus.NewRegistry()
		tune := func(c *proxy.Config) { c.Registry = reg }
		types := newTestTypes(t)
		var sidecars []*sidecar
		for range 2 {
			cfg := baseConfig(t, js, serveFunction(t, newTestFunction(t), nil), tune)
			sidecars = append(sidecars, startSidecar(t, cfg, js, nil))
		}
		for i, s := range sidecars {
			if err := invoke(t.Context(), s.conn, types, "Counter/Add", fmt.Sprint("k", i), ptr(1)); err != nil {
				t.Fatalf("Counter/Add through sidecar %d: %v", i, err)
			}
			if code, body := scrape(s.p.AdminHandler(reg)); code != http.StatusOK || !strings.Contains(body, "jetstate_proxy_commands_total") {
				t.Fatalf("/metrics of sidecar %d = %d:\n%s", i, code, body)
			}
		}
	})
	t.Run("one after the other", func(t *testing.T) {
		srv := streamstest.RunServer(t)
		js := srv.JetStream(t)
		reg := prometheus.NewRegistry()
		cfg := baseConfig(t, js, serveFunction(t, newTestFunction(t), nil), func(c *proxy.Config) { c.Registry = reg })
		types := newTestTypes(t)
		for i := range 2 {
			s := startSidecar(t, cfg, js, nil)
			if err := invoke(t.Context(), s.conn, types, "Counter/Add", "k", ptr(1)); err != nil {
				t.Fatalf("Counter/Add through run %d: %v", i, err)
			}
			if code, body := scrape(s.p.AdminHandler(reg)); code != http.StatusOK || !strings.Contains(body, "jetstate_proxy_commands_total") {
				t.Fatalf("/metrics of run %d = %d:\n%s", i, code, body)
			}
			if err := s.stop(); err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
		}
	})
}
