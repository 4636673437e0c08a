package proxy_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/proxy/eventing"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// publishTopic stores a message on topic "in".
func publishTopic(t *testing.T, js jetstream.JetStream, header nats.Header, data []byte) {
	t.Helper()
	msg := &nats.Msg{Subject: eventing.TopicSubject(evStorage, "in"), Header: header, Data: data}
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
}

// TestEventingTopics: messages on an in topic (binary CloudEvents and plain
// messages) reach the method taking their type with CloudEvent metadata,
// and the replies go to the out topic as CloudEvents, as do the replies of
// a client-called method with an out topic.
func TestEventingTopics(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	s := startEvSidecar(t, js, serveEvFunction(t, f), nil)
	et := f.types
	outSubject := eventing.TopicSubject(evStorage, "out")

	// A binary-mode CloudEvent with JSON data -> FromTopic (Any) -> out.
	publishTopic(t, js, nats.Header{
		"ce-specversion": {"1.0"}, "ce-id": {"in-1"}, "ce-source": {"test"}, "ce-type": {"Greeting"},
		"ce-subject": {"s1"}, "ce-time": {"2026-01-02T03:04:05Z"}, "content-type": {"application/json"},
	}, []byte(`{"hello":"world"}`))
	c := waitCalls(t, f, "FromTopic", 1, nil)[0]
	if c.payload.GetTypeUrl() != "json.cloudstate.io/Greeting" || string(unwrapped(c.payload.GetValue())) != `{"hello":"world"}` {
		t.Fatalf("FromTopic payload %s %q", c.payload.GetTypeUrl(), unwrapped(c.payload.GetValue()))
	}
	want := map[string]string{"ce-id": "in-1", "ce-source": "test", "ce-specversion": "1.0", "ce-type": "Greeting",
		"ce-subject": "s1", "ce-time": "2026-01-02T03:04:05Z", "Content-Type": "application/json"}
	if d := cmp.Diff(want, c.md); d != "" {
		t.Fatalf("FromTopic metadata (-want +got):\n%s", d)
	}
	out := readSubject(t, js, outSubject, 1)[0]
	ev := outEventOf(t, out)
	checkEvent(t, ev, "in-1:/evtest.Relay/FromTopic:1", "evtest.Relay", "Greeting", "relayed", "application/json")
	if string(ev.Data()) != `{"hello":"world"}` || ev.Extensions()["relayedby"] != "evtest" {
		t.Fatalf("out event data %q, extensions %v", ev.Data(), ev.Extensions())
	}
	if got := out.Headers().Get(jetstream.MsgIDHeader); got != ev.ID() {
		t.Fatalf("Nats-Msg-Id %q, want the event id %q", got, ev.ID())
	}

	// A plain protobuf message typed by its content type -> Typed -> out.
	one, _ := proto.Marshal(et.build("EventOne", map[string]any{"n": 42}))
	publishTopic(t, js, nats.Header{"Content-Type": {"application/protobuf; proto=evtest.EventOne"}}, one)
	c = waitCalls(t, f, "Typed", 1, nil)[0]
	if c.md["ce-type"] != "evtest.EventOne" || !strings.HasPrefix(c.md["ce-id"], eventing.EventingStream(evStorage)+":") ||
		c.md["ce-source"] != "topic:in" || c.md["Content-Type"] != "application/protobuf; proto=evtest.EventOne" {
		t.Fatalf("Typed metadata %v", c.md)
	}
	checkTime(t, c.md["ce-time"])
	ev = outEventOf(t, readSubject(t, js, outSubject, 2)[1])
	checkEvent(t, ev, c.md["ce-id"]+":/evtest.Relay/Typed:1", "evtest.Relay", "evtest.Response", "", projections.ContentTypeProtobuf)
	if got := et.read("Response", ev.Data()); got["n"] != int64(42) || got["id"] != c.md["ce-id"] {
		t.Fatalf("Typed reply %v", got)
	}

	// Plain text -> p.cloudstate.io/string -> FromTopic -> text again.
	publishTopic(t, js, nats.Header{"Content-Type": {"text/plain"}}, []byte("hi"))
	c = waitCalls(t, f, "FromTopic", 2, nil)[1]
	if c.payload.GetTypeUrl() != "p.cloudstate.io/string" || string(unwrapped(c.payload.GetValue())) != "hi" {
		t.Fatalf("text payload %s %q", c.payload.GetTypeUrl(), unwrapped(c.payload.GetValue()))
	}
	ev = outEventOf(t, readSubject(t, js, outSubject, 3)[2])
	if ev.DataContentType() != projections.ContentTypeText || string(ev.Data()) != "hi" {
		t.Fatalf("text out event %s %q", ev.DataContentType(), ev.Data())
	}

	// A structured-mode CloudEvent -> FromTopic -> out, binary mode.
	publishTopic(t, js, nats.Header{"Content-Type": {projections.ContentTypeCloudEventsJSON}},
		[]byte(`{"specversion":"1.0","id":"st-1","source":"x","type":"Note","datacontenttype":"application/json","data":{"a":1}}`))
	c = waitCalls(t, f, "FromTopic", 3, nil)[2]
	if c.payload.GetTypeUrl() != "json.cloudstate.io/Note" || string(unwrapped(c.payload.GetValue())) != `{"a":1}` || c.md["ce-id"] != "st-1" {
		t.Fatalf("structured event: payload %s %q, metadata %v", c.payload.GetTypeUrl(), unwrapped(c.payload.GetValue()), c.md)
	}
	ev = outEventOf(t, readSubject(t, js, outSubject, 4)[3])
	checkEvent(t, ev, "st-1:/evtest.Relay/FromTopic:1", "evtest.Relay", "Note", "relayed", "application/json")

	// A client calls a method with out but no in: its reply is published.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.conn.Invoke(ctx, "/evtest.Relay/Publish", et.build("Response", map[string]any{"message": "x"}), et.msg("Response")); err != nil {
		t.Fatal(err)
	}
	ev = outEventOf(t, readSubject(t, js, outSubject, 5)[4])
	if ev.Type() != "evtest.Published" || ev.Source() != "evtest.Relay" || ev.ID() == "" || et.read("Response", ev.Data())["message"] != "x" {
		t.Fatalf("published event %v", ev)
	}
}

