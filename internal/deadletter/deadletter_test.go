package deadletter_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/internal/cebinding"
	"github.com/jetstate/jetstate/internal/deadletter"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// newStream creates the stream DLQ on dlq.> with cfg's limits.
func newStream(t *testing.T, js jetstream.JetStream, cfg jetstream.StreamConfig) jetstream.Stream {
	t.Helper()
	cfg.Name, cfg.Subjects = "DLQ", []string{"dlq.>"}
	if cfg.Duplicates == 0 {
		cfg.Duplicates = time.Minute
	}
	s, err := js.CreateStream(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newPublisher(t *testing.T, js jetstream.JetStream, log *slog.Logger) *deadletter.Publisher {
	t.Helper()
	p, err := deadletter.New(js, deadletter.Config{RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// stored returns the messages of stream DLQ.
func stored(t *testing.T, js jetstream.JetStream) []jetstream.Msg {
	t.Helper()
	s, err := js.Stream(t.Context(), "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := js.OrderedConsumer(t.Context(), "DLQ", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(int(info.State.Msgs), jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	return out
}

func testEvent(t *testing.T, key string) *event.Event {
	t.Helper()
	ev := event.New()
	ev.SetID("jetstate_shop_journal:7:1")
	ev.SetSource("/jetstate/shop/cart")
	ev.SetType("shop.ItemAdded")
	ev.SetSubject(key)
	ev.SetExtension("jetstateseq", "3")
	if err := ev.SetData("application/protobuf", []byte{8, 1}); err != nil {
		t.Fatal(err)
	}
	return &ev
}

// TestPublish: a dead letter carries its event in binary mode, the event's
// attributes percent-encoded (a key with '%' and a line break survives),
// jetstate's headers on one line, none of the caller's Nats-* headers,
// and its Nats-Msg-Id.
func TestPublish(t *testing.T) {
	t.Parallel()
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	newStream(t, js, jetstream.StreamConfig{})
	p := newPublisher(t, js, nil)
	const key = "c 2/50%\nof é"
	cases := []struct {
		name     string
		letter   deadletter.Letter
		wantData string
		wantHdr  map[string]string // besides the ce-* of the event, if any
	}{
		{
			name: "event",
			letter: deadletter.Letter{
				Subject: "dlq.shop.view", Event: testEvent(t, key),
				Cause: deadletter.CauseRejected, Reason: errors.New("400: no\r\nthanks, é"), Tries: 1,
				JournalSubject: "jetstate.shop.cart.k", StreamSeq: 7, Index: 1, MsgID: "dead:view-g1:jetstate_shop_journal:7:1",
			},
			wantData: "\x08\x01",
			wantHdr: map[string]string{
				deadletter.HeaderReason: "400: no  thanks, é", deadletter.HeaderCause: "rejected", deadletter.HeaderTries: "1",
				deadletter.HeaderJournalSubject: "jetstate.shop.cart.k", deadletter.HeaderStreamSeq: "7", deadletter.HeaderEventIndex: "1",
				jetstream.MsgIDHeader: "dead:view-g1:jetstate_shop_journal:7:1",
			},
		},
		{
			name: "event with other data and headers",
			letter: deadletter.Letter{
				Subject: "dlq.eventing", Event: testEvent(t, key), Data: []byte("any"),
				Header: nats.Header{"Jetstate-Eventing-Method": {"/shop.Cart/Add"}, "Nats-Rollup": {"all"},
					"nats-expected-last-sequence": {"99"}, "Nats-Msg-Id": {"theirs"}},
				Cause: deadletter.CauseRetries, Reason: errors.New("down"), Tries: 10,
				StreamSeq: 8, EventType: "type.googleapis.com/shop.ItemAdded", MsgID: "dead:c:8:0",
			},
			wantData: "any",
			wantHdr: map[string]string{
				"Jetstate-Eventing-Method": "/shop.Cart/Add", deadletter.HeaderEventType: "type.googleapis.com/shop.ItemAdded",
				deadletter.HeaderReason: "down", deadletter.HeaderCause: "retries", deadletter.HeaderTries: "10",
				deadletter.HeaderStreamSeq: "8", deadletter.HeaderEventIndex: "0", jetstream.MsgIDHeader: "dead:c:8:0",
			},
		},
		{
			name: "raw",
			letter: deadletter.Letter{
				Subject: "dlq.shop.view", Data: []byte("not an entry"),
				Cause: deadletter.CauseBadEvent, Reason: errors.New("bad \xff entry"),
				JournalSubject: "jetstate.shop.cart.z", StreamSeq: 9, Index: -1, EventType: "type.googleapis.com/x\n.Y",
			},
			wantData: "not an entry",
			wantHdr: map[string]string{
				deadletter.HeaderReason: "bad \uFFFD entry", deadletter.HeaderCause: "bad_event", deadletter.HeaderTries: "0",
				deadletter.HeaderJournalSubject: "jetstate.shop.cart.z", deadletter.HeaderStreamSeq: "9", deadletter.HeaderEventIndex: "-1",
				deadletter.HeaderEventType: "type.googleapis.com/x .Y",
			},
		},
	}
	for _, tc := range cases {
		if err := p.Publish(t.Context(), tc.letter, nil); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	msgs := stored(t, js)
	if len(msgs) != len(cases) {
		t.Fatalf("%d dead letters stored, want %d", len(msgs), len(cases))
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := msgs[i]
			got := map[string]string{}
			for k, vs := range m.Headers() {
				if strings.HasPrefix(strings.ToLower(k), "ce-") || strings.EqualFold(k, "content-type") {
					continue
				}
				got[k] = strings.Join(vs, ",")
			}
			if diff := cmp.Diff(tc.wantHdr, got); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			if string(m.Data()) != tc.wantData {
				t.Errorf("body %q, want %q", m.Data(), tc.wantData)
			}
			if tc.letter.Event == nil {
				return
			}
			ev, err := cebinding.EventFromNATS(&nats.Msg{Header: m.Headers(), Data: m.Data()})
			if err != nil {
				t.Fatalf("dead letter is not a CloudEvent: %v", err)
			}
			if ev.Subject() != key || ev.ID() != tc.letter.Event.ID() || ev.Extensions()["jetstateseq"] != "3" {
				t.Errorf("event read back: %v", ev)
			}
		})
	}
}

// TestPublishOnce: the same MsgID twice (a redelivered event) makes one
// dead letter.
func TestPublishOnce(t *testing.T) {
	t.Parallel()
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	newStream(t, js, jetstream.StreamConfig{})
	p := newPublisher(t, js, nil)
	for _, id := range []string{"dead:a", "dead:a", "dead:b"} {
		l := deadletter.Letter{Subject: "dlq.x", Data: []byte(id), Cause: deadletter.CauseRetries, Reason: errors.New("x"), MsgID: id}
		if err := p.Publish(t.Context(), l, nil); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, m := range stored(t, js) {
		got = append(got, string(m.Data()))
	}
	if diff := cmp.Diff([]string{"dead:a", "dead:b"}, got); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
}

// TestPublishTooLarge: a dead letter that its headers push over the
// server's max payload, or over the stream's max message size, is stored
// without its body, HeaderDataOmitted saying how much was left out.
func TestPublishTooLarge(t *testing.T) {
	t.Parallel()
	const limit = 16 << 10
	for _, tc := range []struct {
		name   string
		opts   []streamstest.Option
		stream jetstream.StreamConfig
	}{
		{name: "server max payload", opts: []streamstest.Option{streamstest.WithMaxPayload(limit)}},
		{name: "stream max message size", stream: jetstream.StreamConfig{MaxMsgSize: limit}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := streamstest.RunServer(t, tc.opts...)
			js := srv.JetStream(t)
			newStream(t, js, tc.stream)
			p := newPublisher(t, js, nil)
			data := bytes.Repeat([]byte{'x'}, limit-64)
			l := deadletter.Letter{Subject: "dlq.x", Event: testEvent(t, "k"), Data: data,
				Cause: deadletter.CauseRejected, Reason: errors.New(strings.Repeat("why ", 20)), StreamSeq: 3}
			if err := p.Publish(t.Context(), l, nil); err != nil {
				t.Fatal(err)
			}
			msgs := stored(t, js)
			if len(msgs) != 1 {
				t.Fatalf("%d stored", len(msgs))
			}
			h := msgs[0].Headers()
			if h.Get(deadletter.HeaderDataOmitted) != strconv.Itoa(len(data)) || len(msgs[0].Data()) != 0 ||
				h.Get(deadletter.HeaderStreamSeq) != "3" || h.Get("ce-id") == "" {
				t.Errorf("headers %v, %d bytes of body", h, len(msgs[0].Data()))
			}
		})
	}
}

// logBuffer collects log output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestPublishNoStream: with no stream on the subject, the dead letter goes
// out on core NATS to whoever listens, with a warning that it was not
// stored.
func TestPublishNoStream(t *testing.T) {
	t.Parallel()
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	nc := srv.Connect(t)
	sub, err := nc.SubscribeSync("nostream.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	p := newPublisher(t, js, slog.New(slog.NewTextHandler(&logs, nil)))
	l := deadletter.Letter{Subject: "nostream.x", Data: []byte("raw"), Cause: deadletter.CauseBadEvent, Reason: errors.New("bad"), MsgID: "dead:1"}
	if err := p.Publish(t.Context(), l, nil); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "raw" || m.Header.Get(deadletter.HeaderCause) != "bad_event" {
		t.Errorf("received %q with %v", m.Data, m.Header)
	}
	if !strings.Contains(logs.String(), "not stored") {
		t.Errorf("no warning in the log:\n%s", logs.String())
	}
}

// TestPublishRetries: a dead letter the stream refuses (it is full) is
// tried again, the keep-alive hook called between tries, until it is
// stored; or until the context ends.
func TestPublishRetries(t *testing.T) {
	t.Parallel()
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	s := newStream(t, js, jetstream.StreamConfig{MaxMsgs: 1, Discard: jetstream.DiscardNew})
	if _, err := js.Publish(t.Context(), "dlq.first", nil); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, js, nil)
	l := deadletter.Letter{Subject: "dlq.x", Data: []byte("late"), Cause: deadletter.CauseRetries, Reason: errors.New("x")}

	t.Run("until stored", func(t *testing.T) {
		tried := make(chan struct{}, 100)
		done := make(chan error, 1)
		go func() {
			done <- p.Publish(t.Context(), l, func() {
				select {
				case tried <- struct{}{}:
				default:
				}
			})
		}()
		<-tried
		<-tried
		if err := s.Purge(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if msgs := stored(t, js); len(msgs) != 1 || string(msgs[0].Data()) != "late" {
			t.Errorf("stored %d messages", len(msgs))
		}
	})
	t.Run("until the context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		err := p.Publish(ctx, l, cancel)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Publish: %v, want the context's error", err)
		}
	})
}

func TestHeaderSafe(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain":          "plain",
		"two\r\nlines":   "two  lines",
		"tab\tdel\x7f":   "tab del ",
		"é 日本 \u2028":    "é 日本 \u2028",
		"bad \xff utf-8": "bad \uFFFD utf-8",
	} {
		if got := deadletter.HeaderSafe(in); got != want {
			t.Errorf("HeaderSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if _, err := deadletter.New(nil, deadletter.Config{RetryMin: time.Second, RetryMax: time.Millisecond}); err == nil ||
		!strings.Contains(err.Error(), "retry min") {
		t.Errorf("New: %v", err)
	}
}
