package load

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	loadpb "github.com/jetstate/jetstate/protocol/jetstate/load"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

func TestLoadConcurrencyIsTimeWeighted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c concurrency
		start := time.Now()
		c.take(start) // the interval starts here
		// 0-1s: one in flight; 0.5-1s: a second one; 1-2s: none; one more
		// begins at 1.5 s and is still in flight at the take (2 s).
		c.begin()
		time.Sleep(500 * time.Millisecond)
		c.begin()
		time.Sleep(500 * time.Millisecond)
		c.end()
		c.end()
		time.Sleep(500 * time.Millisecond)
		c.begin()
		time.Sleep(500 * time.Millisecond)
		s := c.take(time.Now())
		if s.interval != 2*time.Second || s.area != 2*time.Second || s.count != 3 {
			t.Fatalf("sample = %+v, want interval 2s, area 2s (1+0.5+0.5), count 3", s)
		}
		if got := s.average(); got != 1.0 {
			t.Fatalf("average = %v, want 1", got)
		}
		// The next interval counts the one still in flight from its start.
		time.Sleep(time.Second)
		c.end()
		time.Sleep(time.Second)
		s = c.take(time.Now())
		if s.interval != 2*time.Second || s.area != time.Second || s.count != 0 || s.average() != 0.5 {
			t.Fatalf("second sample = %+v (avg %v), want interval 2s, area 1s, count 0, avg 0.5", s, s.average())
		}
		// Nothing happened: zero, not stale.
		time.Sleep(time.Second)
		if s = c.take(time.Now()); s.area != 0 || s.count != 0 || s.interval != time.Second {
			t.Fatalf("idle sample = %+v", s)
		}
	})
}

func TestLoadStoringMovesCommandFromFunctionToJournal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l Stats
		l.Report("m", "s", time.Now())
		l.requests.begin()
		l.function.begin()
		time.Sleep(300 * time.Millisecond) // the function works
		done := l.Storing()
		time.Sleep(600 * time.Millisecond) // the append
		done()
		time.Sleep(100 * time.Millisecond) // back in the entity loop
		l.function.end()
		l.requests.end()
		r := l.Report("m", "s", time.Now())
		if r.IntervalNanos != int64(time.Second) {
			t.Fatalf("interval %v", time.Duration(r.IntervalNanos))
		}
		if r.RequestConcurrency != 1 || r.RequestCount != 1 {
			t.Errorf("requests: concurrency %v count %d, want 1 and 1", r.RequestConcurrency, r.RequestCount)
		}
		if r.FunctionTimeNanos != int64(400*time.Millisecond) || r.FunctionCount != 1 {
			t.Errorf("function: time %v count %d, want 400ms and 1", time.Duration(r.FunctionTimeNanos), r.FunctionCount)
		}
		if r.JournalTimeNanos != int64(600*time.Millisecond) || r.JournalCount != 1 || r.JournalConcurrency != 0.6 {
			t.Errorf("journal: time %v count %d concurrency %v, want 600ms, 1, 0.6", time.Duration(r.JournalTimeNanos), r.JournalCount, r.JournalConcurrency)
		}
	})
}

// The reporter on a real server: reports arrive on the service's load
// subject every period and carry what was measured.
func TestLoadReporterPublishes(t *testing.T) {
	srv := streamstest.RunServer(t)
	nc := srv.Connect(t)
	storage := streams.Config{Prefix: "lt", Service: "cart"}
	sub, err := nc.SubscribeSync(storage.LoadSubjects())
	if err != nil {
		t.Fatal(err)
	}
	if sub.Subject != "lt_load.*" {
		t.Fatalf("wildcard %q", sub.Subject)
	}
	var stats Stats
	r := NewReporter(nc, storage, "host-1", &stats, 50*time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	stats.requests.begin() // one request held open throughout
	defer stats.requests.end()

	next := func() (*nats.Msg, *loadpb.Report) {
		t.Helper()
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rep loadpb.Report
		if err := proto.Unmarshal(msg.Data, &rep); err != nil {
			t.Fatal(err)
		}
		return msg, &rep
	}
	next() // the first interval may start before the request began
	for range 3 {
		msg, rep := next()
		if msg.Subject != "lt_load.cart" || rep.Member != "host-1" || rep.Service != "cart" {
			t.Fatalf("report on %s from %q of %q", msg.Subject, rep.Member, rep.Service)
		}
		if iv := time.Duration(rep.IntervalNanos); iv < 25*time.Millisecond || iv > 2*time.Second {
			t.Errorf("interval %v, want about 50ms", iv)
		}
		if c := rep.RequestConcurrency; c < 0.999 || c > 1.001 {
			t.Errorf("request concurrency %v, want 1 (one request open all along)", c)
		}
		if rep.RequestCount != 0 || rep.FunctionConcurrency != 0 {
			t.Errorf("report %v: nothing else happened", rep)
		}
	}
}
