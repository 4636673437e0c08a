package projections_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// env is one test's server, a provisioned service and its journal.
type env struct {
	srv     *streamstest.Server
	js      jetstream.JetStream
	storage streams.Config
	journal *streams.Journal

	mu       sync.Mutex
	versions map[streams.Entity]streams.Version
}

// newEnv starts a server and provisions the service "shop" on it.
func newEnv(t *testing.T) *env {
	t.Helper()
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	cfg := streams.Config{Service: "shop"}
	if err := streams.Provision(t.Context(), js, cfg, streams.StoreConfig{}); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	j, err := streams.NewJournal(js, cfg)
	if err != nil {
		t.Fatalf("NewJournal: %v", err)
	}
	return &env{srv: srv, js: js, storage: cfg, journal: j, versions: map[streams.Entity]streams.Version{}}
}

// newJS is a JetStream client on a connection of its own, so a test can
// kill a projector by closing it.
func (e *env) newJS(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := e.srv.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// appendEvents commits events as one command of entity ent.
func (e *env) appendEvents(t testing.TB, ent streams.Entity, events ...streams.Event) streams.Version {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	v, err := e.journal.Append(context.Background(), ent, e.versions[ent], events)
	if err != nil {
		t.Errorf("append %s: %v", ent, err)
		return streams.Version{}
	}
	e.versions[ent] = v
	return v
}

// strEvent is an event holding a google.protobuf.StringValue.
func strEvent(s string) streams.Event {
	b, _ := proto.Marshal(wrapperspb.String(s))
	return streams.Event{Type: typeURL(wrapperspb.String("")), Data: b}
}

func typeURL(m proto.Message) string {
	a, _ := anypb.New(m)
	return a.TypeUrl
}

func (e *env) config(name string, sink projections.Sink) projections.Config {
	return projections.Config{
		Storage:      e.storage,
		Name:         name,
		Sink:         sink,
		InfoInterval: 50 * time.Millisecond,
		RetryMin:     5 * time.Millisecond,
		RetryMax:     50 * time.Millisecond,
		SendTimeout:  2 * time.Second,
	}
}

// projector is a Run or Rebuild started by run.
type projector struct {
	cancel context.CancelFunc
	ended  chan struct{} // closed once f returned
	err    error         // f's error, set before ended is closed
	seen   atomic.Bool   // the test took f's error (stop or wait)
}

// run starts f (a Projection's Run or Rebuild) in the background. When the
// test ends the projector is stopped, and the test fails if it then returns
// an error or does not return within 20 s, unless the test took its error
// itself (stop, wait).
func run(t *testing.T, f func(context.Context) error) *projector {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	p := &projector{cancel: cancel, ended: make(chan struct{})}
	go func() {
		p.err = f(ctx)
		close(p.ended)
	}()
	t.Cleanup(func() {
		err := p.halt()
		if !p.seen.Load() && err != nil {
			t.Errorf("projector: %v", err)
		}
	})
	return p
}

// halt cancels the projector and returns its error.
func (p *projector) halt() error {
	p.cancel()
	select {
	case <-p.ended:
		return p.err
	case <-time.After(20 * time.Second):
		return errors.New("projector did not stop within 20s")
	}
}

// stop cancels the projector and returns its error (nil once stopped
// cleanly), for the test to check.
func (p *projector) stop() error {
	p.seen.Store(true)
	return p.halt()
}

// wait waits for the projector to end by itself and returns its error,
// for the test to check.
func (p *projector) wait(t *testing.T) error {
	t.Helper()
	p.seen.Store(true)
	select {
	case <-p.ended:
		return p.err
	case <-time.After(30 * time.Second):
		t.Fatal("projector still running after 30s")
		return nil
	}
}

// recorder collects CloudEvents in arrival order.
type recorder struct {
	mu     sync.Mutex
	events []*event.Event
	raw    [][]byte // the bodies, where the test keeps them
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) add(ev *event.Event, raw []byte) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.raw = append(r.raw, raw)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() []*event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*event.Event(nil), r.events...)
}

