package projections_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
)

// appendMany appends n single-event commands to each of the entities
// cart/k0..k<entities-1>, interleaved, and returns the last seq per key.
func appendMany(t *testing.T, e *env, entities, n int) map[string]uint64 {
	t.Helper()
	want := map[string]uint64{}
	for i := range n {
		for k := range entities {
			key := "k" + strconv.Itoa(k)
			e.appendEvents(t, streams.Entity{Type: "cart", Key: key}, strEvent(fmt.Sprintf("%s-%d", key, i+1)))
			want[key] = uint64(i + 1)
		}
	}
	return want
}

// metricValue sums a metric's samples in reg (counters and gauges).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestSinkFailsThenRecovers: the sink answers 500 and 503 and times out
// for a while, then recovers. Nothing is lost, nothing is accepted twice,
// and every entity's events are accepted in order.
func TestSinkFailsThenRecovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	want := appendMany(t, e, 20, 10)
	h := newHTTPTarget(t)
	var calls atomic.Int64
	h.setRespond(func(ev *event.Event) int {
		switch n := calls.Add(1); {
		case n > 150:
			return http.StatusOK
		case n%3 == 0:
			time.Sleep(300 * time.Millisecond) // past SendTimeout
			return http.StatusInternalServerError
		case n%3 == 1:
			return http.StatusServiceUnavailable
		default:
			return http.StatusInternalServerError
		}
	})
	sink, err := projections.NewHTTPSink(projections.HTTPSinkConfig{Target: h.URL})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := e.config("view", sink)
	cfg.Workers = 4
	cfg.MaxTries = 1000
	cfg.SendTimeout = 100 * time.Millisecond
	cfg.Registry = reg
	p, err := projections.New(e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pr := run(t, p.Run)
	// More events while the sink is failing.
	for k := range 20 {
		key := "k" + strconv.Itoa(k)
		e.appendEvents(t, streams.Entity{Type: "cart", Key: key}, strEvent(key+"-11"))
		want[key] = 11
	}
	h.rec.waitCount(t, 20*11)
	waitUntil(t, "the projector to see every event accepted", func() bool {
		return metricValue(t, reg, "jetstate_projection_events_delivered_total") >= 220
	})
	// Once the projector has stopped and the target has answered every
	// request it received, nothing more can arrive.
	if err := pr.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	h.Close()
	evs := h.rec.snapshot()
	// A 200 that reaches the projector after its 100 ms send timeout (a
	// loaded machine) is a failed try, so that event is sent again: at
	// least once allows it, as a repeat of the same id in order.
	ids := map[string]bool{}
	for _, ev := range evs {
		ids[ev.ID()] = true
	}
	if len(ids) != 20*11 {
		t.Errorf("sink accepted %d distinct events, want %d", len(ids), 20*11)
	}
	if dups := len(evs) - len(ids); dups > 0 {
		t.Logf("%d events accepted twice (an answer later than the send timeout)", dups)
	}
	checkOrder(t, evs, want)
	if f := metricValue(t, reg, "jetstate_projection_send_failures_total"); f < 150 {
		t.Errorf("send failures metric %v, want >= 150", f)
	}
	if d := metricValue(t, reg, "jetstate_projection_events_delivered_total"); d != 220 {
		t.Errorf("delivered metric %v, want 220", d)
	}
	if d := metricValue(t, reg, "jetstate_projection_events_dead_lettered_total"); d != 0 {
		t.Errorf("dead-lettered metric %v, want 0", d)
	}
}

