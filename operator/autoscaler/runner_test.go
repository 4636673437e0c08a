package autoscaler

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func syncWait() { synctest.Wait() }

// Timelines of load through a real Aggregator and Runner, on the bubble's
// clock. The Runner ticks at 0, 2 s, 4 s...; replicas report at 0.5 s,
// 1.5 s...; defaults: step 2, scale-up stabilization 3 min, scale-down 30 s,
// windows 1 min and 6 s.

func TestScaleUpOnUserFunctionConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 6 commands in the function in total: 3 per replica on 2, 1.5 on 4,
		// 1 on 6.
		c := newCluster(t, 2, constant(work{function: 6, request: 8, rate: 100}))
		r, stop := c.simulate(Config{})
		defer stop()
		c.until(2*time.Second + time.Millisecond)
		wantHistory(t, c, "first decision", "2s:4")
		for _, m := range []struct {
			name      string
			got, want float64
		}{
			{"desired", testutil.ToFloat64(r.metrics.desired.WithLabelValues("cart")), 4},
			{"current", testutil.ToFloat64(r.metrics.current.WithLabelValues("cart")), 2},
			{"up decisions", testutil.ToFloat64(r.metrics.decisions.WithLabelValues("cart", "up")), 1},
			{"phase ScalingUp", testutil.ToFloat64(r.metrics.phase.WithLabelValues("cart", "ScalingUp")), 1},
			{"phase Stable", testutil.ToFloat64(r.metrics.phase.WithLabelValues("cart", "Stable")), 0},
			{"reporting members", testutil.ToFloat64(r.metrics.reporting.WithLabelValues("cart")), 2},
		} {
			if m.got != m.want {
				t.Errorf("metric %s = %v, want %v", m.name, m.got, m.want)
			}
		}
		if r := c.lastReason(); !strings.Contains(r, "user-function concurrency 3.00") || !strings.Contains(r, "capped, 6 wanted") {
			t.Errorf("reason %q", r)
		}
		// Concurrency stays above target (1.5 per replica), but the scale-up
		// stabilization holds until 182 s; then 6 s of fresh metrics decide.
		c.until(183 * time.Second)
		wantHistory(t, c, "during the stabilization", "2s:4")
		c.until(190 * time.Second)
		wantHistory(t, c, "after the stabilization", "2s:4", "3m4s:6")
		c.until(400 * time.Second)
		wantHistory(t, c, "at target", "2s:4", "3m4s:6")
	})
}

func TestScaleUpOnRequestConcurrencyLessJournal(t *testing.T) {
	t.Run("over target", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// 120 requests in flight per replica, 20 of them waiting on the
			// journal: 100 > 50.
			c := newCluster(t, 2, constant(work{function: 1, request: 240, journal: 40, rate: 1000}))
			_, stop := c.simulate(Config{})
			defer stop()
			c.until(3 * time.Second)
			wantHistory(t, c, "first decision", "2s:4")
			if r := c.lastReason(); !strings.Contains(r, "request concurrency (less journal) 100.00") {
				t.Errorf("reason %q", r)
			}
		})
	})
	t.Run("journal time does not count", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// 90 per replica, but 50 of them wait on the journal: 40 < 50,
			// and 2 replicas are needed for it, so no change either way.
			c := newCluster(t, 2, constant(work{function: 1, request: 180, journal: 100, rate: 1000}))
			_, stop := c.simulate(Config{})
			defer stop()
			c.until(5 * time.Minute)
			wantHistory(t, c, "after 5 min")
		})
	})
}

