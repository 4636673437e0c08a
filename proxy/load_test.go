package proxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/operator/autoscaler"
	"github.com/jetstate/jetstate/protocol/jetstate/load"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/streams"
)

// A real sidecar reports the requests, function calls and journal work of
// real commands.
func TestLoadReportsOfSidecar(t *testing.T) {
	h := startHarness(t, nil)
	sub, err := h.js.Conn().SubscribeSync(streams.Config{Service: "test"}.LoadSubject())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.StartLoadReports(t.Context(), h.p, 100*time.Millisecond)()

	h.mustCall("Counter/Add", "a", ptr(2), 2) // activation (load) + command + append
	h.mustCall("Counter/Add", "a", ptr(3), 5)
	h.mustCall("Counter/Get", "a", nil, 5)

	var total load.Report
	deadline := time.Now().Add(10 * time.Second)
	for total.RequestCount < 3 || total.FunctionCount < 3 || total.JournalCount < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("reports so far add up to %v; want 3 requests, 3 function calls, 3 journal operations (1 load, 2 appends)", &total)
		}
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rep load.Report
		if err := proto.Unmarshal(msg.Data, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Member != proxy.MemberID(h.p) || rep.Service != "test" {
			t.Fatalf("report from %q of %q, want %q of test", rep.Member, rep.Service, proxy.MemberID(h.p))
		}
		total.RequestCount += rep.RequestCount
		total.RequestTimeNanos += rep.RequestTimeNanos
		total.FunctionCount += rep.FunctionCount
		total.FunctionTimeNanos += rep.FunctionTimeNanos
		total.JournalCount += rep.JournalCount
		total.JournalTimeNanos += rep.JournalTimeNanos
	}
	if total.RequestCount != 3 || total.FunctionCount != 3 || total.JournalCount != 3 {
		t.Errorf("reports add up to %v; want exactly 3, 3 and 3", &total)
	}
	// Requests contain the function's and the journal's time.
	if total.RequestTimeNanos < total.FunctionTimeNanos+total.JournalTimeNanos {
		t.Errorf("request time %v < function %v + journal %v", time.Duration(total.RequestTimeNanos),
			time.Duration(total.FunctionTimeNanos), time.Duration(total.JournalTimeNanos))
	}
}

// Two real sidecars' reports reach the operator's aggregator over NATS; a
// sidecar that stops reporting drops out after three of its periods.
func TestLoadReportsReachAutoscaler(t *testing.T) {
	h := startHarness(t, nil)
	p1 := h.p
	defer proxy.StartLoadReports(t.Context(), p1, 100*time.Millisecond)()
	h.startProxy(nil)
	stop2 := proxy.StartLoadReports(t.Context(), h.p, 100*time.Millisecond)
	defer stop2()

	agg := autoscaler.NewAggregator(autoscaler.AggregatorConfig{Conn: h.js.Conn()})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- agg.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	summary := func() autoscaler.Summary {
		return agg.Summary("test", time.Now(), time.Time{}, time.Minute, 6*time.Second)
	}
	for i := range 10 {
		h.mustCall("Counter/Add", fmt.Sprint("k", i), ptr(1), 1)
	}
	waitFor(t, "two members and the requests", func() bool {
		s := summary()
		return s.Members == 2 && s.RequestRate > 0 && s.FunctionConcurrency > 0
	})
	// Run reports too (every second): stop the second sidecar altogether.
	stop2()
	h.stop()
	waitFor(t, "the silent sidecar to drop out", func() bool { return summary().Members == 1 })
}