// TestSlowEntity: one entity's sends hang; every other entity's events
// still arrive, and the slow one's follow in order once it is released.
func TestSlowEntity(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	want := appendMany(t, e, 10, 5)
	release := make(chan struct{})
	rec := newRecorder()
	sink := projections.SinkFunc(func(ctx context.Context, ev *event.Event) error {
		if ev.Subject() == "k3" {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		rec.add(ev, nil)
		return nil
	})
	cfg := e.config("view", sink)
	cfg.Workers = 2
	cfg.SendTimeout = time.Minute
	p, err := projections.New(e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)
	evs := rec.waitCount(t, 45)
	for _, ev := range evs {
		if ev.Subject() == "k3" {
			t.Errorf("event of the blocked entity delivered: %s", ev.ID())
		}
	}
	close(release)
	evs = rec.waitCount(t, 50)
	checkOrder(t, evs, want)
}

// TestRestartResumes kills a projector mid-stream (its connection closes
// under it, acks in flight are lost) and starts another: every event
// arrives, each entity in order without a gap, and redelivered events are
// identical to the first copy, id included.
func TestRestartResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	want := appendMany(t, e, 30, 20)
	h := newHTTPTarget(t)
	h.setRespond(func(*event.Event) int { time.Sleep(time.Millisecond); return http.StatusOK })
	sink, err := projections.NewHTTPSink(projections.HTTPSinkConfig{Target: h.URL})
	if err != nil {
		t.Fatal(err)
	}
	nc1, js1 := e.newJS(t)
	p1, err := projections.New(js1, e.config("view", sink))
	if err != nil {
		t.Fatal(err)
	}
	run1 := run(t, p1.Run)
	h.rec.waitCount(t, 200)
	nc1.Close()     // the process dies
	_ = run1.stop() // its error: the connection closed under it
	first := len(h.rec.snapshot())

	_, js2 := e.newJS(t)
	p2, err := projections.New(js2, e.config("view", sink))
	if err != nil {
		t.Fatal(err)
	}
	run2 := run(t, p2.Run)
	evs := h.rec.waitCount(t, 600)
	if err := run2.stop(); err != nil {
		t.Fatalf("second run: %v", err)
	}
	checkOrder(t, evs, want)
	byID := map[string][]byte{}
	dups := 0
	for _, ev := range evs {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := byID[ev.ID()]; ok {
			dups++
			if !bytes.Equal(prev, b) {
				t.Errorf("redelivered event differs:\n%s\n%s", prev, b)
			}
		}
		byID[ev.ID()] = b
	}
	t.Logf("first run delivered %d, %d redelivered after the restart", first, dups)
}

