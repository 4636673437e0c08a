package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/protocol/cloudstate"
	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/proxy/eventing"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

var evStorage = streams.Config{Service: "ev"}

// journalSeq is the stream sequence of the last journal message of the
// source entity key.
func journalSeq(t *testing.T, js jetstream.JetStream, key string) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), evStorage.JournalStream())
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(t.Context(), evStorage.Subject(streams.Entity{Type: "source", Key: key}))
	if err != nil {
		t.Fatal(err)
	}
	return m.Sequence
}

// waitCalls waits until pick selects n calls of f's method and returns them.
func waitCalls(t *testing.T, f *evFunction, method string, n int, pick func(evCall) bool) []evCall {
	t.Helper()
	var got []evCall
	waitFor(t, fmt.Sprintf("%d calls of %s", n, method), func() bool {
		got = got[:0]
		for _, c := range f.callsOf(method) {
			if pick == nil || pick(c) {
				got = append(got, c)
			}
		}
		return len(got) >= n
	})
	return got
}

func bySubject(key string) func(evCall) bool {
	return func(c evCall) bool { return c.md["ce-subject"] == key }
}

// checkTime checks a ce-time is RFC 3339 and recent.
func checkTime(t *testing.T, s string) {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("ce-time %q: %v", s, err)
	}
	if d := time.Since(tm); d < 0 || d > time.Minute {
		t.Fatalf("ce-time %s is %v from now", s, d)
	}
}