func TestStabilizationAfterScaleUp(t *testing.T) {
	t.Run("concurrency spike during handoff does not scale", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// 4 in the function over 2 replicas, then while shards move to
			// the new replicas (2 s..90 s) commands queue up: 20 in total.
			// Afterwards 4 over 4 replicas is on target.
			c := newCluster(t, 2, func(at time.Duration) work {
				if at > 2*time.Second && at < 90*time.Second {
					return work{function: 20, request: 30, rate: 40}
				}
				return work{function: 4, request: 6, rate: 40}
			})
			_, stop := c.simulate(Config{})
			defer stop()
			c.until(3 * time.Second)
			wantHistory(t, c, "first decision", "2s:4")
			c.until(10 * time.Minute)
			wantHistory(t, c, "after the spike", "2s:4")
		})
	})
	t.Run("request rate jump beyond the factor scales", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// 40 requests/s when scaling 2 -> 4 (sized for 10/s per replica).
			// At 30 s the rate grows to 100/s (2.5x > 1.5x) and concurrency
			// stays high: scale on, to 100/10 = 10 wanted, capped to 6.
			c := newCluster(t, 2, func(at time.Duration) work {
				if at > 30*time.Second {
					return work{function: 20, request: 30, rate: 100}
				}
				return work{function: 4, request: 6, rate: 40}
			})
			_, stop := c.simulate(Config{})
			defer stop()
			c.until(30 * time.Second)
			wantHistory(t, c, "before the jump", "2s:4")
			c.until(40 * time.Second)
			got := c.history()
			if len(got) != 2 || !strings.HasSuffix(got[1], ":6") {
				t.Fatalf("scale calls %v, want a second scale-up to 6 soon after 30 s", got)
			}
			// Sized for 100/s now: the same rate does not scale again.
			c.until(3 * time.Minute)
			if got := c.history(); len(got) != 2 {
				t.Fatalf("scale calls %v, want no third one at the same rate", got)
			}
			if r := c.lastReason(); !strings.Contains(r, "request rate") || !strings.Contains(r, "stabilization restarts") {
				t.Errorf("reason %q", r)
			}
		})
	})
	t.Run("request rate below the factor does not scale", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newCluster(t, 2, func(at time.Duration) work {
				if at > 30*time.Second {
					return work{function: 20, request: 30, rate: 56} // 1.4x
				}
				return work{function: 4, request: 6, rate: 40}
			})
			_, stop := c.simulate(Config{})
			defer stop()
			c.until(182 * time.Second)
			wantHistory(t, c, "during the stabilization", "2s:4")
		})
	})
}

func TestScaleDownAfterTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 0.8 in the function in total over 4 replicas: one would do. A
		// scale-down needs a full minute of data (the first report covers
		// -0.5..0.5 s): 4 -> 2 at 60 s, then 30 s of scale-down
		// stabilization; at 90 s only the last 6 s are kept, so the next
		// full minute is there at 144 s: 2 -> 1.
		c := newCluster(t, 4, constant(work{function: 0.8, request: 2, rate: 10}))
		_, stop := c.simulate(Config{})
		defer stop()
		c.until(59 * time.Second)
		wantHistory(t, c, "before a full window")
		c.until(61 * time.Second)
		wantHistory(t, c, "after a full window", "1m0s:2")
		c.until(143 * time.Second)
		wantHistory(t, c, "before the next full window", "1m0s:2")
		c.until(10 * time.Minute)
		wantHistory(t, c, "at the minimum", "1m0s:2", "2m24s:1")
	})
}

func TestMinMax(t *testing.T) {
	t.Run("below min without load", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newCluster(t, 1, constant(work{}))
			c.policy = Policy{Min: 3, Max: 5}
			c.silent = 1 // no reports at all: bounds need none
			_, stop := c.simulate(Config{})
			defer stop()
			c.until(time.Second)
			wantHistory(t, c, "first tick", "0s:3")
			c.until(2 * time.Minute)
			wantHistory(t, c, "idle at the minimum", "0s:3")
		})
	})
	t.Run("above max", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newCluster(t, 8, constant(work{function: 8}))
			c.policy = Policy{Max: 5}
			_, stop := c.simulate(Config{})
			defer stop()
			c.until(time.Second)
			wantHistory(t, c, "first tick", "0s:5")
		})
	})
	t.Run("scale-up stops at max", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newCluster(t, 2, constant(work{function: 40, rate: 10}))
			c.policy = Policy{Max: 3, MaxScaleStep: -1}
			_, stop := c.simulate(Config{})
			defer stop()
			c.until(10 * time.Minute)
			wantHistory(t, c, "overloaded", "2s:3")
		})
	})
}

