package autoscaler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetstate/jetstate/protocol/jetstate/load"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// These tests talk to a real nats-server, so they run outside synctest
// bubbles (network I/O is not durably blocking, and a bubble's channels may
// not be used by the NATS client's goroutines); the Runner is driven one
// tick at a time with explicit times instead.

func TestStoreSaveLoadConflict(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	ctx := t.Context()
	st, err := NewStore(ctx, js, StoreConfig{Prefix: "at"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.KeyValue(ctx, "at_autoscaler"); err != nil {
		t.Fatalf("bucket: %v", err)
	}
	got, rev, err := st.Load(ctx, "my.cart")
	if err != nil || rev != 0 || got != (State{}) {
		t.Fatalf("Load of a new service = %+v, %d, %v", got, rev, err)
	}
	now := time.Now().Round(0)
	want := State{Phase: ScalingUp, Since: now, Desired: 4, RatePerReplica: 2.5, Deadline: now.Add(3 * time.Minute)}
	rev1, err := st.Save(ctx, "my.cart", want, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Save(ctx, "my.cart", want, 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	got, rev, err = st.Load(ctx, "my.cart")
	if err != nil || rev != rev1 {
		t.Fatalf("Load = rev %d, %v; want %d", rev, err, rev1)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("loaded state (-want +got):\n%s", d)
	}
	want.Phase = Stable
	if _, err := st.Save(ctx, "my.cart", want, rev1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Save(ctx, "my.cart", want, rev1); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v, want ErrConflict", err)
	}
	for range 2 { // deleting twice is fine
		if err := st.Delete(ctx, "my.cart"); err != nil {
			t.Fatal(err)
		}
	}
	if got, rev, err := st.Load(ctx, "my.cart"); err != nil || rev != 0 || got != (State{}) {
		t.Fatalf("Load after Delete = %+v, %d, %v", got, rev, err)
	}
	if _, err := st.Save(ctx, "my.cart", want, 0); err != nil {
		t.Fatalf("create after Delete: %v", err)
	}
}

// feed records one second of reports from replicas members at now; the
// service gets 60 requests/s, shared among them.
func feed(t *testing.T, agg *Aggregator, replicas int, fnPerReplica float64, now time.Time) {
	t.Helper()
	for i := range replicas {
		r := &load.Report{Member: string(rune('a' + i)), IntervalNanos: int64(time.Second), FunctionConcurrency: fnPerReplica, RequestCount: int64(60 / replicas)}
		if err := agg.record("cart", r, now); err != nil {
			t.Fatal(err)
		}
	}
}

// recorder is a Target of one service that records its scale calls.
type recorder struct {
	svc    Service
	scales []int
}

func (r *recorder) Services(context.Context) ([]Service, error) { return []Service{r.svc}, nil }
func (r *recorder) Scale(_ context.Context, _ Service, n int, _ string) error {
	r.scales = append(r.scales, n)
	r.svc.Replicas, r.svc.Ready = n, n
	return nil
}

// runFrom feeds agg one report per replica per second from `from` to `to`
// and ticks r every 2 s in between.
func runFrom(t *testing.T, r *Runner, target *recorder, agg *Aggregator, fn float64, from, to time.Time) {
	t.Helper()
	for now := from; now.Before(to); now = now.Add(time.Second) {
		feed(t, agg, target.svc.Replicas, fn, now)
		if now.Sub(from)%(2*time.Second) == 0 {
			if err := r.tick(t.Context(), now); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestStateResumedAfterRestart(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	newRunner := func(target *recorder, agg *Aggregator, persist bool) *Runner {
		t.Helper()
		cfg := Config{Target: target, Loads: agg}
		if persist {
			st, err := NewStore(t.Context(), js, StoreConfig{})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Store = st
		}
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	t0 := time.Now().Round(0)
	// Overloaded at 2 replicas: scale to 4; the stabilization runs to t0+3m.
	target := &recorder{svc: Service{Name: "cart", Replicas: 2, Ready: 2}}
	agg := NewAggregator(AggregatorConfig{})
	runFrom(t, newRunner(target, agg, true), target, agg, 4, t0, t0.Add(10*time.Second))
	if len(target.scales) != 1 || target.scales[0] != 4 {
		t.Fatalf("scales %v, want [4]", target.scales)
	}

	// The operator restarts at t0+60s, with fresh (empty) load windows and
	// shards still moving: 4 per replica.
	t1 := t0.Add(time.Minute)
	agg = NewAggregator(AggregatorConfig{})
	target.scales = nil
	runFrom(t, newRunner(target, agg, true), target, agg, 4, t1, t1.Add(30*time.Second))
	if len(target.scales) != 0 {
		t.Fatalf("after a restart during the scale-up stabilization: scales %v, want none", target.scales)
	}
	// Without the stored state the same timeline would have scaled: the
	// test above can tell.
	mem := &recorder{svc: target.svc}
	memAgg := NewAggregator(AggregatorConfig{})
	runFrom(t, newRunner(mem, memAgg, false), mem, memAgg, 4, t1, t1.Add(30*time.Second))
	if len(mem.scales) == 0 {
		t.Fatal("an autoscaler without state did not scale either: the restart test proves nothing")
	}

	// Once the resumed deadline (t0+3m) passed, the resumed runner decides.
	r := newRunner(target, agg, true)
	runFrom(t, r, target, agg, 4, t1.Add(30*time.Second), t0.Add(4*time.Minute))
	if len(target.scales) != 1 || target.scales[0] != 6 {
		t.Fatalf("after the resumed stabilization: scales %v, want [6]", target.scales)
	}
}

func TestConcurrentRunnersCannotBothDecide(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	agg := NewAggregator(AggregatorConfig{})
	t0 := time.Now().Round(0)
	feed(t, agg, 2, 4, t0)
	mk := func(target *recorder) *Runner {
		st, err := NewStore(t.Context(), js, StoreConfig{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(Config{Target: target, Loads: agg, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a := &recorder{svc: Service{Name: "cart", Replicas: 2, Ready: 2}}
	b := &recorder{svc: a.svc}
	ra, rb := mk(a), mk(b)
	// Both have read the (empty) state before either decides.
	for _, r := range []*Runner{ra, rb} {
		if _, err := r.state(t.Context(), "cart"); err != nil {
			t.Fatal(err)
		}
	}
	if err := ra.tick(t.Context(), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	err := rb.tick(t.Context(), t0.Add(time.Second))
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "cart") {
		t.Fatalf("second runner: %v, want ErrConflict", err)
	}
	if len(a.scales) != 1 || len(b.scales) != 0 {
		t.Fatalf("scales a=%v b=%v, want one decision by a only", a.scales, b.scales)
	}
	// b re-reads and sees a's decision: it stays in a's stabilization.
	feed(t, agg, 4, 4, t0.Add(2*time.Second))
	b.svc = a.svc
	if err := rb.tick(t.Context(), t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if len(b.scales) != 0 {
		t.Fatalf("b scaled %v during a's stabilization", b.scales)
	}
}
