package projections_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/projections"
)

// TestServerDownWhileStartingOver: the NATS server stops while the sink
// holds an event; published then, it finds the connection down, and the
// projector starts over from its ack floor while the server is still down.
// It keeps trying to set its consumer up (it used to return from Run) and,
// once the server is back, delivers every event, each entity's in order. A
// stream captures the sink's subject, so that nothing published is missed.
func TestServerDownWhileStartingOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const entities, rounds = 10, 300
	want := appendMany(t, e, entities, rounds)
	if _, err := e.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "VIEW", Subjects: []string{"view.events"}}); err != nil {
		t.Fatal(err)
	}
	natsSink, err := projections.NewNATSSink(e.js.Conn(), projections.NATSSinkConfig{Subject: "view.events"})
	if err != nil {
		t.Fatal(err)
	}
	// The 100th event is held until the server is down: its publish then
	// finds the connection down, and the projector starts over.
	held, release := make(chan struct{}), make(chan struct{})
	var sent atomic.Int64
	sink := projections.SinkFunc(func(ctx context.Context, ev *event.Event) error {
		if sent.Add(1) == 100 {
			close(held)
			<-release
		}
		return natsSink.Send(ctx, ev)
	})
	retrying := make(chan struct{})
	var retried sync.Once
	cfg := e.config("view", sink)
	cfg.MaxTries = 1_000_000 // publishes fail while the server is down: never dead-letter
	cfg.Logger = slog.New(slog.NewTextHandler(logWatch{t: t, on: "consumer not reachable", seen: func() { retried.Do(func() { close(retrying) }) }}, nil))
	p, err := projections.New(e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pr := run(t, p.Run)

	<-held
	e.srv.Stop()
	waitUntil(t, "the projector's connection down", func() bool { return !e.js.Conn().IsConnected() })
	close(release)
	waitUntil(t, "the projector retrying its consumer", func() bool {
		select {
		case <-retrying:
			return true
		default:
			return false
		}
	})
	e.srv.Start()
	waitUntil(t, "the test's connection back", e.js.Conn().IsConnected)

	rec := newRecorder()
	cons, err := e.js.OrderedConsumer(t.Context(), "VIEW", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := projections.EventFromNATS(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
		if err != nil {
			t.Errorf("EventFromNATS: %v", err)
			return
		}
		rec.add(ev, m.Data())
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	evs := rec.waitCount(t, entities*rounds)
	if err := pr.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkOrder(t, evs, want)
}

// logWatch passes log lines to the test's log and calls seen for one that
// contains on.
type logWatch struct {
	t    *testing.T
	on   string
	seen func()
}

func (w logWatch) Write(b []byte) (int, error) {
	line := strings.TrimSuffix(string(b), "\n")
	w.t.Log(line)
	if strings.Contains(line, w.on) {
		w.seen()
	}
	return len(b), nil
}