// TestEventingEventLog is the TCK's event-log eventing (items 184-186) on
// an equivalent model, plus multi-event commands and a streamed consumer:
// each journal event reaches the method taking its type with the ce-*
// metadata; a forward is followed; JSON events reach the Any method.
func TestEventingEventLog(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	s := startEvSidecar(t, js, serveEvFunction(t, f), nil)
	et := f.types

	t.Run("consume an event", func(t *testing.T) { // TCK 184
		s.emit(t, et, map[string]any{"key": "eventlogeventing:1", "n": 7})
		c := waitCalls(t, f, "OnOne", 1, bySubject("eventlogeventing:1"))[0]
		if d := diffProto(et.anyOf("EventOne", map[string]any{"n": 7}), c.payload); d != "" {
			t.Fatalf("payload (-want +got):\n%s", d)
		}
		seq := journalSeq(t, js, "eventlogeventing:1")
		want := map[string]string{
			"ce-id":          projections.EventID(evStorage.JournalStream(), seq, 0),
			"ce-source":      "source",
			"ce-specversion": "1.0",
			"ce-type":        "type.googleapis.com/evtest.EventOne",
			"ce-subject":     "eventlogeventing:1",
			"ce-time":        c.md["ce-time"],
			"ce-jetstateseq": "1",
			"Content-Type":   eventing.ContentTypeAny,
		}
		if d := cmp.Diff(want, c.md); d != "" {
			t.Fatalf("metadata (-want +got):\n%s", d)
		}
		checkTime(t, c.md["ce-time"])
	})

	t.Run("forward a consumed event", func(t *testing.T) { // TCK 185
		s.emit(t, et, map[string]any{"key": "eventlogeventing:2", "n": 1000})
		waitCalls(t, f, "OnOne", 1, bySubject("eventlogeventing:2"))
		var effect evCall
		waitFor(t, "the forward to Effect", func() bool {
			for _, c := range f.callsOf("Effect") {
				if et.read("Response", c.payload.GetValue())["id"] == "eventlogeventing:2" {
					effect = c
					return true
				}
			}
			return false
		})
		if got := et.read("Response", effect.payload.GetValue()); got["n"] != int64(1000) {
			t.Fatalf("Effect got %v", got)
		}
	})

	t.Run("process JSON events", func(t *testing.T) { // TCK 186
		s.emit(t, et, map[string]any{"key": "eventlogeventing:3", "n": 3, "kind": "json"})
		c := waitCalls(t, f, "OnAny", 1, bySubject("eventlogeventing:3"))[0]
		if c.payload.GetTypeUrl() != "json.cloudstate.io/JsonEvent" || string(unwrapped(c.payload.GetValue())) != `{"n":3}` {
			t.Fatalf("OnAny payload %s %q", c.payload.GetTypeUrl(), unwrapped(c.payload.GetValue()))
		}
		if c.md["ce-type"] != "json.cloudstate.io/JsonEvent" || c.md["ce-source"] != "source" || c.md["Content-Type"] != eventing.ContentTypeAny {
			t.Fatalf("OnAny metadata %v", c.md)
		}
	})

	t.Run("events of one command", func(t *testing.T) {
		s.emit(t, et, map[string]any{"key": "multi", "n": 1})
		s.emit(t, et, map[string]any{"key": "multi", "n": 2, "count": 3})
		calls := waitCalls(t, f, "OnOne", 4, bySubject("multi"))
		seq := journalSeq(t, js, "multi")
		for i, c := range calls {
			n := et.read("EventOne", c.payload.GetValue())["n"]
			if n != int64(i+1) || c.md["ce-jetstateseq"] != strconv.Itoa(i+1) {
				t.Fatalf("call %d: n %v, ce-jetstateseq %s; want %d", i, n, c.md["ce-jetstateseq"], i+1)
			}
			if i > 0 {
				if want := projections.EventID(evStorage.JournalStream(), seq, i-1); c.md["ce-id"] != want {
					t.Fatalf("call %d: ce-id %s, want %s", i, c.md["ce-id"], want)
				}
			}
		}
	})

	t.Run("streamed consumer with an out topic, retried", func(t *testing.T) {
		// The first try publishes one reply, then fails; the second publishes
		// both: the first reply's copy has the same id and is dropped.
		f.mu.Lock()
		f.fails[4] = 1
		f.mu.Unlock()
		s.emit(t, et, map[string]any{"key": "two", "n": 4, "kind": "two"})
		calls := waitCalls(t, f, "OnTwo", 2, bySubject("two"))
		if got := et.read("EventTwo", calls[1].payload.GetValue())["n"]; got != int64(4) || calls[0].md["ce-id"] != calls[1].md["ce-id"] {
			t.Fatalf("OnTwo got n %v, ids %s and %s", got, calls[0].md["ce-id"], calls[1].md["ce-id"])
		}
		out := readSubject(t, js, eventing.TopicSubject(evStorage, "out2"), 2)
		for i, m := range out {
			ev := outEventOf(t, m)
			checkEvent(t, ev, fmt.Sprintf("%s:/evtest.Subscriber/OnTwo:%d", calls[0].md["ce-id"], i+1), "evtest.Subscriber", "evtest.Response", "", projections.ContentTypeProtobuf)
			if got := et.read("Response", ev.Data())["n"]; got != int64(40+i) {
				t.Fatalf("out event %d: n %v", i, got)
			}
		}
		waitFor(t, "the event acknowledged", func() bool {
			c, err := js.Consumer(t.Context(), evStorage.JournalStream(), "eventing=_evtest=2ESubscriber=_source")
			if err != nil {
				return false
			}
			info, err := c.Info(t.Context())
			return err == nil && info.NumPending == 0 && info.NumAckPending == 0
		})
		st, err := js.Stream(t.Context(), eventing.EventingStream(evStorage))
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(eventing.TopicSubject(evStorage, "out2")))
		if err != nil {
			t.Fatal(err)
		}
		if n := info.State.Subjects[eventing.TopicSubject(evStorage, "out2")]; n != 2 {
			t.Fatalf("out2 holds %d messages, want 2 (the retry's copy dropped)", n)
		}
	})
}

// TestEventingEntityConsumer: an event-sourced entity's method consumes
// the source's events: each is a command to the entity its key field
// names (routed like a client's), whose events are stored.
func TestEventingEntityConsumer(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	s := startEvSidecar(t, js, serveEvFunction(t, f), nil)
	s.emit(t, f.types, map[string]any{"key": "a", "n": 1, "kind": "keyed", "count": 2}) // tally-a +1, +2
	s.emit(t, f.types, map[string]any{"key": "b", "n": 5, "kind": "keyed"})             // tally-b +5
	calls := waitCalls(t, f, "Count", 3, nil)
	got := map[string][]any{}
	for _, c := range calls {
		got[c.md["entity"]] = append(got[c.md["entity"]], f.types.read("Keyed", c.payload.GetValue())["n"])
	}
	if want := map[string][]any{"tally-a": {int64(1), int64(2)}, "tally-b": {int64(5)}}; !cmp.Equal(want, got) {
		t.Fatalf("Count commands %v, want %v", got, want)
	}
	// The entity stored its events: the tally's journal holds them.
	st, err := js.Stream(t.Context(), evStorage.JournalStream())
	if err != nil {
		t.Fatal(err)
	}
	subj := evStorage.Subject(streams.Entity{Type: "tally", Key: "tally-a"})
	waitFor(t, "the tally's events stored", func() bool {
		info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(subj))
		return err == nil && info.State.Subjects[subj] == 2
	})
}

