package shoppingcart_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jetstate/jetstate/examples/shoppingcart"
	"github.com/jetstate/jetstate/streams"
)

// BenchmarkAddItem measures the whole command path of the shopping cart
// (client -gRPC-> sidecar -stream-> cart function on the sdk -> journal
// append -> reply) on warm carts, against raw JetStream CAS appends of a
// similar payload on the same embedded server in the same run, at 1 and 64
// concurrent carts. Everything shares the process and the machine's cores.
func BenchmarkAddItem(b *testing.B) {
	const perRound = 1000
	for _, carts := range []int{1, 64} {
		b.Run(fmt.Sprintf("entities=%d", carts), func(b *testing.B) {
			s := startSystemTB(b)
			users := make([]string, carts)
			for i := range users {
				users[i] = fmt.Sprint("bench-", i)
				if err := s.add(users[i], "warm", 1); err != nil {
					b.Fatal(err)
				}
			}
			raw := rawCAS(s.js, carts)
			cmd := func(_ context.Context, i int) error { return s.add(users[i], "apple", 1) }
			echo := grpcEcho(s.conn)
			var rawT, cmdT, echoT time.Duration
			var rawL, cmdL, echoL []time.Duration
			for b.Loop() {
				t, l, err := round(b.Context(), raw, carts, perRound)
				if err != nil {
					b.Fatal(err)
				}
				rawT, rawL = rawT+t, append(rawL, l...)
				if t, l, err = round(b.Context(), cmd, carts, perRound); err != nil {
					b.Fatal(err)
				}
				cmdT, cmdL = cmdT+t, append(cmdL, l...)
				if t, l, err = round(b.Context(), echo, carts, perRound); err != nil {
					b.Fatal(err)
				}
				echoT, echoL = echoT+t, append(echoL, l...)
			}
			rawRate, cmdRate := float64(len(rawL))/rawT.Seconds(), float64(len(cmdL))/cmdT.Seconds()
			echoRate := float64(len(echoL)) / echoT.Seconds()
			b.ReportMetric(rawRate, "raw-appends/s")
			b.ReportMetric(cmdRate, "commands/s")
			b.ReportMetric(cmdRate/rawRate, "commands/raw")
			b.ReportMetric(quantileUS(rawL, 0.5), "raw-p50-us")
			b.ReportMetric(quantileUS(rawL, 0.99), "raw-p99-us")
			b.ReportMetric(quantileUS(cmdL, 0.5), "cmd-p50-us")
			b.ReportMetric(quantileUS(cmdL, 0.99), "cmd-p99-us")
			// The floor of any design with the protocol's shape: a command
			// crosses two gRPC round trips (client-sidecar, sidecar-function)
			// besides the append, each at least a bare gRPC call.
			b.ReportMetric(echoRate/rawRate, "grpc-echo/raw")
			b.ReportMetric(quantileUS(echoL, 0.5), "grpc-echo-p50-us")
			b.ReportMetric(1/(1+2*rawRate/echoRate), "floor/raw")
		})
	}
}

// rawCAS is the baseline: one CAS publish per command, nothing else.
func rawCAS(js jetstream.JetStream, entities int) func(context.Context, int) error {
	last := make([]uint64, entities)
	payload := make([]byte, 40) // about an ItemAdded event
	cfg := streams.Config{Service: "shoppingcart"}
	return func(ctx context.Context, i int) error {
		msg := nats.NewMsg(cfg.Subject(streams.Entity{Type: "raw", Key: strconv.Itoa(i)}))
		msg.Data = payload
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last[i], 10))
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			return err
		}
		last[i] = ack.Sequence
		return nil
	}
}

// grpcEcho is a bare gRPC round trip to the sidecar (its health check):
// what one hop of the command path costs at the least.
func grpcEcho(conn *grpc.ClientConn) func(context.Context, int) error {
	return func(ctx context.Context, _ int) error {
		var resp healthpb.HealthCheckResponse
		return conn.Invoke(ctx, "/grpc.health.v1.Health/Check", &healthpb.HealthCheckRequest{}, &resp)
	}
}

