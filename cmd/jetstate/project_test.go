package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

func TestParseProject(t *testing.T) {
	env := envMap{"NATS_URL": "nats://n:4222", "JETSTATE_SERVICE": "shop", "JETSTATE_PROJECTION": "view",
		"K_SINK": "http://sink.default.svc/", "K_CE_OVERRIDES": `{"extensions":{"team":"carts"}}`, "METRICS_PORT": "9393"}
	c, err := parseProject(nil, env.get, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.URL != "nats://n:4222" || c.Projection.Storage.Service != "shop" || c.Projection.Name != "view" ||
		c.Sink != "http://sink.default.svc/" || c.Overrides["team"] != "carts" || c.AdminListen != ":9393" ||
		c.Structured || c.JSON || c.Projection.Start != projections.StartBeginning || c.Projection.AckEach {
		t.Fatalf("from the environment: %+v", c)
	}
	if c, err := parseProject(nil, envMap{"JETSTATE_ACK_EACH": "true"}.get, &bytes.Buffer{}); err == nil || !c.Projection.AckEach {
		t.Fatalf("JETSTATE_ACK_EACH=true: AckEach %v (err %v, want the missing flags' error)", c.Projection.AckEach, err)
	}
	c, err = parseProject([]string{"-sink", "nats:cart.{type}.{key}", "-mode", "structured", "-descriptors", "a.binpb, b.binpb",
		"-start", "2026-01-02T03:04:05Z", "-types", "cart,wish list", "-workers", "4", "-max-tries", "3",
		"-retry-min", "1s", "-retry-max", "2s", "-dead-letter", "dl.view", "-rebuild", "-ack-each"}, env.get, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Projection
	if c.Sink != "nats:cart.{type}.{key}" || !c.Structured || !c.JSON || len(c.Descriptors) != 2 || c.Descriptors[1] != "b.binpb" ||
		p.Start != projections.StartTime || !p.StartTime.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) ||
		len(p.Types) != 2 || p.Types[1] != "wish list" || p.Workers != 4 || p.MaxTries != 3 ||
		p.RetryMin != time.Second || p.RetryMax != 2*time.Second || p.DeadLetterSubject != "dl.view" || !c.Rebuild || !p.AckEach {
		t.Fatalf("from flags: %+v", c)
	}
	if c, err := parseProject([]string{"-start", "now", "-descriptors", "x", "-data", "protobuf"}, env.get, &bytes.Buffer{}); err != nil ||
		c.Projection.Start != projections.StartNew || c.JSON {
		t.Fatalf("-start now -data protobuf: %+v, %v", c, err)
	}

	for _, tc := range []struct {
		name string
		args []string
		env  envMap
		want string
	}{
		{"no sink", nil, envMap{"JETSTATE_SERVICE": "s", "JETSTATE_PROJECTION": "v"}, "-sink (or K_SINK) is required"},
		{"bad sink", []string{"-sink", "kafka:topic"}, env, "want nats:<subject>"},
		{"wildcard subject", []string{"-sink", "nats:a.*"}, env, "not a valid publish subject"},
		{"empty subject", []string{"-sink", "jetstream:"}, env, "empty subject"},
		{"unknown placeholder", []string{"-sink", "nats:a.{entity}"}, env, "unknown placeholder {entity}"},
		{"no service", []string{"-sink", "nats:x"}, envMap{"JETSTATE_PROJECTION": "v"}, "service"},
		{"no name", []string{"-sink", "nats:x"}, envMap{"JETSTATE_SERVICE": "s"}, "name"},
		{"bad name", []string{"-name", "a.b"}, env, "name"},
		{"bad mode", []string{"-mode", "batched"}, env, "-mode"},
		{"json without descriptors", []string{"-data", "json"}, env, "-data json needs -descriptors"},
		{"bad data", []string{"-data", "xml"}, env, "-data"},
		{"bad start", []string{"-start", "yesterday"}, env, "-start"},
		{"retry min above max", []string{"-retry-min", "5s", "-retry-max", "1s"}, env, "retry min"},
		{"bad overrides", nil, envMap{"JETSTATE_SERVICE": "s", "JETSTATE_PROJECTION": "v", "K_SINK": "nats:x", "K_CE_OVERRIDES": "{"}, "K_CE_OVERRIDES"},
		// Found only at the first event, every event was dead-lettered.
		{"override name", nil, envMap{"JETSTATE_SERVICE": "s", "JETSTATE_PROJECTION": "v", "K_SINK": "nats:x",
			"K_CE_OVERRIDES": `{"extensions":{"my-team":"x"}}`}, "K_CE_OVERRIDES: extension my-team"},
		{"override of an attribute", nil, envMap{"JETSTATE_SERVICE": "s", "JETSTATE_PROJECTION": "v", "K_SINK": "nats:x",
			"K_CE_OVERRIDES": `{"extensions":{"subject":"x"}}`}, "K_CE_OVERRIDES: extension subject"},
		{"stray argument", []string{"view"}, env, "unexpected arguments"},
		{"unknown flag", []string{"-nope"}, env, "-nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseProject(tc.args, tc.env.get, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseProject(%q) = %v, want an error with %q", tc.args, err, tc.want)
			}
		})
	}
	if _, err := parseProject([]string{"-h"}, env.get, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h = %v", err)
	}
}