// TestDeadLetters: a message that is not a journal entry, an event whose
// data does not decode, one the sink rejects and one it keeps failing go
// to the dead-letter subject with their reasons; everything else flows on
// in order.
func TestDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq.>"}}); err != nil {
		t.Fatal(err)
	}
	a := streams.Entity{Type: "cart", Key: "a"}
	b := streams.Entity{Type: "cart", Key: "b"}
	c := streams.Entity{Type: "cart", Key: "c"}
	poison := streams.Event{Type: typeURL(wrapperspb.String("")), Data: []byte{0xFF, 0xFF, 0xFF}}
	e.appendEvents(t, a, strEvent("a1"))
	e.appendEvents(t, a, poison, strEvent("a3"))
	e.appendEvents(t, b, strEvent("b1"))
	e.appendEvents(t, b, strEvent("reject me"))
	e.appendEvents(t, b, strEvent("b3"))
	e.appendEvents(t, c, strEvent("fail me"))
	e.appendEvents(t, c, strEvent("c2"))
	junk, err := e.js.Publish(t.Context(), "jetstate.shop.cart.z", []byte("not an entry"))
	if err != nil {
		t.Fatal(err)
	}
	e.appendEvents(t, a, strEvent("a4"))

	h := newHTTPTarget(t)
	h.setRespond(func(ev *event.Event) int {
		switch {
		case bytes.Contains(ev.Data(), []byte("reject me")):
			return http.StatusBadRequest
		case bytes.Contains(ev.Data(), []byte("fail me")):
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	sink, err := projections.NewHTTPSink(projections.HTTPSinkConfig{Target: h.URL})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := e.config("view", sink)
	cfg.Resolver = protoregistry.GlobalTypes
	cfg.DeadLetterSubject = "dlq.shop.view"
	cfg.MaxTries = 3
	cfg.Registry = reg
	p, err := projections.New(e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)
	evs := h.rec.waitCount(t, 6)
	got := map[string][]uint64{}
	for _, ev := range evs {
		got[ev.Subject()] = append(got[ev.Subject()], seqOf(t, ev))
	}
	// The gaps are the dead letters.
	if diff := cmp.Diff(map[string][]uint64{"a": {1, 3, 4}, "b": {1, 3}, "c": {2}}, got); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}

	cons, err := e.js.OrderedConsumer(t.Context(), "DLQ", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	type dead struct{ cause, tries, subject, seq, index string }
	var dls []dead
	for range 4 {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("dead letter %d: %v", len(dls)+1, err)
		}
		hd := m.Headers()
		if hd.Get(projections.HeaderReason) == "" {
			t.Errorf("dead letter without reason: %v", hd)
		}
		t.Logf("dead letter: %s (%s)", hd.Get(projections.HeaderReason), hd.Get(projections.HeaderCause))
		dls = append(dls, dead{hd.Get(projections.HeaderCause), hd.Get(projections.HeaderTries),
			hd.Get(projections.HeaderJournalSubject), hd.Get(projections.HeaderStreamSeq), hd.Get(projections.HeaderEventIndex)})
		// One dead letter per event, however often it is redelivered.
		seq, _ := strconv.ParseUint(hd.Get(projections.HeaderStreamSeq), 10, 64)
		index, _ := strconv.Atoi(hd.Get(projections.HeaderEventIndex))
		if id, want := hd.Get(jetstream.MsgIDHeader), "dead:view-g1:"+projections.EventID(e.storage.JournalStream(), seq, index); id != want {
			t.Errorf("dead letter's %s is %q, want %q", jetstream.MsgIDHeader, id, want)
		}
		if hd.Get(projections.HeaderCause) == "rejected" {
			ev, err := projections.EventFromNATS(&nats.Msg{Header: nats.Header(hd), Data: m.Data()})
			if err != nil {
				t.Errorf("rejected dead letter is not a CloudEvent: %v", err)
			} else if ev.Subject() != "b" || ev.Extensions()[projections.SeqExtension] != "2" {
				t.Errorf("rejected dead letter is %s/%v", ev.Subject(), ev.Extensions())
			}
		}
	}
	want := map[dead]bool{
		{"bad_event", "0", "jetstate.shop.cart.a", "2", "0"}:                                    true,
		{"rejected", "1", "jetstate.shop.cart.b", "4", "0"}:                                     true,
		{"retries", "3", "jetstate.shop.cart.c", "6", "0"}:                                      true,
		{"bad_event", "0", "jetstate.shop.cart.z", strconv.FormatUint(junk.Sequence, 10), "-1"}: true,
	}
	for _, d := range dls {
		if !want[d] {
			t.Errorf("unexpected dead letter %+v", d)
		}
		delete(want, d)
	}
	for d := range want {
		t.Errorf("missing dead letter %+v", d)
	}
	for cause, n := range map[string]float64{"bad_event": 2, "rejected": 1, "retries": 1} {
		if got := metricValue(t, reg, "jetstate_projection_events_dead_lettered_total", "cause", cause); got != n {
			t.Errorf("dead letters with cause %s: metric %v, want %v", cause, got, n)
		}
	}
}

// TestRebuild rebuilds a projection into a second sink while events keep
// arriving: the old generation serves until the switch and then stops
// with ErrSuperseded; the new one ends up with exactly every event.
func TestRebuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	appendMany(t, e, 10, 5)
	oldSink, newSink := newRecorder(), newRecorder()
	p1, err := projections.New(e.js, e.config("view", projections.SinkFunc(func(_ context.Context, ev *event.Event) error {
		oldSink.add(ev, nil)
		return nil
	})))
	if err != nil {
		t.Fatal(err)
	}
	run1 := run(t, p1.Run)
	oldSink.waitCount(t, 50)

	// Keep appending while the rebuild runs.
	stopAppend := make(chan struct{})
	var appended sync.WaitGroup
	var appends atomic.Int64
	appended.Add(1)
	go func() {
		defer appended.Done()
		for i := 0; ; i++ {
			select {
			case <-stopAppend:
				return
			case <-time.After(2 * time.Millisecond):
			}
			key := "k" + strconv.Itoa(i%10)
			e.appendEvents(t, streams.Entity{Type: "cart", Key: key}, strEvent(key))
			appends.Add(1)
		}
	}()

	activated := make(chan int, 1)
	cfg := e.config("view", projections.SinkFunc(func(_ context.Context, ev *event.Event) error {
		newSink.add(ev, nil)
		return nil
	}))
	cfg.OnActive = func(gen int) { activated <- gen }
	p2, err := projections.New(e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run2 := run(t, p2.Rebuild)
	select {
	case gen := <-activated:
		if gen != 2 {
			t.Errorf("rebuild activated generation %d, want 2", gen)
		}
	case <-run2.ended:
		t.Fatalf("Rebuild ended before the switch: %v", run2.wait(t))
	}
	if err := run1.wait(t); !errors.Is(err, projections.ErrSuperseded) {
		t.Errorf("old generation's Run: %v, want ErrSuperseded", err)
	}
	// A few more events after the switch.
	after := appends.Load() + 10
	waitUntil(t, "appends after the switch", func() bool { return appends.Load() >= after })
	close(stopAppend)
	appended.Wait()

	all := map[string]bool{}
	want := map[string]uint64{}
	for ent, v := range e.versions {
		want[ent.Key] = v.Seq
		index := map[uint64]int{}
		for rec, err := range e.journal.Read(t.Context(), ent, streams.Version{}) {
			if err != nil {
				t.Fatal(err)
			}
			all[projections.EventID(e.storage.JournalStream(), rec.StreamSeq, index[rec.StreamSeq])] = true
			index[rec.StreamSeq]++
		}
	}
	evs := newSink.waitCount(t, len(all))
	checkOrder(t, evs, want)
	for _, ev := range distinct(evs) {
		if !all[ev.ID()] {
			t.Errorf("rebuild delivered unknown event %s", ev.ID())
		}
	}
	for _, ev := range oldSink.snapshot() {
		if !all[ev.ID()] {
			t.Errorf("old generation delivered unknown event %s", ev.ID())
		}
	}
	t.Logf("old generation delivered %d events, the rebuild %d of %d", len(distinct(oldSink.snapshot())), len(distinct(evs)), len(all))
	st, err := p2.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Generation != 2 || !st[0].Active || st[0].Consumer != "view-g2" {
		t.Errorf("status after the rebuild: %+v", st)
	}
	if err := run2.stop(); err != nil {
		t.Errorf("Rebuild: %v", err)
	}
}

// TestPauseResume: a paused projection delivers nothing (and reports the
// lag) until it is resumed, from another Projection value as a CLI would.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	appendMany(t, e, 1, 3)
	rec := newRecorder()
	reg := prometheus.NewRegistry()
	cfg := e.config("view", projections.SinkFunc(func(_ context.Context, ev *event.Event) error {
		rec.add(ev, nil)
		return nil
	}))
	cfg.Registry = reg
	p, err := projections.New(e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)
	rec.waitCount(t, 3)

	ops, err := projections.New(e.js, projections.Config{Storage: e.storage, Name: "view"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ops.Pause(t.Context(), time.Time{}); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	for i := range 4 {
		e.appendEvents(t, streams.Entity{Type: "cart", Key: "k0"}, strEvent("late"+strconv.Itoa(i)))
	}
	var st []projections.GenerationStatus
	waitUntil(t, "the paused status", func() bool {
		st, err = ops.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return st[0].Paused && st[0].Pending == 4 && metricValue(t, reg, "jetstate_projection_pending_messages") == 4 &&
			metricValue(t, reg, "jetstate_projection_paused") == 1
	})
	// Pending 4: the server has handed none of them out.
	if n := len(rec.snapshot()); n != 3 {
		t.Errorf("%d events delivered while paused, want 3", n)
	}
	if err := ops.Resume(t.Context()); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	evs := rec.waitCount(t, 7)
	checkOrder(t, evs, map[string]uint64{"k0": 7})
}

// TestStart: a new projection starting "now" or at a time skips what
// came before.
func TestStart(t *testing.T) {
	t.Parallel()
	for _, policy := range []projections.StartPolicy{projections.StartNew, projections.StartTime} {
		t.Run(strconv.Itoa(int(policy)), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ent := streams.Entity{Type: "cart", Key: "k"}
			e.appendEvents(t, ent, strEvent("old1"))
			e.appendEvents(t, ent, strEvent("old2"))
			var oldTime time.Time
			for rec, err := range e.journal.Read(t.Context(), ent, streams.Version{}) {
				if err != nil {
					t.Fatal(err)
				}
				oldTime = rec.Time
			}
			rec := newRecorder()
			cfg := e.config("view", projections.SinkFunc(func(_ context.Context, ev *event.Event) error {
				rec.add(ev, nil)
				return nil
			}))
			cfg.Start, cfg.StartTime = policy, oldTime.Add(time.Nanosecond)
			p, err := projections.New(e.js, cfg)
			if err != nil {
				t.Fatal(err)
			}
			run(t, p.Run)
			if policy == projections.StartNew {
				for {
					if _, err := p.Status(t.Context()); err == nil {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			e.appendEvents(t, ent, strEvent("new3"))
			// The entity's events arrive in order: an older one delivered
			// would be there before event 3.
			evs := rec.waitFor(t, "event 3", func(evs []*event.Event) bool {
				return slices.ContainsFunc(evs, func(ev *event.Event) bool { return seqOf(t, ev) == 3 })
			})
			if len(evs) != 1 || seqOf(t, evs[0]) != 3 {
				t.Errorf("delivered %d events (first seq %d), want only event 3", len(evs), seqOf(t, evs[0]))
			}
		})
	}
}

// TestStopHandsBack: a projector stopped while the sink holds an entity's
// event hands that message and those waiting behind it back to the
// consumer (Nak), so they are delivered again at once, in stream order,
// not after the ack wait.
func TestStopHandsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := streams.Entity{Type: "cart", Key: "a"}
	first := e.appendEvents(t, a, strEvent("a1"))
	e.appendEvents(t, a, strEvent("a2"))
	e.appendEvents(t, a, strEvent("a3"))
	inSend := make(chan struct{}, 1)
	cfg := e.config("view", projections.SinkFunc(func(ctx context.Context, ev *event.Event) error {
		select {
		case inSend <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}))
	cfg.AckWait = 10 * time.Minute
	cfg.SendTimeout = time.Hour
	p, err := projections.New(e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pr := run(t, p.Run)
	<-inSend
	waitStatus(t, p, func(st []projections.GenerationStatus) bool { return st[0].AckPending == 3 })
	if err := pr.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	cons, err := e.js.Consumer(t.Context(), e.storage.JournalStream(), p.ConsumerName(1))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(3, jetstream.FetchMaxWait(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for m := range batch.Messages() {
		md, _ := m.Metadata()
		got = append(got, md.Sequence.Stream)
		if md.NumDelivered != 2 {
			t.Errorf("message %d: delivery %d, want 2", md.Sequence.Stream, md.NumDelivered)
		}
	}
	want := []uint64{first.StreamSeq, first.StreamSeq + 1, first.StreamSeq + 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("handed back (-want +got):\n%s", diff)
	}
}

// TestHeldKeptAlive: an entity's event held by the sink well past the ack
// wait, the event waiting behind it, and another entity's events accepted
// after it (whose cumulative acknowledgement waits for the held one) are
// not redelivered: the projector marks what it holds in progress.
func TestHeldKeptAlive(t *testing.T) {
	t.Parallel()
	const ackWait = time.Second
	e := newEnv(t)
	a := streams.Entity{Type: "cart", Key: "a"}
	b := streams.Entity{Type: "cart", Key: "b"}
	e.appendEvents(t, a, strEvent("a1"))
	e.appendEvents(t, a, strEvent("a2"))
	e.appendEvents(t, b, strEvent("b1"))
	e.appendEvents(t, b, strEvent("b2"))
	rec := newRecorder()
	release := make(chan struct{})
	cfg := e.config("view", projections.SinkFunc(func(ctx context.Context, ev *event.Event) error {
		if ev.Subject() == "a" && seqOf(t, ev) == 1 {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		rec.add(ev, nil)
		return nil
	}))
	cfg.AckWait = ackWait
	cfg.SendTimeout = time.Minute
	p, err := projections.New(e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)
	rec.waitCount(t, 2) // b's
	waitStatus(t, p, func(st []projections.GenerationStatus) bool { return st[0].AckPending == 4 })
	held := time.Now()
	// Three ack waits: without progress acks the server would have
	// redelivered all four by now.
	waitUntil(t, "three ack waits", func() bool { return time.Since(held) > 3*ackWait })
	st, err := p.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Redelivered != 0 || st[0].AckPending != 4 {
		t.Errorf("after %v held: %d redelivered, %d pending; want 0, 4", time.Since(held), st[0].Redelivered, st[0].AckPending)
	}
	close(release)
	checkOrder(t, rec.waitCount(t, 4), map[string]uint64{"a": 2, "b": 2})
	waitStatus(t, p, func(st []projections.GenerationStatus) bool { return st[0].AckPending == 0 })
}

// TestSettledBehindHeld: while the sink holds an entity's first event,
// other entities' events delivered after it are accepted. With cumulative
// acknowledgements (the default) none of them is acknowledged, since that
// would cover the held one; with AckEach only the held entity's messages
// stay unacknowledged. The next projector starts from the ack floor,
// before the held event, either way: it sends the others again (the same
// ids) after the held entity's, each entity in order.
func TestSettledBehindHeld(t *testing.T) {
	t.Parallel()
	for _, ackEach := range []bool{false, true} {
		t.Run(fmt.Sprintf("AckEach=%v", ackEach), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			a := streams.Entity{Type: "cart", Key: "a"}
			first := e.appendEvents(t, a, strEvent("a1"))
			e.appendEvents(t, a, strEvent("a2"))
			want := appendMany(t, e, 5, 4)
			want["a"] = 2
			rec := newRecorder()
			var hold atomic.Bool
			hold.Store(true)
			cfg := e.config("view", projections.SinkFunc(func(ctx context.Context, ev *event.Event) error {
				if ev.Subject() == "a" && hold.Load() {
					<-ctx.Done()
					return ctx.Err()
				}
				rec.add(ev, nil)
				return nil
			}))
			cfg.AckEach = ackEach
			cfg.SendTimeout = time.Hour
			p, err := projections.New(e.js, cfg)
			if err != nil {
				t.Fatal(err)
			}
			pr := run(t, p.Run)
			rec.waitCount(t, 20)
			if !ackEach {
				// Nothing can be acknowledged yet; with AckEach the
				// others' acknowledgements come, one each.
				waitStatus(t, p, func(st []projections.GenerationStatus) bool { return st[0].AckPending == 22 })
			} else {
				waitStatus(t, p, func(st []projections.GenerationStatus) bool { return st[0].AckPending == 2 })
			}
			if err := pr.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			st, err := p.Status(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			wantPending := 22
			if ackEach {
				wantPending = 2
			}
			if st[0].AckFloor >= first.StreamSeq || st[0].AckPending != wantPending {
				t.Fatalf("stopped with ack floor %d and %d pending; want < %d and %d", st[0].AckFloor, st[0].AckPending, first.StreamSeq, wantPending)
			}

			hold.Store(false)
			pr = run(t, p.Run)
			rec.waitCount(t, 22)
			waitStatus(t, p, func(st []projections.GenerationStatus) bool { return st[0].AckPending == 0 })
			if err := pr.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			evs := rec.snapshot()
			checkOrder(t, evs, want)
			if repeats := len(evs) - len(distinct(evs)); repeats != 20 {
				t.Errorf("%d events sent again, want 20", repeats)
			}
		})
	}
}
