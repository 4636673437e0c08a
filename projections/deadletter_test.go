package projections_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// TestDeadLetterTooLarge: an event that fills the server's max payload and
// that the sink refuses is dead-lettered without its data (the dead
// letter's headers would push it over the limit, and the projection
// retried its publication for ever while the entity's next events waited);
// a header says how much data was left out, and the entity flows on.
func TestDeadLetterTooLarge(t *testing.T) {
	t.Parallel()
	const maxPayload = 16 << 10
	srv := streamstest.RunServer(t, streamstest.WithMaxPayload(maxPayload))
	js := srv.JetStream(t)
	storage := streams.Config{Service: "shop"}
	if err := streams.Provision(t.Context(), js, storage, streams.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq.>"}}); err != nil {
		t.Fatal(err)
	}
	j, err := streams.NewJournal(js, storage)
	if err != nil {
		t.Fatal(err)
	}
	ent := streams.Entity{Type: "cart", Key: "a"}
	// The largest event the journal takes: its message just fits.
	var v streams.Version
	size := maxPayload
	for ; size > 0; size -= 8 {
		big := streams.Event{Type: "type.googleapis.com/big", Data: bytes.Repeat([]byte{'x'}, size)}
		if v, err = j.Append(t.Context(), ent, streams.Version{}, []streams.Event{big}); err == nil {
			break
		}
		if !errors.Is(err, streams.ErrTooLarge) {
			t.Fatal(err)
		}
	}
	if _, err := j.Append(t.Context(), ent, v, []streams.Event{strEvent("after")}); err != nil {
		t.Fatal(err)
	}

	rec := newRecorder()
	sink := projections.SinkFunc(func(_ context.Context, ev *event.Event) error {
		if ev.Type() == "big" {
			return projections.ErrRejected
		}
		rec.add(ev, nil)
		return nil
	})
	cfg := projections.Config{Storage: storage, Name: "view", Sink: sink, DeadLetterSubject: "dlq.shop.view",
		InfoInterval: 50 * time.Millisecond, RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, SendTimeout: 2 * time.Second}
	p, err := projections.New(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)
	if evs := rec.waitCount(t, 1); evs[0].Subject() != "a" || seqOf(t, evs[0]) != 2 {
		t.Fatalf("delivered %v", evs[0])
	}
	cons, err := js.OrderedConsumer(t.Context(), "DLQ", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	h := m.Headers()
	if h.Get(projections.HeaderCause) != "rejected" || h.Get(projections.HeaderStreamSeq) != strconv.FormatUint(v.StreamSeq, 10) ||
		h.Get(projections.HeaderDataOmitted) != strconv.Itoa(size) || len(m.Data()) != 0 {
		t.Fatalf("dead letter: headers %v, %d bytes of data", h, len(m.Data()))
	}
}

// TestNATSSinkTooLarge: an event larger than the sink's stream takes is
// rejected at the first try (retrying cannot help) and dead-lettered; the
// entity flows on.
func TestNATSSinkTooLarge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, sc := range []jetstream.StreamConfig{
		{Name: "OUT", Subjects: []string{"out.>"}, MaxMsgSize: 4 << 10},
		{Name: "DLQ", Subjects: []string{"dlq.>"}},
	} {
		if _, err := e.js.CreateStream(t.Context(), sc); err != nil {
			t.Fatal(err)
		}
	}
	ent := streams.Entity{Type: "cart", Key: "a"}
	big := e.appendEvents(t, ent, streams.Event{Type: "type.googleapis.com/big", Data: bytes.Repeat([]byte{'x'}, 8<<10)})
	e.appendEvents(t, ent, strEvent("small"))
	sink, err := projections.NewNATSSink(e.srv.Connect(t), projections.NATSSinkConfig{Subject: "out.events", JetStream: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config("view", sink)
	cfg.DeadLetterSubject = "dlq.shop.view"
	cfg.MaxTries = 5
	p, err := projections.New(e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)
	waitStatus(t, p, func(st []projections.GenerationStatus) bool {
		return st[0].Pending == 0 && st[0].AckPending == 0 && st[0].AckFloor == big.StreamSeq+1
	})
	out, err := e.js.Stream(t.Context(), "OUT")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := out.Info(t.Context()); err != nil || info.State.Msgs != 1 {
		t.Errorf("sink's stream: %+v, %v; want the small event only", info.State, err)
	}
	cons, err := e.js.OrderedConsumer(t.Context(), "DLQ", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	h := m.Headers()
	if h.Get(projections.HeaderCause) != "rejected" || h.Get(projections.HeaderTries) != "1" ||
		h.Get(projections.HeaderStreamSeq) != strconv.FormatUint(big.StreamSeq, 10) {
		t.Errorf("dead letter: %v", h)
	}
}