func appendString(t *testing.T, j *streams.Journal, key string, v streams.Version, s string) streams.Version {
	t.Helper()
	a, _ := anypb.New(wrapperspb.String(s))
	v, err := j.Append(t.Context(), streams.Entity{Type: "cart", Key: key}, v, []streams.Event{{Type: a.TypeUrl, Data: a.Value}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// startProject runs `jetstate project` with args in the background.
//
// exited is closed once the command returned, whether stop was called or not.
func startProject(t *testing.T, args ...string) (stop func() error, out *syncBuffer, exited <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	out = &syncBuffer{}
	done := make(chan error, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		done <- dispatch(ctx, append([]string{"project"}, args...), out)
	}()
	stopped := false
	var err error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				err = errors.New("jetstate project did not stop")
			}
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop, out, ended
}

func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestProjectCommand runs `jetstate project` started before the service
// is provisioned (it waits), with a NATS sink (a subject per entity) and JSON data from a
// descriptor file, then operates it with `jetstate projection`.
func TestProjectCommand(t *testing.T) {
	srv := streamstest.RunServer(t)
	nc := srv.Connect(t)
	events := make(chan *event.Event, 100)
	if _, err := nc.Subscribe("view.cart.alice", func(m *nats.Msg) {
		ev, err := projections.EventFromNATS(m)
		if err != nil {
			t.Errorf("EventFromNATS: %v", err)
			return
		}
		events <- ev
	}); err != nil {
		t.Fatal(err)
	}
	set := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{protodesc.ToFileDescriptorProto(wrapperspb.File_google_protobuf_wrappers_proto)}}
	b, _ := proto.Marshal(set)
	desc := filepath.Join(t.TempDir(), "events.binpb")
	if err := os.WriteFile(desc, b, 0o644); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	stop, out, _ := startProject(t, "-nats-url", srv.ClientURL(), "-service", "shop", "-name", "view", "-sink", "nats:view.{type}.{key}",
		"-descriptors", desc, "-admin", admin)
	waitUntil(t, "the admin endpoint", func() bool { return httpStatus("http://"+admin+"/alive") == http.StatusOK })
	if got := httpStatus("http://" + admin + "/ready"); got != http.StatusServiceUnavailable {
		t.Errorf("/ready before the service exists = %d, want 503", got)
	}

	// Now the service appears.
	js := srv.JetStream(t)
	if err := streams.Provision(t.Context(), js, streams.Config{Service: "shop"}, streams.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	j, err := streams.NewJournal(js, streams.Config{Service: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	v := appendString(t, j, "alice", streams.Version{}, "apple")
	v = appendString(t, j, "alice", v, "pear")
	for _, want := range []string{`"apple"`, `"pear"`} {
		select {
		case ev := <-events:
			if string(ev.Data()) != want || ev.DataContentType() != projections.ContentTypeJSON || ev.Subject() != "alice" {
				t.Errorf("event %s %s %q, want JSON %s", ev.ID(), ev.DataContentType(), ev.Data(), want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no event %s; output:\n%s", want, out.String())
		}
	}
	waitUntil(t, "/ready", func() bool { return httpStatus("http://"+admin+"/ready") == http.StatusOK })
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `jetstate_projection_events_delivered_total{projection="view",service="shop"} 2`) {
		t.Errorf("metrics lack 2 delivered events:\n%s", metrics)
	}

	ops := func(args ...string) (string, error) {
		var b bytes.Buffer
		err := dispatch(t.Context(), append(append([]string{"projection"}, args...), "-nats-url", srv.ClientURL(), "-service", "shop"), &b)
		return b.String(), err
	}
	mustOp := func(args ...string) string {
		t.Helper()
		s, err := ops(args...)
		if err != nil {
			t.Fatalf("projection %q: %v\n%s", args, err, s)
		}
		return s
	}
	// The projection's state as the CLI reads it (lines up to the lag).
	waitUntil(t, "the acknowledgements", func() bool {
		s, _ := ops("list")
		return strings.Contains(s, "view        1           active  0        0            2          no      all")
	})
	if s := mustOp("list"); !strings.HasPrefix(s, "PROJECTION  GENERATION  STATE   PENDING  ACK PENDING  DELIVERED  PAUSED  TYPES\n") {
		t.Errorf("list:\n%s", s)
	}
	if s := mustOp("status", "view"); !strings.Contains(s, "projection view of service shop") ||
		!strings.Contains(s, "1           view-g1   active  0        0            0            2          2          no      all") {
		t.Errorf("status:\n%s", s)
	}

	// Paused: nothing is delivered, the lag shows; resumed: it flows.
	if s := mustOp("pause", "view"); s != "projection view paused until resumed\nno event in flight: the sink receives nothing more until resumed\n" {
		t.Errorf("pause: %q", s)
	}
	appendString(t, j, "alice", v, "plum")
	waitUntil(t, "the lag while paused", func() bool {
		s, _ := ops("status", "-name", "view")
		return strings.Contains(s, "active  1        0") && strings.Contains(s, "  yes  ")
	})
	// The server holds plum (pending 1, none in flight on the paused
	// consumer), so the sink has had nothing; after resume plum is next.
	select {
	case ev := <-events:
		t.Fatalf("event %s delivered while paused", ev.Data())
	default:
	}
	mustOp("resume", "view")
	if ev := next(t, events); string(ev.Data()) != `"plum"` {
		t.Fatalf("after resume: %s", ev.Data())
	}

	// Rebuild in place: the running projector replays everything.
	if s := mustOp("rebuild", "view"); !strings.Contains(s, "generation 2 replays every event") {
		t.Errorf("rebuild: %q", s)
	}
	for _, want := range []string{`"apple"`, `"pear"`, `"plum"`} {
		if ev := next(t, events); string(ev.Data()) != want {
			t.Fatalf("replay: %s, want %s", ev.Data(), want)
		}
	}
	waitUntil(t, "generation 2 in status", func() bool {
		s, _ := ops("status", "view")
		return strings.Contains(s, "view-g2") && !strings.Contains(s, "view-g1")
	})

	// Errors name what is wrong.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "nope"}, `service "shop" has no projection "nope"`},
		{[]string{"pause", "nope"}, `has no projection "nope"`},
	} {
		if _, err := ops(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("projection %q = %v, want %q", tc.args, err, tc.want)
		}
	}
	if err := dispatch(t.Context(), []string{"projection", "list", "-service", "ghost", "-nats-url", srv.ClientURL()}, &bytes.Buffer{}); err == nil ||
		!strings.Contains(err.Error(), `service "ghost" is not provisioned`) {
		t.Errorf("list of an unknown service: %v", err)
	}

	if err := stop(); err != nil {
		t.Fatalf("project: %v", err)
	}
	if s := mustOp("delete", "view"); s != "projection view deleted\n" {
		t.Errorf("delete: %q", s)
	}
	if s := mustOp("list"); s != "service shop has no projections\n" {
		t.Errorf("list after delete: %q", s)
	}
}

func next(t *testing.T, events chan *event.Event) *event.Event {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event within 30s")
		return nil
	}
}

func TestParseProjection(t *testing.T) {
	env := envMap{"JETSTATE_SERVICE": "shop"}
	c, err := parseProjection([]string{"pause", "view", "-for", "1h"}, env.get, &bytes.Buffer{})
	if err != nil || c.Op != "pause" || c.Name != "view" || time.Until(c.Until) < 59*time.Minute {
		t.Fatalf("pause view -for 1h: %+v, %v", c, err)
	}
	c, err = parseProjection([]string{"status", "-name", "view", "-service", "other"}, env.get, &bytes.Buffer{})
	if err != nil || c.Name != "view" || c.Storage.Service != "other" {
		t.Fatalf("status -name view: %+v, %v", c, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "want a command"},
		{[]string{"explode", "view"}, `unknown command "explode"`},
		{[]string{"status"}, "name is required"},
		{[]string{"status", "a.b"}, "name"},
		{[]string{"status", "view", "extra"}, "unexpected arguments"},
		{[]string{"pause", "view", "-for", "1h", "-until", "2030-01-01T00:00:00Z"}, "not both"},
		{[]string{"pause", "view", "-until", "tomorrow"}, "-until"},
		{[]string{"resume", "view", "-for", "1h"}, "-for"},
	} {
		if _, err := parseProjection(tc.args, env.get, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseProjection(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, err := parseProjection([]string{"list"}, envMap{}.get, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "-service") {
		t.Errorf("list without a service: %v", err)
	}
}

// TestProjectRebuild: `jetstate project -rebuild` replays into its own
// sink beside the serving projector, takes over once caught up, and the
// old projector stops (successfully: another serves).
func TestProjectRebuild(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	if err := streams.Provision(t.Context(), js, streams.Config{Service: "shop"}, streams.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	j, err := streams.NewJournal(js, streams.Config{Service: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	nc := srv.Connect(t)
	count := func(subject string) *atomic.Int64 {
		var n atomic.Int64
		if _, err := nc.Subscribe(subject, func(*nats.Msg) { n.Add(1) }); err != nil {
			t.Fatal(err)
		}
		return &n
	}
	oldSink, newSink := count("old"), count("new")
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	v := appendString(t, j, "a", streams.Version{}, "1")
	common := []string{"-nats-url", srv.ClientURL(), "-service", "shop", "-name", "view"}
	oldAdmin := freeAddr(t)
	stopOld, _, oldExited := startProject(t, append(common, "-sink", "nats:old", "-admin", oldAdmin)...)
	waitUntil(t, "the first projector", func() bool { return oldSink.Load() == 1 })

	admin := freeAddr(t)
	stopNew, out, _ := startProject(t, append(common, "-sink", "nats:new", "-admin", admin, "-rebuild")...)
	waitUntil(t, "the rebuild to take over", func() bool { return httpStatus("http://"+admin+"/ready") == http.StatusOK })
	// The old projector ends by itself: its admin endpoint goes away.
	waitUntil(t, "the old projector to stop", func() bool { return httpStatus("http://"+oldAdmin+"/alive") == 0 })
	select { // the command returns: a pod's container ends instead of idling without probes
	case <-oldExited:
	case <-time.After(10 * time.Second):
		t.Fatal("the old projector's command did not return by itself")
	}
	if err := stopOld(); err != nil {
		t.Errorf("the old projector: %v", err)
	}
	appendString(t, j, "a", v, "2")
	waitUntil(t, "the new projector to deliver", func() bool { return newSink.Load() == 2 })
	if n := oldSink.Load(); n != 1 {
		t.Errorf("old sink got %d events, want 1", n)
	}
	if err := stopNew(); err != nil {
		t.Errorf("the new projector: %v\n%s", err, out.String())
	}
}

// TestOverrideSink: K_CE_OVERRIDES extensions are set on every event sent;
// an invalid one is a rejection (dead letter), not a retry.
func TestOverrideSink(t *testing.T) {
	var got *event.Event
	next := projections.SinkFunc(func(_ context.Context, ev *event.Event) error { got = ev; return nil })
	ev := event.New()
	ev.SetID("1")
	ev.SetSource("/s")
	ev.SetType("t")
	if err := (overrideSink{next: next, ext: map[string]string{"team": "carts"}}).Send(t.Context(), &ev); err != nil {
		t.Fatal(err)
	}
	if got.Extensions()["team"] != "carts" {
		t.Errorf("extensions %v", got.Extensions())
	}
	if _, ok := ev.Extensions()["team"]; ok {
		t.Error("the projection's event was changed")
	}
	err := (overrideSink{next: next, ext: map[string]string{"Bad-Name": "x"}}).Send(t.Context(), &ev)
	if !errors.Is(err, projections.ErrRejected) {
		t.Errorf("invalid extension: %v", err)
	}
}

// TestProjectionPauseWaitsForHeldEvents: `projection pause` returns once
// the events a projector received before the pause are accepted by its
// sink, so a read model reset after it gets nothing more (the documented
// rebuild in place: pause, reset, rebuild, resume). It used to return at
// once while the projector still sent what it held into the freshly reset
// view, where the replay's dedupe then kept those events out of order.
func TestProjectionPauseWaitsForHeldEvents(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	storage := streams.Config{Service: "shop"}
	if err := streams.Provision(t.Context(), js, storage, streams.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	j, err := streams.NewJournal(js, storage)
	if err != nil {
		t.Fatal(err)
	}
	var v streams.Version
	for _, s := range []string{"a1", "a2", "a3"} {
		v = appendString(t, j, "a", v, s)
	}
	release := make(chan struct{})
	var sent atomic.Int32
	sink := projections.SinkFunc(func(ctx context.Context, _ *event.Event) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		sent.Add(1)
		return nil
	})
	p, err := projections.New(js, projections.Config{Storage: storage, Name: "view", Sink: sink, InfoInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runDone := make(chan error, 1)
	go func() { runDone <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-runDone })
	waitUntil(t, "the events held by the projector", func() bool {
		st, err := p.Status(t.Context())
		return err == nil && st[0].AckPending == 3
	})

	var out syncBuffer
	type result struct {
		err  error
		sent int32 // events the sink had taken when pause returned
	}
	paused := make(chan result, 1)
	go func() {
		err := dispatch(t.Context(), []string{"projection", "pause", "view", "-nats-url", srv.ClientURL(), "-service", "shop"}, &out)
		paused <- result{err, sent.Load()}
	}()
	// The pause is in force on the server while the projector holds the
	// three events; only then are they let through.
	waitUntil(t, "the pause in force with 3 events held", func() bool {
		st, err := p.Status(t.Context())
		return err == nil && st[0].Paused && st[0].AckPending == 3
	})
	close(release)
	var r result
	select {
	case r = <-paused:
		if r.err != nil {
			t.Fatal(r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pause did not return after the events were sent")
	}
	if r.sent != 3 {
		t.Fatalf("pause returned with %d of 3 held events sent:\n%s", r.sent, out.String())
	}
	if s := out.String(); !strings.Contains(s, "paused until resumed") || !strings.Contains(s, "no event in flight") {
		t.Errorf("pause said %q", s)
	}
}