// waitFor waits until ok holds for the events received so far.
func (r *recorder) waitFor(t *testing.T, what string, ok func([]*event.Event) bool) []*event.Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		evs := r.snapshot()
		if ok(evs) {
			return evs
		}
		select {
		case <-r.notify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; have %d events", what, len(evs))
		}
	}
}

// waitUntil waits until ok holds, checking every 20 ms.
func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !ok() {
		select {
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitCount waits for at least n distinct event ids.
func (r *recorder) waitCount(t *testing.T, n int) []*event.Event {
	t.Helper()
	return r.waitFor(t, fmt.Sprintf("%d distinct events", n), func(evs []*event.Event) bool {
		return len(distinct(evs)) >= n
	})
}

// distinct keeps the first event of each id, in arrival order.
func distinct(evs []*event.Event) []*event.Event {
	seen := map[string]bool{}
	var out []*event.Event
	for _, ev := range evs {
		if !seen[ev.ID()] {
			seen[ev.ID()] = true
			out = append(out, ev)
		}
	}
	return out
}

// httpTarget is an httptest server decoding CloudEvents with sdk-go's
// HTTP binding; respond decides each answer (nil: 200 and record).
type httpTarget struct {
	*httptest.Server
	rec     *recorder
	respond atomic.Pointer[func(ev *event.Event) int]
	calls   atomic.Int64
}

func newHTTPTarget(t *testing.T) *httpTarget {
	h := &httpTarget{rec: newRecorder()}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.calls.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		ev, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			t.Errorf("http target: %v", err)
			return
		}
		if !strings.HasPrefix(r.Header.Get("Content-Type"), projections.ContentTypeCloudEventsJSON) {
			// Binary mode: header values are percent-encoded (HTTP binding
			// 3.1.3.2), which sdk-go's reader leaves to the application.
			for _, s := range []string{ev.ID(), ev.Type(), ev.Subject()} {
				if _, err := url.PathUnescape(s); err != nil {
					t.Errorf("http target: %q: %v", s, err)
				}
			}
			subj, _ := url.PathUnescape(ev.Subject())
			ev.SetSubject(subj)
		}
		code := http.StatusOK
		if f := h.respond.Load(); f != nil {
			code = (*f)(ev)
		}
		if code/100 == 2 {
			h.rec.add(ev, body)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *httpTarget) setRespond(f func(ev *event.Event) int) { h.respond.Store(&f) }

// subscribe collects the CloudEvents published on subject.
func subscribe(t *testing.T, nc *nats.Conn, subject string) *recorder {
	t.Helper()
	rec := newRecorder()
	_, err := nc.Subscribe(subject, func(m *nats.Msg) {
		ev, err := projections.EventFromNATS(m)
		if err != nil {
			t.Errorf("EventFromNATS: %v", err)
			return
		}
		rec.add(ev, m.Data)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return rec
}

func seqOf(t testing.TB, ev *event.Event) uint64 {
	t.Helper()
	v, _ := ev.Extensions()[projections.SeqExtension].(string)
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("event %s: %s = %q", ev.ID(), projections.SeqExtension, v)
	}
	return n
}

// checkOrder checks that every entity's events arrived in order without a
// gap: each is either the next one or a repeat of an earlier one (a
// redelivery), and the last reaches want[subject].
func checkOrder(t *testing.T, evs []*event.Event, want map[string]uint64) {
	t.Helper()
	last := map[string]uint64{}
	for _, ev := range evs {
		s, n := ev.Subject(), seqOf(t, ev)
		switch {
		case n == last[s]+1:
			last[s] = n
		case n <= last[s]:
			// a redelivery
		default:
			t.Errorf("entity %s: event %d arrived after %d (gap)", s, n, last[s])
			last[s] = n
		}
	}
	for s, n := range want {
		if last[s] != n {
			t.Errorf("entity %s: reached event %d, want %d", s, last[s], n)
		}
	}
}

// testLogger logs the projector's lifecycle and warnings through t.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}
