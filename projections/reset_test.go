package projections_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	_ "google.golang.org/protobuf/types/known/structpb" // struct.proto among the linked-in files
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
)

// TestReset: a reset made from another Projection value (as the CLI does)
// while the projector runs replays every event into the same sink, in
// order, after a pause that the reset keeps; the old generation is gone.
// The projector's own dead-letter subject, which the CLI does not know, is
// still what List reports.
func TestReset(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	appendMany(t, e, 3, 4)
	rec := newRecorder()
	active := make(chan int, 4)
	cfg := e.config("view", projections.SinkFunc(func(_ context.Context, ev *event.Event) error {
		rec.add(ev, nil)
		return nil
	}))
	cfg.OnActive = func(gen int) { active <- gen }
	const dead = "views.dead.view"
	cfg.DeadLetterSubject = dead
	p, err := projections.New(e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pr := run(t, p.Run)
	rec.waitCount(t, 12)
	if gen := <-active; gen != 1 {
		t.Fatalf("first generation %d", gen)
	}

	ops, err := projections.New(e.js, projections.Config{Storage: e.storage, Name: "view"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ops.Pause(t.Context(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	gen, err := ops.Reset(t.Context())
	if err != nil || gen != 2 {
		t.Fatalf("Reset = %d, %v", gen, err)
	}
	select {
	case gen := <-active:
		if gen != 2 {
			t.Fatalf("Run went on with generation %d, want 2", gen)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not take up the reset generation")
	}
	st, err := ops.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Generation != 2 || !st[0].Active || !st[0].Paused || st[0].Pending != 12 {
		t.Fatalf("status after the reset: %+v", st)
	}
	if st[0].DeadLetterSubject != dead {
		t.Errorf("dead-letter subject after the reset %q, want the projector's %q", st[0].DeadLetterSubject, dead)
	}
	// Pending 12: the server has handed none of the new generation's out.
	if n := len(rec.snapshot()); n != 12 {
		t.Fatalf("%d events delivered by a paused reset generation, want 12", n)
	}
	if err := ops.Resume(t.Context()); err != nil {
		t.Fatal(err)
	}
	evs := rec.waitFor(t, "the replay", func(evs []*event.Event) bool { return len(evs) >= 24 })
	want := map[string]uint64{"k0": 4, "k1": 4, "k2": 4}
	checkOrder(t, evs[12:], want)
	if diff := cmp.Diff(ids(evs[:12]), ids(evs[12:]), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("replayed ids differ (-first +replay):\n%s", diff)
	}
	if err := pr.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}

	// A reset of a projection that never ran is refused.
	never, _ := projections.New(e.js, projections.Config{Storage: e.storage, Name: "never"})
	if _, err := never.Reset(t.Context()); !errors.Is(err, projections.ErrNoProjection) {
		t.Errorf("Reset of an unknown projection: %v", err)
	}
}

// TestResetEndsRebuild: a rebuild in progress is retired by a reset.
func TestResetEndsRebuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	appendMany(t, e, 1, 2)
	ok := projections.SinkFunc(func(context.Context, *event.Event) error { return nil })
	p, err := projections.New(e.js, e.config("view", ok))
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)
	waitStatus(t, p, func(st []projections.GenerationStatus) bool { return len(st) == 1 && st[0].AckFloor > 0 })
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	b, err := projections.New(e.js, e.config("view", projections.SinkFunc(func(ctx context.Context, _ *event.Event) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return ctx.Err()
	})))
	if err != nil {
		t.Fatal(err)
	}
	rb := run(t, b.Rebuild)
	waitStatus(t, p, func(st []projections.GenerationStatus) bool {
		select {
		case <-rb.ended:
			t.Fatalf("Rebuild ended before the reset: %v", rb.wait(t))
		default:
		}
		return len(st) == 2
	})
	if _, err := p.Reset(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := rb.wait(t); !errors.Is(err, projections.ErrSuperseded) {
		t.Errorf("Rebuild after a reset: %v, want ErrSuperseded", err)
	}
	waitStatus(t, p, func(st []projections.GenerationStatus) bool {
		return len(st) == 1 && st[0].Generation == 3 && st[0].Active
	})
}

func TestList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	appendMany(t, e, 1, 2)
	if got, err := projections.List(t.Context(), e.js, e.storage); err != nil || len(got) != 0 {
		t.Fatalf("List before any projection = %v, %v", got, err)
	}
	ok := projections.SinkFunc(func(context.Context, *event.Event) error { return nil })
	for _, name := range []string{"b-view", "a-view"} {
		cfg := e.config(name, ok)
		if name == "a-view" {
			cfg.Types = []string{"cart"}
		} else {
			cfg.DeadLetterSubject = "views.dead"
		}
		p, err := projections.New(e.js, cfg)
		if err != nil {
			t.Fatal(err)
		}
		run(t, p.Run)
		waitStatus(t, p, func(st []projections.GenerationStatus) bool {
			return len(st) == 1 && st[0].Pending == 0 && st[0].AckPending == 0
		})
	}
	// A consumer that is not a projection's is left out.
	if _, err := e.js.CreateConsumer(t.Context(), e.storage.JournalStream(), jetstream.ConsumerConfig{Durable: "other-g1", Metadata: map[string]string{"jetstate_projection": ""}}); err != nil {
		t.Fatal(err)
	}
	got, err := projections.List(t.Context(), e.js, e.storage)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got {
		g, ok := s.Active()
		if !ok || g.Generation != 1 || g.Delivered != 2 {
			t.Errorf("%s: %+v", s.Name, s.Generations)
		}
		names = append(names, s.Name+" "+g.Filter[0]+" "+s.DeadLetterSubject())
	}
	if diff := cmp.Diff([]string{"a-view jetstate.shop.cart.> jetstate_deadletter.shop.a-view", "b-view jetstate.shop.> views.dead"}, names); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if _, err := projections.List(t.Context(), e.js, streams.Config{Service: "nope"}); err == nil {
		t.Error("List of an unprovisioned service succeeded")
	}
}

func TestNewResolver(t *testing.T) {
	t.Parallel()
	// A set without its imports: struct.proto is found among the linked-in
	// files.
	own := &descriptorpb.FileDescriptorProto{
		Name:       new("shop/events.proto"),
		Package:    new("shop"),
		Syntax:     new("proto3"),
		Dependency: []string{"google/protobuf/struct.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: new("Added"),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: new("sku"), JsonName: new("sku"), Number: new(int32(1)), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()},
				{Name: new("meta"), JsonName: new("meta"), Number: new(int32(2)), Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), TypeName: new(".google.protobuf.Struct"), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()},
			},
		}},
	}
	wrappers := protodesc.ToFileDescriptorProto(wrapperspb.File_google_protobuf_wrappers_proto)
	r, err := projections.NewResolver(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{own}},
		&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{wrappers}})
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{"type.googleapis.com/shop.Added", "type.googleapis.com/google.protobuf.StringValue"} {
		if _, err := r.FindMessageByURL(url); err != nil {
			t.Errorf("%s: %v", url, err)
		}
	}

	broken := &descriptorpb.FileDescriptorProto{Name: new("x.proto"), Dependency: []string{"missing.proto"}}
	if _, err := projections.NewResolver(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{broken}}); err == nil {
		t.Error("a set with a missing import accepted")
	}
}

func waitStatus(t *testing.T, p *projections.Projection, ok func([]projections.GenerationStatus) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := p.Status(t.Context())
		if err == nil && ok(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v, %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ids(evs []*event.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID()
	}
	return out
}

// TestStoppedWhileSettingUp: Run and Rebuild whose context ends while they
// set a generation up (taking up a reset's, say) return nil, as when it
// ends while they deliver; they returned the context's error.
func TestStoppedWhileSettingUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ok := projections.SinkFunc(func(context.Context, *event.Event) error { return nil })
	p, err := projections.New(e.js, e.config("view", ok))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := p.Rebuild(ctx); err != nil {
		t.Errorf("Rebuild: %v", err)
	}
}
