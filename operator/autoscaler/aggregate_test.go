package autoscaler

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/protocol/jetstate/load"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// Reports published on a real server reach the aggregator under the
// subject's service; garbage is counted and dropped; other prefixes are
// not heard.
func TestAggregatorReadsReportsFromNATS(t *testing.T) {
	srv := streamstest.RunServer(t)
	nc := srv.Connect(t)
	reg := prometheus.NewRegistry()
	agg := NewAggregator(AggregatorConfig{Conn: srv.Connect(t), Prefix: "ag", Registry: reg})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- agg.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	publish := func(prefix, service string, r *load.Report) {
		t.Helper()
		data, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(streams.Config{Prefix: prefix, Service: service}.LoadSubject(), data); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Until the subscription is in place, reports are lost: repeat.
		publish("ag", "cart", &load.Report{Member: "a", IntervalNanos: int64(time.Second), FunctionConcurrency: 2, RequestCount: 5})
		publish("other", "cart", &load.Report{Member: "x", IntervalNanos: int64(time.Second), FunctionConcurrency: 9})
		if err := nc.Publish("ag_load.cart", []byte("not a report")); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		sum := agg.Summary("cart", time.Now(), time.Time{}, time.Minute, 6*time.Second)
		if sum.Members == 1 {
			if sum.FunctionConcurrency != 2 || sum.RequestRate != 5 {
				t.Fatalf("summary %+v, want a's report (2, 5/s)", sum)
			}
			break
		}
		if sum.Members > 1 || time.Now().After(deadline) {
			t.Fatalf("summary %+v, want exactly member a", sum)
		}
	}
	if n := testutil.ToFloat64(agg.reports.WithLabelValues("invalid")); n < 1 {
		t.Errorf("invalid reports counted: %v", n)
	}
}

func TestAggregatorRefusesBadReports(t *testing.T) {
	now := time.Now()
	ok := func() *load.Report {
		return &load.Report{Member: "a", IntervalNanos: int64(time.Second), FunctionConcurrency: 1}
	}
	for name, tc := range map[string]struct {
		service string
		r       func(r *load.Report)
	}{
		"no service":           {"", func(*load.Report) {}},
		"wildcard service":     {"a.b", func(*load.Report) {}},
		"no member":            {"cart", func(r *load.Report) { r.Member = "" }},
		"zero interval":        {"cart", func(r *load.Report) { r.IntervalNanos = 0 }},
		"huge interval":        {"cart", func(r *load.Report) { r.IntervalNanos = int64(time.Hour) }},
		"NaN concurrency":      {"cart", func(r *load.Report) { r.RequestConcurrency = math.NaN() }},
		"negative concurrency": {"cart", func(r *load.Report) { r.JournalConcurrency = -1 }},
		"infinite concurrency": {"cart", func(r *load.Report) { r.FunctionConcurrency = math.Inf(1) }},
		"negative count":       {"cart", func(r *load.Report) { r.RequestCount = -3 }},
	} {
		t.Run(name, func(t *testing.T) {
			agg := NewAggregator(AggregatorConfig{})
			r := ok()
			tc.r(r)
			if err := agg.record(tc.service, r, now); err == nil {
				t.Fatal("accepted")
			}
			if sum := agg.Summary(tc.service, now, time.Time{}, time.Minute, 6*time.Second); sum != (Summary{}) {
				t.Fatalf("summary %+v after a refused report", sum)
			}
		})
	}
}

// FuzzAggregatorHandle: whatever arrives on the load subject, the
// aggregator neither panics nor produces a summary that is not finite and
// non-negative.
func FuzzAggregatorHandle(f *testing.F) {
	good, _ := proto.Marshal(&load.Report{Member: "a", IntervalNanos: int64(time.Second), RequestConcurrency: 3, RequestCount: 7})
	f.Add("cart", good)
	f.Add("cart", []byte{0x19, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f}) // NaN
	f.Add("", []byte("junk"))
	f.Fuzz(func(t *testing.T, service string, data []byte) {
		agg := NewAggregator(AggregatorConfig{})
		now := time.Now()
		_ = agg.handle(service, data, now)
		_ = agg.handle(service, data, now.Add(time.Second))
		sum := agg.Summary(service, now.Add(time.Second), time.Time{}, time.Minute, 6*time.Second)
		for _, v := range []float64{sum.RequestConcurrency, sum.FunctionConcurrency, sum.JournalConcurrency, sum.RequestRate} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("summary %+v", sum)
			}
		}
		if sum.Members < 0 || sum.Members > 1 || sum.Covered < 0 {
			t.Fatalf("summary %+v", sum)
		}
	})
}