func outEventOf(t *testing.T, m jetstream.Msg) *event.Event {
	t.Helper()
	ev, err := projections.EventFromNATS(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func checkEvent(t *testing.T, ev *event.Event, id, source, typ, subject, ct string) {
	t.Helper()
	got := []string{ev.ID(), ev.Source(), ev.Type(), ev.Subject(), ev.DataContentType(), ev.SpecVersion()}
	if want := []string{id, source, typ, subject, ct, "1.0"}; !slices.Equal(got, want) {
		t.Fatalf("out event [id source type subject content-type specversion] = %q, want %q", got, want)
	}
	if d := time.Since(ev.Time()); d < 0 || d > time.Minute {
		t.Fatalf("out event time %v", ev.Time())
	}
}

// TestEventingMalformedTopicMessages: messages on an in topic that cannot
// become a command go to the dead-letter subject with the reason and their
// original body; the messages behind them flow on.
func TestEventingMalformedTopicMessages(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	startEvSidecar(t, js, serveEvFunction(t, f), nil)

	bad := []struct {
		header nats.Header
		data   []byte
		reason string
	}{
		{nats.Header{"Content-Type": {"application/protobuf"}}, []byte{1, 2, 3}, "without a type"},
		{nats.Header{"ce-specversion": {"0.3"}, "ce-id": {"x"}, "ce-source": {"s"}, "ce-type": {"t"}}, []byte("old"), `spec version "0.3"`},
		{nats.Header{"Content-Type": {"application/protobuf; proto=evtest.EventOne"}}, []byte{0xff}, "not a valid evtest.EventOne"},
	}
	for _, b := range bad {
		publishTopic(t, js, b.header, b.data)
	}
	publishTopic(t, js, nats.Header{"Content-Type": {"text/plain"}}, []byte("fine"))
	c := waitCalls(t, f, "FromTopic", 1, nil)[0]
	if string(unwrapped(c.payload.GetValue())) != "fine" {
		t.Fatalf("FromTopic got %q", unwrapped(c.payload.GetValue()))
	}
	// One dead letter per bad message, matched by body: they are not
	// necessarily stored in the order the messages were published.
	dls := readSubject(t, js, eventing.DeadLetterSubject(evStorage), len(bad))
	for i, b := range bad {
		j := slices.IndexFunc(dls, func(dl jetstream.Msg) bool { return string(dl.Data()) == string(b.data) })
		if j < 0 {
			t.Errorf("no dead letter for bad message %d (body %q)", i, b.data)
			continue
		}
		dl := dls[j]
		dls = slices.Delete(dls, j, j+1)
		h := dl.Headers()
		if h.Get(projections.HeaderCause) != "bad_event" || !strings.Contains(h.Get(projections.HeaderReason), b.reason) ||
			h.Get(eventing.HeaderTopicSubject) != eventing.TopicSubject(evStorage, "in") {
			t.Errorf("dead letter of bad message %d: headers %v, body %q; want reason %q", i, h, dl.Data(), b.reason)
		}
	}
	if n := len(f.callsOf("Typed")); n != 0 {
		t.Fatalf("Typed called %d times with a malformed message", n)
	}
}

// TestEventingDeadLetterDropsServerHeaders: a malformed topic message that
// was published with headers the server acts on (here an expected stream
// and last sequence) is dead-lettered without them: copied onto the dead
// letter they made the server refuse it for ever, and the message's key
// stayed stuck.
func TestEventingDeadLetterDropsServerHeaders(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	startEvSidecar(t, js, serveEvFunction(t, f), nil)

	publishTopic(t, js, nats.Header{"Content-Type": {"application/protobuf"}}, []byte("first"))
	readSubject(t, js, eventing.DeadLetterSubject(evStorage), 1)

	info, err := js.Stream(t.Context(), eventing.EventingStream(evStorage))
	if err != nil {
		t.Fatal(err)
	}
	last := strconv.FormatUint(info.CachedInfo().State.LastSeq, 10)
	publishTopic(t, js, nats.Header{
		"Content-Type":                {"application/protobuf"}, // no type: a bad event
		"Nats-Expected-Last-Sequence": {last},
		"Nats-Expected-Stream":        {eventing.EventingStream(evStorage)},
	}, []byte("second"))
	publishTopic(t, js, nats.Header{"Content-Type": {"text/plain"}}, []byte("fine"))
	waitCalls(t, f, "FromTopic", 1, nil)

	dls := readSubject(t, js, eventing.DeadLetterSubject(evStorage), 2)
	if got := string(dls[1].Data()); got != "second" {
		t.Fatalf("second dead letter %q", got)
	}
	for k := range dls[1].Headers() {
		if strings.HasPrefix(strings.ToLower(k), "nats-expected") {
			t.Errorf("dead letter keeps header %s", k)
		}
	}
}

// TestEventingStructuredTopicOrder: structured-mode CloudEvents (the
// subject inside the JSON body, no ce-subject header) of one subject are
// handled one at a time in stream order, like binary ones: while the
// first is retried, the second waits.
func TestEventingStructuredTopicOrder(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	f.fails[1] = 3
	startEvSidecar(t, js, serveEvFunction(t, f), nil)
	et := f.types
	for _, n := range []int{1, 2} {
		data, _ := proto.Marshal(et.build("EventOne", map[string]any{"n": n}))
		ev := event.New()
		ev.SetID("st-" + strconv.Itoa(n))
		ev.SetSource("test")
		ev.SetType("evtest.EventOne")
		ev.SetSubject("same")
		if err := ev.SetData(projections.ContentTypeProtobuf, data); err != nil {
			t.Fatal(err)
		}
		msg, err := projections.NATSMsg(eventing.TopicSubject(evStorage, "in"), &ev, true)
		if err != nil {
			t.Fatal(err)
		}
		publishTopic(t, js, msg.Header, msg.Data)
	}
	waitCalls(t, f, "Typed", 2, func(c evCall) bool { return !c.failed })
	var got []int64
	for _, c := range f.callsOf("Typed") {
		n := et.read("EventOne", c.payload.GetValue())["n"].(int64)
		if !c.failed {
			got = append(got, n)
		} else if slices.Contains(got, 2) {
			t.Fatalf("event 1 retried after event 2 was handled")
		}
	}
	if !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("handled %v, want [1 2] in this order", got)
	}
}

// TestEventingStructuredWithoutContentType: a structured-mode CloudEvent
// whose data is JSON and that names no datacontenttype is JSON (the JSON
// event format says to proceed as if it were application/json), so it
// reaches the function as json.cloudstate.io/<type>, not as bytes.
func TestEventingStructuredWithoutContentType(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	startEvSidecar(t, js, serveEvFunction(t, f), nil)
	publishTopic(t, js, nats.Header{"Content-Type": {projections.ContentTypeCloudEventsJSON}},
		[]byte(`{"specversion":"1.0","id":"st-1","source":"x","type":"Note","data":{"a":1}}`))
	c := waitCalls(t, f, "FromTopic", 1, nil)[0]
	if c.payload.GetTypeUrl() != "json.cloudstate.io/Note" || string(unwrapped(c.payload.GetValue())) != `{"a":1}` {
		t.Fatalf("payload %s %q", c.payload.GetTypeUrl(), unwrapped(c.payload.GetValue()))
	}
}

// TestEventingStreamDeleted: a sidecar whose eventing stream is deleted
// under it makes the stream again with its topic consumers, as it does
// a deleted consumer, so topics work again without a restart (its
// consumers retried for ever against the missing stream).
func TestEventingStreamDeleted(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	f := newEvFunction(t, "f")
	startEvSidecar(t, js, serveEvFunction(t, f), nil)
	publishTopic(t, js, nats.Header{"Content-Type": {"text/plain"}}, []byte("one"))
	waitCalls(t, f, "FromTopic", 1, nil)
	if err := js.DeleteStream(t.Context(), eventing.EventingStream(evStorage)); err != nil {
		t.Fatal(err)
	}
	// Published once the sidecar's consumer is back.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := js.Consumer(t.Context(), eventing.EventingStream(evStorage), "ev=_evtest=2ERelay=_in")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic consumer not made again: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	publishTopic(t, js, nats.Header{"Content-Type": {"text/plain"}}, []byte("two"))
	// "one" may come again too: its reply could not be published while
	// the stream was gone.
	waitCalls(t, f, "FromTopic", 1, func(c evCall) bool { return string(unwrapped(c.payload.GetValue())) == "two" })
}