// TestEventingRetriesKeepOrder: a consumer method that fails gets the event
// again (with back-off) until it succeeds; nothing is lost, and the
// entity's later events wait for it.
func TestEventingRetriesKeepOrder(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	f.fails[2] = 3
	f.fails[12] = 2
	reg := prometheus.NewRegistry()
	s := startEvSidecar(t, js, serveEvFunction(t, f), func(c *proxy.Config) {
		c.Eventing.MaxTries = 5
		c.Registry = reg
	})
	et := f.types
	for _, e := range []struct {
		key string
		n   int
	}{{"a", 1}, {"b", 11}, {"a", 2}, {"b", 12}, {"a", 3}, {"b", 13}, {"a", 4}} {
		s.emit(t, et, map[string]any{"key": e.key, "n": e.n})
	}
	for key, want := range map[string][]int64{"a": {1, 2, 3, 4}, "b": {11, 12, 13}} {
		ok := func(c evCall) bool { return c.md["ce-subject"] == key && !c.failed }
		waitCalls(t, f, "OnOne", len(want), ok)
		var got []int64
		failedBefore := map[int64]int{}
		for _, c := range f.callsOf("OnOne") {
			if c.md["ce-subject"] != key {
				continue
			}
			n := et.read("EventOne", c.payload.GetValue())["n"].(int64)
			if c.failed {
				if slices.Contains(got, n) {
					t.Fatalf("%s: event %d failed after it succeeded", key, n)
				}
				failedBefore[n]++
				continue
			}
			got = append(got, n)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("entity %s: handled %v, want %v in this order", key, got, want)
		}
		if key == "a" && failedBefore[2] != 3 || key == "b" && failedBefore[12] != 2 {
			t.Fatalf("entity %s: failures before success %v", key, failedBefore)
		}
	}
	waitFor(t, "the failures counted", func() bool {
		return gather(t, reg, "jetstate_proxy_eventing_failures_total", "source", "event_log:source") == 5 &&
			gather(t, reg, "jetstate_proxy_eventing_delivered_total", "source", "event_log:source") == 7
	})
	// The backlog as of the last delivery: everything was delivered.
	if !hasSeries(t, reg, "jetstate_proxy_eventing_pending_messages", "source", "event_log:source") ||
		gather(t, reg, "jetstate_proxy_eventing_pending_messages", "source", "event_log:source") != 0 {
		t.Errorf("jetstate_proxy_eventing_pending_messages: want a series at 0 for event_log:source")
	}
}

// hasSeries says whether a metric has a series whose label has value.
func hasSeries(t *testing.T, reg *prometheus.Registry, name, label, value string) bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return true
				}
			}
		}
	}
	return false
}

// gather returns the sum of a metric's series whose label has value.
func gather(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return sum
}

