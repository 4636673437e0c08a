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