func TestNoDecisionsDuringRollout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 2, constant(work{function: 6, rate: 10}))
		c.rollingOut = true
		_, stop := c.simulate(Config{})
		defer stop()
		c.until(59 * time.Second)
		wantHistory(t, c, "during the rollout")
		c.set(func(c *cluster) { c.rollingOut = false })
		// The tick at 60 s leaves Upgrading and drops what was measured
		// during the rollout; the reports of 60.5 and 61.5 s decide at 62 s.
		c.until(63 * time.Second)
		wantHistory(t, c, "after the rollout", "1m2s:4")
	})
}

func TestWaitsForReportsOfAllReplicas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 3 ready replicas, one of them silent: the decision waits for
		// ReportTimeout (10 s from the first tick that missed it, at 0 s)
		// and then goes by the two that report (3 per replica -> 6 wanted,
		// capped to 5).
		c := newCluster(t, 3, constant(work{function: 9, rate: 30}))
		c.silent = 1
		_, stop := c.simulate(Config{})
		defer stop()
		c.until(9 * time.Second)
		wantHistory(t, c, "waiting")
		c.until(11 * time.Second)
		wantHistory(t, c, "after the timeout", "10s:5")
		if r := c.lastReason(); !strings.Contains(r, "only 2 of 3 ready replicas report") {
			t.Errorf("reason %q", r)
		}
	})
}

func TestMemberDropsOutWhenSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		agg := NewAggregator(AggregatorConfig{})
		report := func(member string, fn float64) {
			if err := agg.record("cart", reportOf(member, fn), time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		for range 5 {
			report("a", 1)
			report("b", 3)
			time.Sleep(time.Second)
		}
		sum := agg.Summary("cart", time.Now(), time.Time{}, time.Minute, 6*time.Second)
		if sum.Members != 2 || sum.FunctionConcurrency != 2 {
			t.Fatalf("summary %+v, want 2 members at 2 on average", sum)
		}
		// b stops: it still counts for 3 periods, then drops out (with its
		// samples: its load moved to the others).
		for i := range 5 {
			report("a", 1)
			time.Sleep(time.Second)
			sum = agg.Summary("cart", time.Now(), time.Time{}, time.Minute, 6*time.Second)
			wantMembers := 2
			if i >= 2 {
				wantMembers = 1
			}
			if sum.Members != wantMembers {
				t.Fatalf("%d s after b's last report: %d members, want %d", i+1, sum.Members, wantMembers)
			}
		}
		if sum.FunctionConcurrency != 1 || sum.RequestRate != 10 {
			t.Fatalf("summary %+v, want a's alone (1, 10/s)", sum)
		}
	})
}

// Several Runners and Aggregators (one per store) share one registry.
func TestMetricsShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newCluster(t, 2, constant(work{}))
	for range 2 {
		agg := NewAggregator(AggregatorConfig{Registry: reg})
		if _, err := New(Config{Target: c, Loads: agg, Registry: reg}); err != nil {
			t.Fatal(err)
		}
	}
	r1, _ := New(Config{Target: c, Loads: NewAggregator(AggregatorConfig{}), Registry: reg})
	r2, _ := New(Config{Target: c, Loads: NewAggregator(AggregatorConfig{}), Registry: reg})
	r1.metrics.decided("a", 1, 2)
	r2.metrics.decided("a", 2, 3)
	if n := testutil.ToFloat64(r1.metrics.decisions.WithLabelValues("a", "up")); n != 2 {
		t.Fatalf("decisions counted %v, want 2 (one collector)", n)
	}
}