// round runs n operations over entities, one goroutine per entity.
func round(ctx context.Context, op func(context.Context, int) error, entities, n int) (time.Duration, []time.Duration, error) {
	lats := make([][]time.Duration, entities)
	errs := make([]error, entities)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range entities {
		wg.Go(func() {
			for range n / entities {
				t0 := time.Now()
				if errs[i] = op(ctx, i); errs[i] != nil {
					return
				}
				lats[i] = append(lats[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for i := range entities {
		if errs[i] != nil {
			return 0, nil, errs[i]
		}
		all = append(all, lats[i]...)
	}
	return elapsed, all, nil
}

func quantileUS(l []time.Duration, q float64) float64 {
	s := slices.Clone(l)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds())
}

var (
	memCarts = flag.Int("sidecar-memory-carts", 10_000, "BenchmarkSidecarMemory: active carts")
	memLimit = flag.String("sidecar-gomemlimit", "", "BenchmarkSidecarMemory: GOMEMLIMIT of the sidecar process (e.g. 900MiB)")
	memBin   = flag.String("sidecar-bin", "", "BenchmarkSidecarMemory: a jetstate binary to measure (default: built from this tree), to compare versions")
)

// BenchmarkSidecarMemory runs `jetstate proxy` as its own process (NATS and
// the cart function stay in the test process, so what is measured is the
// sidecar's alone) and reports its resident memory idle and with 10,000
// active carts (-sidecar-memory-carts), each holding an open stream to the
// function, and, from the sidecar's own /metrics, how the growth splits
// into Go heap (in use) and goroutine stacks.
//
// Where it goes (heap and goroutine profiles of the sidecar process with
// 10,000 active carts, 2026-12-02). Before: ~28 KB per cart: 12.5 KB of
// goroutine stacks (two goroutines of ~6 KB: the entity's own loop and
// grpc-go's per-stream context watcher), a command queue allocated whole at
// activation (a channel of 100 requests, 5 KB), the gRPC stream to the
// function (3.7 KB of heap: grpc-go's clientStream, attempt, transport
// stream, their channels and contexts, the response headers), a logger, a
// timer and the activation's context kept by the stream's (~1 KB), and the
// garbage collector's headroom. After (an idle entity has no goroutine, a
// queue only while commands wait, no logger, no kept context): ~10 KB of
// RSS per cart, of which ~7 KB live (the heap after a collection 4.9 KB,
// the one goroutine's stack 2.1 KB): grpc-go's stream 5.7 KB (3.7 KB of
// heap, with the descriptor of its watcher goroutine, and that goroutine's
// 2 KB stack), the entity ~0.8 KB (struct, session, timer, its stream
// context); the rest is the heap's headroom between collections (GOGC;
// GOMEMLIMIT caps it).
func BenchmarkSidecarMemory(b *testing.B) {
	carts, bin := *memCarts, *memBin
	if bin == "" {
		bin = filepath.Join(b.TempDir(), "jetstate")
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/jetstate/jetstate/cmd/jetstate").CombinedOutput(); err != nil {
			b.Fatalf("build jetstate: %v\n%s", err, out)
		}
	}
	for b.Loop() {
		s := startSystemTB(b)
		s.stop() // the in-process sidecar; the process below replaces it
		port, admin := freePort(b), freePort(b)
		cmd := exec.Command(bin, "proxy", "-service", "shoppingcart", "-port", strconv.Itoa(port),
			"-admin", "127.0.0.1:"+strconv.Itoa(admin), "-user-function-host", "127.0.0.1",
			"-user-function-port", s.ufAddr[strings.LastIndexByte(s.ufAddr, ':')+1:],
			"-nats-url", s.nats.ClientURL(), "-passivation-timeout", "10m")
		if *memLimit != "" {
			cmd.Env = append(os.Environ(), "GOMEMLIMIT="+*memLimit)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", admin)); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatal("sidecar process not ready")
			}
		}
		idle, idleGo := processRSS(b, cmd.Process.Pid), goMemory(b, admin)
		conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for i := range carts {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				var c shoppingcart.Cart
				if err := conn.Invoke(b.Context(), svc+"GetCart", &shoppingcart.GetShoppingCart{UserId: fmt.Sprint("mem-", i)}, &c); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		active, activeGo := processRSS(b, cmd.Process.Pid), goMemory(b, admin)
		conn.Close()
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		n := float64(carts)
		b.ReportMetric(float64(idle)/(1<<20), "idle-rss-MiB")
		b.ReportMetric(float64(active)/(1<<20), "active-rss-MiB")
		b.ReportMetric(float64(active-idle)/n, "bytes/active-entity")
		b.ReportMetric((activeGo["go_memstats_heap_inuse_bytes"]-idleGo["go_memstats_heap_inuse_bytes"])/n, "heap-inuse-bytes/entity")
		b.ReportMetric((activeGo["go_memstats_stack_inuse_bytes"]-idleGo["go_memstats_stack_inuse_bytes"])/n, "stack-bytes/entity")
		b.ReportMetric((activeGo["go_goroutines"]-idleGo["go_goroutines"])/n, "goroutines/entity")
	}
}

// goMemory reads the sidecar's Go memory gauges from its /metrics.
func goMemory(b *testing.B, admin int) map[string]float64 {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", admin))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		name, value, ok := strings.Cut(line, " ")
		switch name {
		case "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines":
			if v, err := strconv.ParseFloat(value, 64); ok && err == nil {
				out[name] = v
			}
		}
	}
	if len(out) != 3 {
		b.Fatalf("sidecar /metrics lacks the Go memory gauges: %v", out)
	}
	return out
}

// processRSS reads VmRSS of a process, in bytes.
func processRSS(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