// readSubject returns the next n messages on subject of the eventing
// stream, from its beginning.
func readSubject(t *testing.T, js jetstream.JetStream, subject string, n int) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a failsafe
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, eventing.EventingStream(evStorage), jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < n {
		m, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("%s: %d of %d messages: %v", subject, len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

// TestEventingPoisonEvent: an event the function always fails goes to the
// dead-letter subject after MaxTries, with where it came from and why, and
// the entity's next events flow on.
func TestEventingPoisonEvent(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	reg := prometheus.NewRegistry()
	s := startEvSidecar(t, js, serveEvFunction(t, f), func(c *proxy.Config) {
		c.Eventing.MaxTries = 3
		c.Registry = reg
	})
	et := f.types
	for _, n := range []int{5, -1, 6} {
		s.emit(t, et, map[string]any{"key": "p", "n": n})
	}
	calls := waitCalls(t, f, "OnOne", 2, func(c evCall) bool { return c.md["ce-subject"] == "p" && !c.failed })
	if got := []any{et.read("EventOne", calls[0].payload.GetValue())["n"], et.read("EventOne", calls[1].payload.GetValue())["n"]}; !slices.Equal(got, []any{int64(5), int64(6)}) {
		t.Fatalf("handled %v, want [5 6]", got)
	}
	tries := 0
	var poisonID string
	for _, c := range f.callsOf("OnOne") {
		if c.failed {
			tries++
			poisonID = c.md["ce-id"]
		}
	}
	if tries != 3 {
		t.Fatalf("poison event tried %d times, want 3", tries)
	}
	dl := readSubject(t, js, eventing.DeadLetterSubject(evStorage), 1)[0]
	h := dl.Headers()
	seq := strconv.FormatUint(journalSeq(t, js, "p")-1, 10) // the poison is the entity's second of three messages
	for k, want := range map[string]string{
		projections.HeaderCause:          "retries",
		projections.HeaderTries:          "3",
		projections.HeaderStreamSeq:      seq,
		projections.HeaderEventIndex:     "0",
		projections.HeaderJournalSubject: evStorage.Subject(streams.Entity{Type: "source", Key: "p"}),
		projections.HeaderEventType:      "type.googleapis.com/evtest.EventOne",
		eventing.HeaderMethod:            "/evtest.Subscriber/OnOne",
		eventing.HeaderConsumer:          "eventing=_evtest=2ESubscriber=_source",
		"ce-id":                          poisonID,
		"ce-subject":                     "p",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("dead letter header %s = %q, want %q", k, got, want)
		}
	}
	if r := h.Get(projections.HeaderReason); !strings.Contains(r, "planned failure of -1") {
		t.Errorf("dead letter reason %q", r)
	}
	var a anypb.Any
	if err := proto.Unmarshal(dl.Data(), &a); err != nil {
		t.Fatal(err)
	}
	if d := diffProto(et.anyOf("EventOne", map[string]any{"n": -1}), &a); d != "" {
		t.Fatalf("dead letter body (-want +got):\n%s", d)
	}
	if got := gather(t, reg, "jetstate_proxy_eventing_dead_letters_total", "cause", "retries"); got != 1 {
		t.Fatalf("dead letters counted %v, want 1", got)
	}
}

// TestEventingDeadLetterIsACloudEvent: an event-log event's dead letter is
// its CloudEvent in binary mode, read back whole by the binding, also for a
// key the header encoding must escape ('%', a quote, a space, non-ASCII):
// the attributes were once only kept on one line, so a reader
// percent-decoding them misread such a key.
func TestEventingDeadLetterIsACloudEvent(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	s := startEvSidecar(t, js, serveEvFunction(t, f), func(c *proxy.Config) { c.Eventing.MaxTries = 1 })
	const key = `50% "off" für alle`
	s.emit(t, f.types, map[string]any{"key": key, "n": -1})
	dl := readSubject(t, js, eventing.DeadLetterSubject(evStorage), 1)[0]
	ev, err := projections.EventFromNATS(&nats.Msg{Subject: dl.Subject(), Header: dl.Headers(), Data: dl.Data()})
	if err != nil {
		t.Fatalf("dead letter is not a CloudEvent: %v (headers %v)", err, dl.Headers())
	}
	calls := waitCalls(t, f, "OnOne", 1, func(c evCall) bool { return c.failed })
	if ev.Subject() != key || ev.ID() != calls[0].md["ce-id"] || ev.Type() != "type.googleapis.com/evtest.EventOne" ||
		ev.DataContentType() != eventing.ContentTypeAny {
		t.Fatalf("dead letter event: subject %q id %q type %q content type %q; want %q, %q, the event's type, %s",
			ev.Subject(), ev.ID(), ev.Type(), ev.DataContentType(), key, calls[0].md["ce-id"], eventing.ContentTypeAny)
	}
	var a anypb.Any
	if err := proto.Unmarshal(ev.Data(), &a); err != nil {
		t.Fatal(err)
	}
	if d := diffProto(f.types.anyOf("EventOne", map[string]any{"n": -1}), &a); d != "" {
		t.Fatalf("dead letter data (-want +got):\n%s", d)
	}
}

// TestEventingReplicasShareWork: two sidecars of one service, each with its
// own function, share the subscription's consumer: every event is handled
// exactly once by the service (the function never fails), and both
// sidecars take part.
func TestEventingReplicasShareWork(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	tune := func(c *proxy.Config) { c.Eventing.MaxAckPending = 4; c.Eventing.Shared = true }
	f1, f2 := newEvFunction(t, "f1"), newEvFunction(t, "f2")
	f1.delay, f2.delay = 5*time.Millisecond, 5*time.Millisecond
	s1 := startEvSidecar(t, js, serveEvFunction(t, f1), tune)
	startEvSidecar(t, js, serveEvFunction(t, f2), tune)
	const events = 60
	for i := range events {
		s1.emit(t, f1.types, map[string]any{"key": "k" + strconv.Itoa(i%6), "n": i + 1})
	}
	all := func() []evCall { return append(f1.callsOf("OnOne"), f2.callsOf("OnOne")...) }
	waitFor(t, "every event handled", func() bool { return len(all()) >= events })
	// Settled: nothing pending or unacknowledged, so no copy is on its way.
	waitFor(t, "the consumer settled", func() bool {
		c, err := js.Consumer(t.Context(), evStorage.JournalStream(), "eventing=_evtest=2ESubscriber=_source")
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	seen := map[string]string{}
	for _, c := range all() {
		if prev, dup := seen[c.md["ce-id"]]; dup {
			t.Fatalf("event %s handled twice (%s and %s)", c.md["ce-id"], prev, c.fn)
		}
		seen[c.md["ce-id"]] = c.fn
	}
	if len(seen) != events {
		t.Fatalf("%d events handled, want %d", len(seen), events)
	}
	if n1, n2 := len(f1.callsOf("OnOne")), len(f2.callsOf("OnOne")); n1 == 0 || n2 == 0 {
		t.Fatalf("work not shared: %d and %d events", n1, n2)
	}
}

// TestEventingStopDuringRetries: a sidecar stopped while it retries an
// event returns promptly without acknowledging it; the next sidecar
// delivers it.
func TestEventingStopDuringRetries(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	f.fails[7] = 1 << 30
	ufAddr := serveEvFunction(t, f)
	// Promptly means without waiting out the back-off before the retry
	// or the drain time: both are made far longer than the failsafe.
	tune := func(c *proxy.Config) {
		c.Eventing.MaxTries = 1 << 20
		c.Eventing.RetryMin, c.Eventing.RetryMax, c.Eventing.AckWait = time.Hour, time.Hour, 2*time.Hour
		c.DrainTimeout = time.Hour
	}
	s1 := startEvSidecar(t, js, ufAddr, tune)
	s1.emit(t, f.types, map[string]any{"key": "r", "n": 7})
	waitCalls(t, f, "OnOne", 1, bySubject("r")) // failed: an hour's back-off before the retry
	stopped := make(chan error, 1)
	go func() { stopped <- s1.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("stop waited for the retry back-off or the drain time (an hour each)")
	}
	f.mu.Lock()
	f.fails[7] = 0
	f.mu.Unlock()
	startEvSidecar(t, js, ufAddr, tune)
	waitCalls(t, f, "OnOne", 1, func(c evCall) bool { return c.md["ce-subject"] == "r" && !c.failed })
}

// TestEventingDiscoveryValidation: eventing options that cannot be served
// stop the sidecar at start with a clear error, reported to the function.
func TestEventingDiscoveryValidation(t *testing.T) {
	service := func(file *descriptorpb.FileDescriptorProto, name string) *descriptorpb.ServiceDescriptorProto {
		for _, s := range file.Service {
			if s.GetName() == name {
				return s
			}
		}
		panic(name)
	}
	subscriber := func(file *descriptorpb.FileDescriptorProto) *descriptorpb.ServiceDescriptorProto {
		return service(file, "Subscriber")
	}
	for _, c := range []struct {
		name string
		tune func(*descriptorpb.FileDescriptorProto)
		want string
	}{
		{"unknown event log", func(file *descriptorpb.FileDescriptorProto) {
			proto.SetExtension(subscriber(file).Method[0].Options, cloudstate.E_Eventing, fromLog("nope"))
		}, `/evtest.Subscriber/OnOne: (cloudstate.eventing).in.event_log "nope" is not the persistence id of an event-sourced entity of this function (known: source, tally)`},
		{"two methods for one type", func(file *descriptorpb.FileDescriptorProto) {
			s := subscriber(file)
			s.Method = append(s.Method, evMethod("Again", "EventOne", "Response", fromLog("source")))
		}, `/evtest.Subscriber/OnOne and /evtest.Subscriber/Again both take evtest.EventOne from event_log:source in consumer group "evtest.Subscriber" (give them distinct consumer groups)`},
		{"same topic in and out", func(file *descriptorpb.FileDescriptorProto) {
			proto.SetExtension(service(file, "Relay").Method[0].Options, cloudstate.E_Eventing, topicInOut("loop", "loop"))
		}, `/evtest.Relay/FromTopic: consumes and publishes to the same topic "loop"`},
		{"client-streaming consumer", func(file *descriptorpb.FileDescriptorProto) {
			streaming(subscriber(file).Method[0], true, false)
		}, "/evtest.Subscriber/OnOne: an eventing consumer must take single events, not a client stream"},
		{"no source", func(file *descriptorpb.FileDescriptorProto) {
			proto.SetExtension(subscriber(file).Method[0].Options, cloudstate.E_Eventing, &cloudstate.Eventing{In: &cloudstate.EventSource{}})
		}, "/evtest.Subscriber/OnOne: (cloudstate.eventing).in names neither a topic nor an event_log"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := streamstest.RunServer(t)
			f := newEvFunction(t, "f")
			f.spec = c.tune
			p, err := proxy.New(proxy.Config{
				Storage: evStorage, Provision: &streams.StoreConfig{}, UserFunction: serveEvFunction(t, f),
				Listen: "127.0.0.1:0", DiscoveryBackoff: 10 * time.Millisecond,
			}, srv.JetStream(t))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			err = p.Run(ctx)
			var verr *model.ValidationError
			if !errors.As(err, &verr) || !slices.ContainsFunc(verr.Problems, func(p string) bool { return strings.HasPrefix(p, c.want) }) {
				t.Fatalf("Run = %v, want a validation error with %q", err, c.want)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.errors) != 1 || !strings.Contains(f.errors[0], c.want) {
				t.Fatalf("reported to the function: %q", f.errors)
			}
		})
	}
}

// TestEventingConsumerDeleted: a subscription whose consumer is deleted
// under it makes it again and goes on delivering (an event log from its
// beginning again: at least once).
func TestEventingConsumerDeleted(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	s := startEvSidecar(t, js, serveEvFunction(t, f), nil)
	s.emit(t, f.types, map[string]any{"key": "d", "n": 1})
	waitCalls(t, f, "OnOne", 1, bySubject("d"))
	if err := js.DeleteConsumer(t.Context(), evStorage.JournalStream(), "eventing=_evtest=2ESubscriber=_source"); err != nil {
		t.Fatal(err)
	}
	s.emit(t, f.types, map[string]any{"key": "d", "n": 2})
	waitCalls(t, f, "OnOne", 1, func(c evCall) bool {
		return c.md["ce-subject"] == "d" && f.types.read("EventOne", c.payload.GetValue())["n"] == int64(2)
	})
}

// TestEventingConsumerNameTooLong: a consumer group whose consumer name the
// server would refuse stops the sidecar at start with a clear error
// instead of retrying forever.
func TestEventingConsumerNameTooLong(t *testing.T) {
	srv := streamstest.RunServer(t)
	f := newEvFunction(t, "f")
	f.spec = func(file *descriptorpb.FileDescriptorProto) {
		ev := fromLog("source")
		ev.In.ConsumerGroup = strings.Repeat("g", 300)
		proto.SetExtension(file.Service[1].Method[0].Options, cloudstate.E_Eventing, ev)
	}
	p, err := proxy.New(proxy.Config{
		Storage: evStorage, Provision: &streams.StoreConfig{}, UserFunction: serveEvFunction(t, f),
		Listen: "127.0.0.1:0", DiscoveryBackoff: 10 * time.Millisecond,
	}, srv.JetStream(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err = p.Run(ctx)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "give the methods a shorter consumer_group") {
		t.Fatalf("Run = %v, want the consumer name refused at once", err)
	}
}

// TestEventingHeldMessagesStayInProgress: while a sidecar works on an event
// longer than the ack wait, it keeps the message in progress, so the
// server does not hand it to another member of the consumer group (here a
// plain client pulling from the same consumer).
func TestEventingHeldMessagesStayInProgress(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	f.delay = 2500 * time.Millisecond
	s := startEvSidecar(t, js, serveEvFunction(t, f), func(c *proxy.Config) {
		c.Eventing.AckWait = time.Second
		c.Eventing.Shared = true // a rival plain client can pull
	})
	s.emit(t, f.types, map[string]any{"key": "slow", "n": 1})
	waitFor(t, "the event in the sidecar's hands", func() bool {
		c, err := js.Consumer(t.Context(), evStorage.JournalStream(), "eventing=_evtest=2ESubscriber=_source")
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumAckPending == 1
	})
	rival, err := js.Consumer(t.Context(), evStorage.JournalStream(), "eventing=_evtest=2ESubscriber=_source")
	if err != nil {
		t.Fatal(err)
	}
	// The rival pulls for as long as the sidecar works on the event (2.5 s,
	// over twice the ack wait), until the sidecar has acknowledged it.
	redelivered := make(chan uint64, 1)
	cc, err := rival.Consume(func(m jetstream.Msg) {
		md, _ := m.Metadata()
		select {
		case redelivered <- md.NumDelivered:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	waitCalls(t, f, "OnOne", 1, bySubject("slow"))
	var info *jetstream.ConsumerInfo
	waitFor(t, "the event acknowledged", func() bool {
		info, err = rival.Info(t.Context())
		return err == nil && info.AckFloor.Consumer >= 1 && info.NumAckPending == 0
	})
	select {
	case n := <-redelivered:
		t.Fatalf("the held event was redelivered to another client (delivery %d)", n)
	default:
	}
	// The server delivered it once in all (a redelivery, to anyone, takes
	// the next consumer sequence), and that delivery was acknowledged.
	if info.Delivered.Consumer != 1 || info.AckFloor.Consumer != 1 {
		t.Fatalf("consumer delivered up to %d, acknowledged up to %d; want one delivery, acknowledged",
			info.Delivered.Consumer, info.AckFloor.Consumer)
	}
}

// TestEventingOrderedFailover: by default (not Shared), one sidecar of two consumes
// the subscription (its entity orders hold across replicas: the other
// stands by); when it stops, the other takes over at once and the order
// still holds, nothing handled twice.
func TestEventingOrderedFailover(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	tune := func(c *proxy.Config) {} // ordered is the default
	fs := []*evFunction{newEvFunction(t, "f0"), newEvFunction(t, "f1")}
	var ss []*evSidecar
	for _, f := range fs {
		f.delay = 2 * time.Millisecond
		ss = append(ss, startEvSidecar(t, js, serveEvFunction(t, f), tune))
	}
	n := 0
	emit := func(s *evSidecar, count int) {
		for range count {
			n++
			s.emit(t, fs[0].types, map[string]any{"key": "k" + strconv.Itoa(n%3), "n": n})
		}
	}
	// handled returns the events each function handled, and checks that
	// none was handled twice and that each entity's are in order.
	handled := func() [2][]int64 {
		t.Helper()
		var out [2][]int64
		seen := map[string]bool{}
		for i, f := range fs {
			for _, c := range f.callsOf("OnOne") {
				if seen[c.md["ce-id"]] {
					t.Fatalf("event %s handled twice", c.md["ce-id"])
				}
				seen[c.md["ce-id"]] = true
				v := fs[0].types.read("EventOne", c.payload.GetValue())["n"].(int64)
				out[i] = append(out[i], v)
			}
		}
		return out
	}
	inOrder := func(calls []evCall) {
		t.Helper()
		last := map[string]int64{}
		for _, c := range calls {
			v := fs[0].types.read("EventOne", c.payload.GetValue())["n"].(int64)
			if key := c.md["ce-subject"]; v < last[key] {
				t.Fatalf("entity %s: event %d after %d", key, v, last[key])
			} else {
				last[key] = v
			}
		}
	}
	emit(ss[0], 30)
	waitFor(t, "30 events handled", func() bool { h := handled(); return len(h[0])+len(h[1]) >= 30 })
	h := handled()
	active := 0
	if len(h[1]) > 0 {
		active = 1
	}
	if len(h[1-active]) != 0 {
		t.Fatalf("both sidecars handled events (%d and %d) in ordered mode", len(h[0]), len(h[1]))
	}
	inOrder(fs[active].callsOf("OnOne"))

	pin := pinnedClient(t, js)
	if pin == "" {
		t.Fatal("no sidecar pinned in ordered mode")
	}
	if err := ss[active].stop(); err != nil {
		t.Fatal(err)
	}
	other := 1 - active
	// The stopped sidecar unpinned: the standby takes over at once, not
	// after PinnedTTL (the server would keep the old pin until then).
	if now := pinnedClient(t, js); now == pin {
		t.Fatalf("the stopped sidecar is still pinned (%s) after its stop returned", pin)
	}
	emit(ss[other], 1)
	waitFor(t, "the standby taking over", func() bool { return len(handled()[other]) >= 1 })
	emit(ss[other], 14)
	waitFor(t, "the standby handling the next events", func() bool { return len(handled()[other]) >= 15 })
	if got := len(handled()[active]); got != 30 {
		t.Fatalf("the stopped sidecar handled %d events, want 30", got)
	}
	inOrder(fs[other].callsOf("OnOne"))
}

// pinnedClient is the client the ordered eventing consumer of evtest.Subscriber
// is pinned to, or "".
func pinnedClient(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	c, err := js.Consumer(t.Context(), evStorage.JournalStream(), "eventing=_evtest=2ESubscriber=_source")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range info.PriorityGroups {
		if g.PinnedClientID != "" {
			return g.PinnedClientID
		}
	}
	return ""
}

// TestEventingDeadLetterTooLarge: a bad journal message that fills the
// server's max payload is dead-lettered without its body (with the dead
// letter's headers it was too large, and the subscription retried its
// publication for ever); a header says how much was left out.
func TestEventingDeadLetterTooLarge(t *testing.T) {
	const maxPayload = 16 << 10
	srv := streamstest.RunServer(t, streamstest.WithMaxPayload(maxPayload))
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	startEvSidecar(t, js, serveEvFunction(t, f), nil)
	subject := evStorage.Subject(streams.Entity{Type: "source", Key: "big"})
	ack, err := js.Publish(t.Context(), subject, []byte(strings.Repeat("x", maxPayload)))
	if err != nil {
		t.Fatal(err)
	}
	h := readSubject(t, js, eventing.DeadLetterSubject(evStorage), 1)[0]
	if hd := h.Headers(); hd.Get(projections.HeaderCause) != "bad_event" || hd.Get(projections.HeaderDataOmitted) != strconv.Itoa(maxPayload) ||
		hd.Get(projections.HeaderStreamSeq) != strconv.FormatUint(ack.Sequence, 10) || len(h.Data()) != 0 {
		t.Fatalf("dead letter: headers %v, %d bytes", hd, len(h.Data()))
	}
}

// TestEventingInvalidKeyIsBadEvent: an event whose entity key cannot name
// an entity (here one byte over streams.MaxKeyLen) is dead-lettered as a
// bad event after one try, not retried MaxTries times (with the default
// back-off the source entity's next events waited half a minute for a
// call that could never succeed).
func TestEventingInvalidKeyIsBadEvent(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	s := startEvSidecar(t, js, serveEvFunction(t, f), nil)
	long := strings.Repeat("k", streams.MaxKeyLen-len("tally-")+1)
	s.emit(t, f.types, map[string]any{"key": long, "n": 1, "kind": "keyed"})
	dl := readSubject(t, js, eventing.DeadLetterSubject(evStorage), 1)[0]
	h := dl.Headers()
	if h.Get(projections.HeaderCause) != "bad_event" || h.Get(projections.HeaderTries) != "1" || h.Get(eventing.HeaderMethod) != "/evtest.Tally/Count" {
		t.Fatalf("dead letter headers %v", h)
	}
}

// TestEventingStopAbortsAHangingCall: an event whose call hangs when the
// sidecar stops has the drain time to finish, then its call is cancelled
// (the shard handoff after the drain is not held up to the command
// timeout) and the event goes to the next sidecar.
func TestEventingStopAbortsAHangingCall(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	// The slow function's subscriber call hangs until the sidecar cancels
	// it, and the command timeout is an hour: only the drain time can end
	// the stop before the failsafe.
	slow := newEvFunction(t, "slow")
	arrived, cancelled := make(chan struct{}), make(chan struct{})
	var arriveOnce, cancelOnce sync.Once
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		if cmd, ok := req.(*actionpb.ActionCommand); ok && cmd.GetServiceName() == "evtest.Subscriber" {
			arriveOnce.Do(func() { close(arrived) })
			<-ctx.Done()
			cancelOnce.Do(func() { close(cancelled) })
			return nil, ctx.Err()
		}
		return next(ctx, req)
	}))
	cloudstate.RegisterEntityDiscoveryServer(gs, slow)
	eventsourced.RegisterEventSourcedServer(gs, slow)
	actionpb.RegisterActionProtocolServer(gs, slow)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	tune := func(c *proxy.Config) {
		c.DrainTimeout = time.Second
		c.CommandTimeout = time.Hour
	}
	s1 := startEvSidecar(t, js, lis.Addr().String(), tune)
	s1.emit(t, slow.types, map[string]any{"key": "h", "n": 1})
	waitFor(t, "the event in the sidecar's hands", func() bool {
		c, err := js.Consumer(t.Context(), evStorage.JournalStream(), "eventing=_evtest=2ESubscriber=_source")
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumAckPending == 1
	})
	select { // the call is under way
	case <-arrived:
	case <-time.After(time.Minute):
		t.Fatal("the event's call did not reach the function within a minute")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s1.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("stop waited for the hanging call: the drain time (1 s) did not bound it")
	}
	select { // and the call was cancelled, not left running
	case <-cancelled:
	case <-time.After(time.Minute):
		t.Fatal("the hanging call was not cancelled")
	}
	fast := newEvFunction(t, "fast")
	startEvSidecar(t, js, serveEvFunction(t, fast), tune)
	waitCalls(t, fast, "OnOne", 1, bySubject("h"))
}
