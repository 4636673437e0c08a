package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/jetstate/route"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// The tests here run a service as three replicas (sidecar + test function
// each) on a 3-node NATS cluster, all in-process, with R3 storage.

const (
	clusterShards = 100
	memberTTL     = 2 * time.Second
)

type replica struct {
	uf     *testFunction
	ufAddr string
	js     jetstream.JetStream
	p      *proxy.Proxy
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan error
	up     atomic.Bool
	calls  sync.WaitGroup // calls in flight through this replica
}

type cluster struct {
	t        testing.TB
	tweak    func(*proxy.Config) // applied to every sidecar's config; may be nil
	nats     *streamstest.Cluster
	types    testTypes
	replicas []*replica
	mu       sync.RWMutex // held for reading while a client picks a replica
	loadOK   atomic.Int64 // commands of load that succeeded
}

func startCluster(t testing.TB, n int) *cluster {
	t.Helper()
	return startClusterWith(t, n, nil)
}

// startClusterWith is startCluster with tweak applied to each sidecar's
// config.
func startClusterWith(t testing.TB, n int, tweak func(*proxy.Config)) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	c := &cluster{t: t, nats: streamstest.RunCluster(t, 3), types: newTestTypes(t), tweak: tweak}
	c.nats.WaitMetaLeader()
	for range n {
		r := &replica{uf: newTestFunction(t)}
		r.ufAddr = serveFunction(t, r.uf, nil)
		c.replicas = append(c.replicas, r)
		c.start(r)
	}
	c.waitBalanced()
	return c
}

