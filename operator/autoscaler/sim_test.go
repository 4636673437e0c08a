package autoscaler

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetstate/jetstate/protocol/jetstate/load"
)

// work is a service's total load at a moment; every reporting replica
// reports an equal share of it (more replicas: less each).
type work struct {
	function float64 // commands in the user function, all replicas together
	request  float64 // requests in the sidecars
	journal  float64 // store operations
	rate     float64 // requests per second
}

// scaled is one Target.Scale call, at a time since the start.
type scaled struct {
	at       time.Duration
	replicas int
	reason   string
}

// cluster is a simulated service for the Runner, to be used inside a
// synctest bubble: it is the Target, and its replicas' sidecars report
// load into an Aggregator every second (offset by half a second from the
// Runner's ticks, so that the order of events is unambiguous).
type cluster struct {
	t     *testing.T
	name  string
	start time.Time

	mu         sync.Mutex
	policy     Policy
	replicas   int
	rollingOut bool
	silent     int                         // ready replicas that do not report
	load       func(at time.Duration) work // the total load over time
	scales     []scaled
}

func newCluster(t *testing.T, replicas int, load func(at time.Duration) work) *cluster {
	return &cluster{t: t, name: "cart", start: time.Now(), replicas: replicas, load: load}
}

func (c *cluster) Services(context.Context) ([]Service, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return []Service{{Name: c.name, Policy: c.policy, Replicas: c.replicas, Ready: c.replicas, RollingOut: c.rollingOut}}, nil
}

func (c *cluster) Scale(_ context.Context, svc Service, replicas int, reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if svc.Name != c.name || replicas <= 0 || reason == "" {
		c.t.Errorf("Scale(%q, %d, %q)", svc.Name, replicas, reason)
	}
	c.scales = append(c.scales, scaled{at: time.Since(c.start), replicas: replicas, reason: reason})
	c.replicas = replicas
	return nil
}

func (c *cluster) set(f func(c *cluster)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

// report records, every second, one report per reporting replica.
func (c *cluster) report(ctx context.Context, agg *Aggregator) {
	time.Sleep(500 * time.Millisecond)
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for {
		c.mu.Lock()
		n := c.replicas - c.silent
		w := c.load(time.Since(c.start))
		c.mu.Unlock()
		for i := range n {
			share := 1 / float64(c.replicas)
			err := agg.record(c.name, &load.Report{
				Member: fmt.Sprintf("m%d", i), Service: c.name, IntervalNanos: int64(time.Second),
				RequestConcurrency: w.request * share, FunctionConcurrency: w.function * share, JournalConcurrency: w.journal * share,
				RequestCount: int64(w.rate * share),
			}, time.Now())
			if err != nil {
				c.t.Error(err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// history is the scale calls so far, as "at:replicas" strings.
func (c *cluster) history() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.scales {
		out = append(out, fmt.Sprintf("%v:%d", s.at, s.replicas))
	}
	return out
}

func (c *cluster) lastReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.scales) == 0 {
		return ""
	}
	return c.scales[len(c.scales)-1].reason
}

// simulate runs the cluster and a Runner (ticking at 0, 2 s, 4 s, ...)
// inside the current synctest bubble; stop ends both and waits.
func (c *cluster) simulate(cfg Config) (r *Runner, stop func()) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	agg := NewAggregator(AggregatorConfig{})
	cfg.Target, cfg.Loads = c, agg
	r, err := New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.report(ctx, agg) })
	wg.Go(func() {
		if err := r.Run(ctx); err != nil {
			c.t.Error(err)
		}
	})
	return r, func() { cancel(); wg.Wait() }
}

// until advances the bubble's clock to at (since the start) and lets every
// goroutine settle.
func (c *cluster) until(at time.Duration) {
	time.Sleep(at - time.Since(c.start))
	syncWait()
}

func wantHistory(t *testing.T, c *cluster, when string, want ...string) {
	t.Helper()
	got := c.history()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%s: scale calls %v, want %v (last reason: %s)", when, got, want, c.lastReason())
	}
}

func constant(w work) func(time.Duration) work { return func(time.Duration) work { return w } }

// reportOf is a one-second report with fn commands in the function and 10
// requests.
func reportOf(member string, fn float64) *load.Report {
	return &load.Report{Member: member, Service: "cart", IntervalNanos: int64(time.Second), FunctionConcurrency: fn, RequestCount: 10}
}