// start runs a sidecar for r and waits until it serves.
func (c *cluster) start(r *replica) {
	t := c.t
	t.Helper()
	r.js = c.nats.JetStream(t)
	cfg := proxy.Config{
		Storage:            streams.Config{Service: "test"},
		Provision:          &streams.StoreConfig{Replicas: 3, Shards: clusterShards, MemberTTL: memberTTL},
		UserFunction:       r.ufAddr,
		Listen:             "127.0.0.1:0",
		PassivationTimeout: time.Minute,
		CommandTimeout:     5 * time.Second,
		DiscoveryBackoff:   10 * time.Millisecond,
		Logger:             testLogger(fmt.Sprintf("%p", r)),
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	p, err := proxy.New(cfg, r.js)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.done = make(chan error, 1)
	go func() { r.done <- p.Run(ctx) }()
	select {
	case <-p.Serving():
	case err := <-r.done:
		t.Fatalf("sidecar stopped before serving: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("sidecar not serving within 30s")
	}
	conn, err := grpc.NewClient(p.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	r.p, r.conn, r.cancel = p, conn, cancel
	r.up.Store(true)
	t.Cleanup(func() { c.stop(r) })
}

// stop takes r out of the clients' pool, waits for its calls in flight,
// and stops its sidecar gracefully (it hands its shards off).
func (c *cluster) stop(r *replica) {
	c.mu.Lock()
	was := r.up.Swap(false)
	c.mu.Unlock()
	if !was {
		return
	}
	r.calls.Wait()
	r.conn.Close()
	r.cancel()
	if err := <-r.done; err != nil {
		c.t.Errorf("sidecar Run: %v", err)
	}
}

// kill stops r abruptly: its NATS connection goes first, so it can neither
// heartbeat nor hand anything off; its shards are claimed once its
// membership expires.
func (c *cluster) kill(r *replica) {
	c.mu.Lock()
	r.up.Store(false)
	c.mu.Unlock()
	r.js.Conn().Close()
	r.conn.Close()
	r.cancel()
	<-r.done
}

func (c *cluster) owned() []int {
	var out []int
	for _, r := range c.replicas {
		if r.up.Load() {
			out = append(out, r.p.OwnedShards())
		} else {
			out = append(out, 0)
		}
	}
	return out
}

// waitBalanced waits until the live replicas serve every shard between
// them, in even shares.
func (c *cluster) waitBalanced() time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		owned, live, total := c.owned(), 0, 0
		for i, n := range owned {
			total += n
			if c.replicas[i].up.Load() {
				live++
			}
		}
		even := true
		for i, n := range owned {
			if c.replicas[i].up.Load() && (n < clusterShards/live || n > (clusterShards+live-1)/live) {
				even = false
			}
		}
		if total == clusterShards && even {
			return time.Since(start)
		}
		if time.Since(start) > 30*time.Second {
			c.t.Fatalf("shards never balanced: %v", owned)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitOps waits until n more commands of load have succeeded: the load
// makes progress in the state the cluster is in (a minute is a failsafe).
func (c *cluster) waitOps(n int64) {
	c.t.Helper()
	target := c.loadOK.Load() + n
	for deadline := time.Now().Add(time.Minute); c.loadOK.Load() < target; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.t.Fatalf("load made no progress: %d of %d commands succeeded within a minute", n-(target-c.loadOK.Load()), n)
		}
	}
}

// add sends Counter/Add(key, 1) through a random live replica and returns
// the new total and which replica took it.
func (c *cluster) call(ctx context.Context, method, key string, n *int64) (int64, error) {
	c.mu.RLock()
	var live []*replica
	for _, r := range c.replicas {
		if r.up.Load() {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		c.mu.RUnlock()
		return 0, errors.New("no replica up")
	}
	r := live[rand.IntN(len(live))]
	r.calls.Add(1)
	c.mu.RUnlock()
	defer r.calls.Done()
	resp := c.types.msg("Value")
	err := r.conn.Invoke(ctx, "/test.Counter/"+method, c.types.request(key, n), resp)
	return resp.Get(resp.Descriptor().Fields().ByName("n")).Int(), err
}

// op is one client operation for the linearizability check.
type op struct {
	key    string
	add    bool
	result int64
	ok     bool // false: the outcome is unknown (an error)
	call   int64
	ret    int64
}

// load runs workers sending Add(1) (and some Get) on keys until ctx ends,
// recording every operation.
func (c *cluster) load(ctx context.Context, workers int, keys []string) []op {
	var mu sync.Mutex
	var ops []op
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				o := op{key: keys[rand.IntN(len(keys))], add: rand.IntN(4) != 0, call: time.Now().UnixNano()}
				cctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
				var err error
				if o.add {
					o.result, err = c.call(cctx, "Add", o.key, ptr(1))
				} else {
					o.result, err = c.call(cctx, "Get", o.key, nil)
				}
				cancel()
				o.ret, o.ok = time.Now().UnixNano(), err == nil
				if err != nil {
					c.t.Logf("%s %s: %v", map[bool]string{true: "add", false: "get"}[o.add], o.key, err)
				} else {
					c.loadOK.Add(1)
				}
				mu.Lock()
				ops = append(ops, o)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ops
}

// checkJournals reads every key's journal: its events must be dense (Read
// checks that) and their sum must equal the acknowledged adds plus at most
// the adds whose outcome is unknown; and a final Get must agree.
func (c *cluster) checkJournals(ops []op) {
	c.t.Helper()
	acked, unknown := map[string]int64{}, map[string]int64{}
	for _, o := range ops {
		switch {
		case o.add && o.ok:
			acked[o.key]++
		case o.add:
			unknown[o.key]++
		}
	}
	j, err := streams.NewJournal(c.nats.JetStream(c.t), streams.Config{Service: "test"})
	if err != nil {
		c.t.Fatal(err)
	}
	for key := range acked {
		var sum, events int64
		for r, err := range j.Read(c.t.Context(), streams.Entity{Type: "counter", Key: key}, streams.Version{}) {
			if err != nil {
				c.t.Fatalf("journal of %s: %v", key, err)
			}
			var v anypb.Any
			v.TypeUrl, v.Value = r.Type, r.Data
			sum += c.types.intField("Value", "n", v.Value)
			events++
		}
		if sum < acked[key] || sum > acked[key]+unknown[key] {
			c.t.Errorf("%s: journal sums to %d over %d events; %d adds acknowledged, %d unknown", key, sum, events, acked[key], unknown[key])
		}
		got, err := c.call(c.t.Context(), "Get", key, nil)
		if err != nil || got != sum {
			c.t.Errorf("%s: Get = %d, %v; journal sum %d", key, got, err, sum)
		}
	}
}

// counterModel is a counter per key: Add(1) returns the new value, Get the
// current one. Operations with an unknown outcome may or may not apply.
var counterModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, o := range history {
			k := o.Input.(op).key
			by[k] = append(by[k], o)
		}
		var out [][]porcupine.Operation
		for _, h := range by {
			out = append(out, h)
		}
		return out
	},
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(int64), input.(op), output.(op)
		switch {
		case !out.ok && in.add:
			return true, s + 1 // unknown outcome: linearizable either way...
		case !out.ok:
			return true, s
		case in.add:
			return out.result == s+1, s + 1
		default:
			return out.result == s, s
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(op), output.(op)
		return fmt.Sprintf("%s add=%v -> %d ok=%v", in.key, in.add, out.result, out.ok)
	},
}

// checkLinearizable checks the recorded histories with porcupine. An
// operation whose outcome is unknown is left open-ended (it may have taken
// effect at any time after its call), and two models are tried for it:
// applied or not.
func checkLinearizable(t *testing.T, ops []op) {
	t.Helper()
	var history []porcupine.Operation
	for i, o := range ops {
		po := porcupine.Operation{ClientId: i, Input: o, Call: o.call, Output: o, Return: o.ret}
		if !o.ok {
			if !o.add {
				continue // a failed read constrains nothing
			}
			po.Return = 1<<62 + int64(i)
		}
		history = append(history, po)
	}
	model := counterModel
	// An unknown add either applied or not: explore both.
	nd := porcupine.NondeterministicModel{
		Partition: model.Partition,
		Init:      func() []any { return []any{int64(0)} },
		Step: func(state, input, output any) []any {
			s, out := state.(int64), output.(op)
			if !out.ok {
				return []any{s, s + 1}
			}
			if ok, next := model.Step(state, input, output); ok {
				return []any{next}
			}
			return nil
		},
		DescribeOperation: model.DescribeOperation,
	}
	res := porcupine.CheckOperationsTimeout(nd.ToModel(), history, time.Minute)
	if res != porcupine.Ok {
		t.Fatalf("history of %d operations is not linearizable (%v)", len(history), res)
	}
}

// testLogger logs to stderr when JETSTATE_TEST_LOG is set (debugging).
func testLogger(name string) *slog.Logger {
	if os.Getenv("JETSTATE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("replica", name)
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint("c", i)
	}
	return out
}

func TestClusterRoutesToOneOwner(t *testing.T) {
	c := startCluster(t, 3)
	// active maps each entity to the replica it was active on; with
	// report, an entity active on two is an error (a command that came in
	// elsewhere must go to the owner).
	active := func(report bool) map[string]int {
		where := map[string]int{}
		for i, r := range c.replicas {
			for _, rec := range r.uf.recorded() {
				if key := entityOf(rec); key != "" {
					if prev, ok := where[key]; ok && prev != i && report {
						t.Errorf("entity %s active on replicas %d and %d", key, prev, i)
					}
					where[key] = i
				}
			}
		}
		return where
	}
	// The load runs until 300 commands succeeded and every entity has
	// been activated, not for a fixed time (a slow machine did less).
	ctx, cancel := context.WithCancel(t.Context())
	var ops []op
	done := make(chan struct{})
	go func() { defer close(done); ops = c.load(ctx, 12, keys(30)) }()
	t.Cleanup(func() { cancel(); <-done }) // also when a wait fails
	c.waitOps(300)
	for deadline := time.Now().Add(time.Minute); len(active(false)) < 30; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 30 entities activated within a minute", len(active(false)))
		}
	}
	cancel()
	<-done
	for _, o := range ops {
		if !o.ok {
			t.Fatalf("a command failed with all replicas up: %+v", o)
		}
	}
	c.checkJournals(ops)
	checkLinearizable(t, ops)
	if where := active(true); len(where) != 30 {
		t.Errorf("%d entities active, want 30", len(where))
	}
	t.Logf("%d operations, shards %v", len(ops), c.owned())
}

func TestClusterSurvivesAKilledSidecar(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithCancel(t.Context())
	var ops []op
	done := make(chan struct{})
	go func() { defer close(done); ops = c.load(ctx, 8, keys(20)) }()
	t.Cleanup(func() { cancel(); <-done }) // also when a wait fails
	c.waitOps(100)
	c.kill(c.replicas[0])
	dead := time.Now().UnixNano()
	// The survivors take the shards once its membership expires (how fast:
	// BenchmarkRoutingFailover), and the load goes on through them.
	moved := c.waitBalanced()
	t.Logf("shards moved %v after the kill (member TTL %v): %v", moved, memberTTL, c.owned())
	c.waitOps(100)
	cancel()
	<-done
	for _, o := range ops {
		// Only calls in flight at the kill may fail (through the killed
		// replica, or routed to it as owner: their outcome is unknown).
		// Later calls wait for the shards to move and succeed.
		if !o.ok && o.call > dead {
			t.Errorf("a call made after the kill failed: %+v", o)
		}
	}
	c.checkJournals(ops)
	checkLinearizable(t, ops)
}

func TestClusterTwoOwnersCannotFork(t *testing.T) {
	c := startCluster(t, 2)
	// Both sidecars serve the shard of key "fork": both run the entity
	// from their own copy of its state.
	key := "fork"
	shard := streams.ShardOf(streams.Entity{Type: "counter", Key: key}, clusterShards)
	for _, r := range c.replicas {
		proxy.ForceServe(r.p, shard)
	}
	var wg sync.WaitGroup
	var acked atomic.Int64
	results := make([]map[int64]bool, 2)
	for i, r := range c.replicas {
		results[i] = map[int64]bool{}
		wg.Go(func() {
			for range 40 {
				resp := c.types.msg("Value")
				err := r.conn.Invoke(t.Context(), "/test.Counter/Add", c.types.request(key, ptr(1)), resp)
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
					continue
				}
				acked.Add(1)
				results[i][resp.Get(resp.Descriptor().Fields().ByName("n")).Int()] = true
			}
		})
	}
	wg.Wait()
	// Every acknowledged add has its own place in one linear journal.
	seen := map[int64]bool{}
	for i := range results {
		for n := range results[i] {
			if seen[n] {
				t.Errorf("total %d returned twice: a fork", n)
			}
			seen[n] = true
		}
	}
	c.checkJournals([]op{})
	j, err := streams.NewJournal(c.nats.JetStream(t), streams.Config{Service: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var events int64
	for _, err := range j.Read(t.Context(), streams.Entity{Type: "counter", Key: key}, streams.Version{}) {
		if err != nil {
			t.Fatal(err)
		}
		events++
	}
	if events != acked.Load() || acked.Load() != 80 {
		t.Fatalf("journal has %d events, %d adds acknowledged (want 80)", events, acked.Load())
	}
	// Both really ran it: each saw the other's writes through the fence.
	for i, r := range c.replicas {
		if len(r.uf.recorded()) == 0 {
			t.Errorf("replica %d never ran the entity", i)
		}
	}
}

func TestClusterRollingRestartFailsNothing(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithCancel(t.Context())
	var ops []op
	done := make(chan struct{})
	go func() { defer close(done); ops = c.load(ctx, 8, keys(20)) }()
	t.Cleanup(func() { cancel(); <-done }) // also when a wait fails
	for _, r := range c.replicas {
		c.waitOps(50) // commands flow before each restart
		c.stop(r)
		c.start(r)
		c.waitBalanced()
	}
	c.waitOps(50)
	cancel()
	<-done
	failed := 0
	for _, o := range ops {
		if !o.ok {
			failed++
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d commands failed during the rolling restart", failed, len(ops))
	}
	c.checkJournals(ops)
	checkLinearizable(t, ops)
}

func TestClusterLinearizableThroughKillsAndANATSNode(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	c := startCluster(t, 3)
	ctx, cancel := context.WithCancel(t.Context())
	var ops []op
	done := make(chan struct{})
	go func() { defer close(done); ops = c.load(ctx, 8, keys(10)) }()
	t.Cleanup(func() { cancel(); <-done }) // also when a wait fails
	c.waitOps(50)
	c.kill(c.replicas[1])
	c.waitBalanced()
	// A NATS node goes down, commands go on without it, and it comes back.
	c.nats.Servers[2].Stop()
	c.waitOps(50)
	c.nats.Servers[2].Start()
	c.start(c.replicas[1])
	c.waitBalanced()
	c.waitOps(50)
	cancel()
	<-done
	c.checkJournals(ops)
	checkLinearizable(t, ops)
}

func TestClusterRoutedCommandHonoursTheClientDeadline(t *testing.T) {
	c := startCluster(t, 2)
	key := c.keyOf(0, "hang-")
	// Through replica 1, so the command is routed to replica 0, where the
	// function never answers; the client gives up after 300 ms. A copy of
	// the routed command shows replica 0 was told to wait no longer.
	routed := c.watchRoute(t, key)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	resp := c.types.msg("Value")
	err := c.replicas[1].conn.Invoke(ctx, "/test.Counter/Hang", c.types.request(key, nil), resp)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("hang = %v, want DEADLINE_EXCEEDED", err)
	}
	msg, err := routed.NextMsg(time.Minute)
	if err != nil {
		t.Fatalf("no routed command seen: %v", err)
	}
	var cmd route.Command
	if err := proto.Unmarshal(msg.Data, &cmd); err != nil {
		t.Fatal(err)
	}
	if cmd.GetName() != "Hang" || cmd.GetEntityKey() != key || cmd.GetTimeoutMs() <= 0 || cmd.GetTimeoutMs() > 300 {
		t.Fatalf("routed %s(%s) with timeout %d ms, want at most the client's 300 ms (the command timeout is 5 s)", cmd.GetName(), cmd.GetEntityKey(), cmd.GetTimeoutMs())
	}
	// Other entities are unaffected meanwhile.
	if n, err := c.call(t.Context(), "Add", "other", ptr(2)); err != nil || n != 2 {
		t.Fatalf("add = %d, %v", n, err)
	}
}

// keyOf is the first counter key prefix<n> whose shard replica r serves.
func (c *cluster) keyOf(r int, prefix string) string {
	for i := 0; ; i++ {
		k := prefix + fmt.Sprint(i)
		if proxy.Serves(c.replicas[r].p, streams.ShardOf(streams.Entity{Type: "counter", Key: k}, clusterShards)) {
			return k
		}
	}
}

// watchRoute subscribes to the route subject of the counter key's shard,
// so a test sees the commands routed to its owner.
func (c *cluster) watchRoute(t *testing.T, key string) *nats.Subscription {
	t.Helper()
	shard := streams.ShardOf(streams.Entity{Type: "counter", Key: key}, clusterShards)
	nc := c.nats.Connect(t)
	routed, err := nc.SubscribeSync(streams.Config{Service: "test"}.RouteSubject(shard))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return routed
}

// hangRouted sends Hang for an entity owned by replica 0 through replica 1
// (the function never answers it) and returns once replica 0 was sent the
// command, with the channel the call's error arrives on.
func (c *cluster) hangRouted(t *testing.T) <-chan error {
	t.Helper()
	key := c.keyOf(0, "hang-")
	routed := c.watchRoute(t, key)
	done := make(chan error, 1)
	go func() {
		done <- c.replicas[1].conn.Invoke(t.Context(), "/test.Counter/Hang", c.types.request(key, nil), c.types.msg("Value"))
	}()
	if _, err := routed.NextMsg(time.Minute); err != nil {
		t.Fatalf("no routed command seen: %v", err)
	}
	return done
}

// A routed command whose owner is killed with it in hand ends as UNAVAILABLE
// (it may or may not have run) once the owner's membership expired and a
// grace passed, not after the command timeout (ten minutes here, so only
// the early end can answer within the test's time).
func TestClusterRoutedCommandEndsWhenItsOwnerDies(t *testing.T) {
	c := startClusterWith(t, 2, func(cfg *proxy.Config) { cfg.CommandTimeout = 10 * time.Minute })
	done := c.hangRouted(t)
	c.kill(c.replicas[0])
	if err := <-done; status.Code(err) != codes.Unavailable {
		t.Fatalf("hang routed to a killed owner = %v, want UNAVAILABLE", err)
	}
	if n, err := c.call(t.Context(), "Add", "after", ptr(2)); err != nil || n != 2 {
		t.Fatalf("add after the kill = %d, %v", n, err)
	}
}

// A routed command waiting for its answer when the requesting sidecar's NATS
// connection drops ends at once as UNAVAILABLE: an answer sent while it
// was disconnected is not delivered again. Its owner is alive and keeps
// the command (the function hangs), so nothing else could end it before
// the ten-minute command timeout.
func TestClusterRoutedCommandEndsWhenTheConnectionDrops(t *testing.T) {
	c := startClusterWith(t, 2, func(cfg *proxy.Config) { cfg.CommandTimeout = 10 * time.Minute })
	done := c.hangRouted(t)
	nc := c.replicas[1].js.Conn()
	id, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	dropped := false
	for _, s := range c.nats.Servers {
		if s.Running() && s.NATS().ID() == nc.ConnectedServerId() {
			if err := s.NATS().DisconnectClientByID(id); err != nil {
				t.Fatal(err)
			}
			dropped = true
		}
	}
	if !dropped {
		t.Fatalf("server %s of replica 1 not found", nc.ConnectedServerId())
	}
	if err := <-done; status.Code(err) != codes.Unavailable {
		t.Fatalf("hang with the connection dropped = %v, want UNAVAILABLE", err)
	}
	// Replica 1 reconnects and routes again.
	key := c.keyOf(0, "after-")
	resp := c.types.msg("Value")
	if err := c.replicas[1].conn.Invoke(t.Context(), "/test.Counter/Add", c.types.request(key, ptr(3)), resp); err != nil {
		t.Fatalf("routed add after the reconnection: %v", err)
	}
}

// BenchmarkRoutingFailover measures how long the shards of a killed
// sidecar (no handoff) take to reach the other two, in member TTLs: its
// membership has to expire first. TestClusterSurvivesAKilledSidecar checks
// that they move and that nothing fails meanwhile; this is how fast.
func BenchmarkRoutingFailover(b *testing.B) {
	c := startCluster(b, 3)
	r := c.replicas[0]
	var took time.Duration
	rounds := 0
	for b.Loop() {
		t0 := time.Now()
		c.kill(r)
		c.waitBalanced()
		took += time.Since(t0)
		rounds++
		c.start(r)
		c.waitBalanced()
	}
	b.ReportMetric(took.Seconds()/float64(rounds), "failover-s")
	b.ReportMetric(took.Seconds()/float64(rounds)/memberTTL.Seconds(), "failover/member-ttl")
}
