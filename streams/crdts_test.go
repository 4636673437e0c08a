package streams_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// crdts provisions a fresh service on d and binds its CRDT store.
func (d deployment) crdts(t *testing.T) (*streams.CRDTs, streams.Config) {
	t.Helper()
	cfg := d.provision(t)
	c, err := streams.NewCRDTs(t.Context(), d.js, cfg)
	if err != nil {
		t.Fatalf("NewCRDTs: %v", err)
	}
	return c, cfg
}

func TestCRDTsSingleNode(t *testing.T) {
	t.Parallel()
	s := streamstest.RunServer(t)
	runCRDTSuite(t, deployment{js: s.JetStream(t)})
}

func TestCRDTsClusterR3(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	c := streamstest.RunCluster(t, 3)
	d := deployment{js: c.JetStream(t), store: streams.StoreConfig{Replicas: 3}}
	runCRDTSuite(t, d)
	t.Run("LoadFromOtherConnection", func(t *testing.T) { testCRDTLoadFromOtherConnection(t, d, c.JetStream(t)) })
}

// runCRDTSuite is the behaviour of the CRDT store on every deployment.
func runCRDTSuite(t *testing.T, d deployment) {
	t.Run("PublishLoad", func(t *testing.T) { testCRDTPublishLoad(t, d) })
	t.Run("AnyKey", func(t *testing.T) { testCRDTAnyKey(t, d) })
	t.Run("BadInput", func(t *testing.T) { testCRDTBadInput(t, d) })
	t.Run("Follow", func(t *testing.T) { testCRDTFollow(t, d) })
	t.Run("Delete", func(t *testing.T) { testCRDTDelete(t, d) })
	t.Run("Forget", func(t *testing.T) { testCRDTForget(t, d) })
	t.Run("ConfirmAnswer", func(t *testing.T) { testCRDTConfirmAnswer(t, d) })
	t.Run("ConfirmNamesMissing", func(t *testing.T) { testCRDTConfirmNamesMissing(t, d) })
	t.Run("Provision", func(t *testing.T) { testCRDTProvision(t, d) })
}

// load is Load that fails the test on error.
func load(t *testing.T, c *streams.CRDTs, e streams.Entity) ([]streams.CRDTState, bool, uint64) {
	t.Helper()
	states, deleted, last, err := c.Load(t.Context(), e)
	if err != nil {
		t.Fatalf("Load %v: %v", e, err)
	}
	return states, deleted, last
}

func publish(t *testing.T, c *streams.CRDTs, e streams.Entity, replica, data string) uint64 {
	t.Helper()
	seq, err := c.Publish(t.Context(), e, replica, []byte(data))
	if err != nil {
		t.Fatalf("Publish %v %s: %v", e, replica, err)
	}
	return seq
}

func testCRDTPublishLoad(t *testing.T, d deployment) {
	c, cfg := d.crdts(t)
	e := streams.Entity{Type: "counter", Key: "c1"}
	other := streams.Entity{Type: "counter", Key: "c2"}
	if states, deleted, last := load(t, c, e); len(states) != 0 || deleted || last != 0 {
		t.Fatalf("Load of a new entity = %v, %v, %d; want nothing", states, deleted, last)
	}
	want := map[string]streams.CRDTState{}
	var top uint64
	for i := range 100 {
		replica := fmt.Sprint("r", i%3)
		data := fmt.Sprintf("%s-%d", replica, i)
		seq := publish(t, c, e, replica, data)
		if seq <= top {
			t.Fatalf("publish %d: sequence %d after %d", i, seq, top)
		}
		top = seq
		want[replica] = streams.CRDTState{Replica: replica, Data: []byte(data), Seq: seq}
		if i%10 == 0 {
			publish(t, c, other, replica, data) // a neighbour is not e
		}
	}
	states, deleted, last := load(t, c, e)
	if deleted || last != top {
		t.Fatalf("Load: deleted %v, last %d; want false, %d", deleted, last, top)
	}
	wantStates := []streams.CRDTState{want["r1"], want["r2"], want["r0"]} // by sequence: 97, 98, 99
	if diff := cmp.Diff(wantStates, states); diff != "" {
		t.Fatalf("Load (-want +got):\n%s", diff)
	}
	// Compaction: one message per (entity, replica), however many publishes.
	s, err := d.js.Stream(t.Context(), cfg.CRDTStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(cfg.CRDTSubjects()))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 6 {
		t.Fatalf("stream holds %d messages, want 6 (3 replicas of 2 entities): %v", info.State.Msgs, info.State.Subjects)
	}
	for subject, n := range info.State.Subjects {
		if n != 1 {
			t.Errorf("subject %s holds %d messages", subject, n)
		}
	}
	if got := cfg.CRDTSubject(e, "r0"); info.State.Subjects[got] != 1 {
		t.Errorf("no message on %s: %v", got, info.State.Subjects)
	}
}

func testCRDTAnyKey(t *testing.T, d deployment) {
	c, _ := d.crdts(t)
	for _, key := range []string{"a.b", "with space", "*", ">", "", "a.*.>", strings.Repeat("k", streams.MaxKeyLen)} {
		e := streams.Entity{Type: "set", Key: key}
		seq := publish(t, c, e, "replica.one *", "state of "+key)
		states, deleted, last := load(t, c, e)
		want := []streams.CRDTState{{Replica: "replica.one *", Data: []byte("state of " + key), Seq: seq}}
		if diff := cmp.Diff(want, states); diff != "" || deleted || last != seq {
			t.Errorf("key %.20q: Load deleted %v last %d, want %d (-want +got):\n%s", key, deleted, last, seq, diff)
		}
	}
	// The wildcard keys did not capture each other's states.
	if states, _, _ := load(t, c, streams.Entity{Type: "set", Key: "x"}); len(states) != 0 {
		t.Errorf("an unwritten key has states %v", states)
	}
}

func testCRDTBadInput(t *testing.T, d deployment) {
	d.store.MaxMsgSize = 64 << 10 // so that the stream refuses before the server does
	c, _ := d.crdts(t)
	ctx := t.Context()
	good := streams.Entity{Type: "t", Key: "k"}
	for _, e := range []streams.Entity{{Type: "", Key: "k"}, {Type: "t", Key: strings.Repeat("k", streams.MaxKeyLen+1)}} {
		if _, err := c.Publish(ctx, e, "r", nil); !errors.Is(err, streams.ErrInvalidKey) {
			t.Errorf("Publish %.20v: %v, want ErrInvalidKey", e, err)
		}
		if _, _, _, err := c.Load(ctx, e); !errors.Is(err, streams.ErrInvalidKey) {
			t.Errorf("Load %.20v: %v, want ErrInvalidKey", e, err)
		}
		if _, err := c.Follow(ctx, e, 0, func(streams.CRDTState, bool) {}); !errors.Is(err, streams.ErrInvalidKey) {
			t.Errorf("Follow %.20v: %v, want ErrInvalidKey", e, err)
		}
		if _, err := c.Delete(ctx, e); !errors.Is(err, streams.ErrInvalidKey) {
			t.Errorf("Delete %.20v: %v, want ErrInvalidKey", e, err)
		}
	}
	for _, r := range []string{"", strings.Repeat("r", streams.MaxReplicaLen+1)} {
		if _, err := c.Publish(ctx, good, r, nil); !errors.Is(err, streams.ErrInvalidKey) {
			t.Errorf("Publish by replica %.20q: %v, want ErrInvalidKey", r, err)
		}
		if err := c.Forget(ctx, good, r); !errors.Is(err, streams.ErrInvalidKey) {
			t.Errorf("Forget of replica %.20q: %v, want ErrInvalidKey", r, err)
		}
		if _, err := c.Answer(r, func(context.Context, streams.Entity, uint64) error { return nil }); !errors.Is(err, streams.ErrInvalidKey) {
			t.Errorf("Answer as replica %.20q: %v, want ErrInvalidKey", r, err)
		}
	}
	limit, err := c.MaxPayload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, good, "r", bytes.Repeat([]byte{1}, limit)); err != nil {
		t.Fatalf("Publish of MaxPayload bytes: %v", err)
	}
	for _, n := range []int{limit + streams.MessageOverhead + 1, 2 << 20} { // over the stream's limit, over the server's max_payload
		if _, err := c.Publish(ctx, good, "r", make([]byte, n)); !streams.TooLarge(err) {
			t.Errorf("Publish of %d bytes: %v, want TooLarge", n, err)
		}
	}
	missing := streams.Config{Service: "nowhere"}
	if _, err := streams.NewCRDTs(ctx, d.js, missing); !errors.Is(err, streams.ErrStreamNotFound) {
		t.Errorf("NewCRDTs of an unprovisioned service: %v, want ErrStreamNotFound", err)
	}
	if _, err := streams.NewCRDTs(ctx, d.js, streams.Config{Service: "a.b"}); !errors.Is(err, streams.ErrInvalidName) {
		t.Errorf("NewCRDTs of an invalid service: %v, want ErrInvalidName", err)
	}
}

// follow records what a Follow delivers and signals each delivery.
type follow struct {
	mu   sync.Mutex
	got  []followed
	more chan struct{}
}

type followed struct {
	streams.CRDTState
	Deleted bool
}

func startFollow(t *testing.T, c *streams.CRDTs, e streams.Entity, after uint64) (*follow, func()) {
	t.Helper()
	f := &follow{more: make(chan struct{}, 1)}
	stop, err := c.Follow(t.Context(), e, after, func(s streams.CRDTState, deleted bool) {
		f.mu.Lock()
		f.got = append(f.got, followed{s, deleted})
		f.mu.Unlock()
		select {
		case f.more <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatalf("Follow: %v", err)
	}
	t.Cleanup(stop)
	return f, stop
}

// waitFor waits until the follow delivered the state at seq and returns
// everything delivered so far.
func (f *follow) waitFor(t *testing.T, seq uint64) []followed {
	t.Helper()
	for {
		f.mu.Lock()
		got := slices.Clone(f.got)
		f.mu.Unlock()
		if len(got) > 0 && got[len(got)-1].Seq >= seq {
			return got
		}
		select {
		case <-f.more:
		case <-t.Context().Done():
			t.Fatalf("Follow did not deliver sequence %d; got %+v", seq, got)
		}
	}
}

func testCRDTFollow(t *testing.T, d deployment) {
	c, _ := d.crdts(t)
	e := streams.Entity{Type: "set", Key: "followed"}
	publish(t, c, e, "a", "a0") // before Load: not followed
	publish(t, c, e, "b", "b0")
	_, _, last := load(t, c, e)
	f, stop := startFollow(t, c, e, last)
	var want []followed
	for i, r := range []string{"a", "b", "a", "c"} {
		data := fmt.Sprintf("%s%d", r, i+1)
		want = append(want, followed{streams.CRDTState{Replica: r, Data: []byte(data), Seq: publish(t, c, e, r, data)}, false})
		publish(t, c, streams.Entity{Type: "set", Key: "other"}, r, "not followed")
		// Each delivered before the next: a replica's state replaced before
		// Follow reached it is skipped (documented), as "a" does below.
		f.waitFor(t, want[len(want)-1].Seq)
	}
	f.waitFor(t, want[len(want)-1].Seq) // before Delete purges them
	tomb, err := c.Delete(t.Context(), e)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, followed{streams.CRDTState{Replica: "", Seq: tomb}, true})
	got := f.waitFor(t, tomb)
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("Follow delivered (-want +got):\n%s", diff)
	}
	stop()
	stop() // twice is fine
	// After stop, fn is never called again.
	publish(t, c, e, "a", "after stop")
	f.mu.Lock()
	n := len(f.got)
	f.mu.Unlock()
	if n != len(want) {
		t.Fatalf("Follow delivered %d states after stop", n-len(want))
	}
}

func testCRDTDelete(t *testing.T, d deployment) {
	c, cfg := d.crdts(t)
	e := streams.Entity{Type: "map", Key: "gone"}
	kept := streams.Entity{Type: "map", Key: "gone2"} // a neighbour whose key extends e's
	publish(t, c, e, "a", "a")
	publish(t, c, e, "b", "b")
	publish(t, c, kept, "a", "kept")
	tomb, err := c.Delete(t.Context(), e)
	if err != nil {
		t.Fatal(err)
	}
	if states, deleted, last := load(t, c, e); !deleted || len(states) != 0 || last != tomb {
		t.Fatalf("Load after Delete = %v, %v, %d; want deleted, no states, last %d", states, deleted, last, tomb)
	}
	// The states are purged: only the tombstone is stored for e.
	s, err := d.js.Stream(t.Context(), cfg.CRDTStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(cfg.CRDTSubjects()))
	if err != nil {
		t.Fatal(err)
	}
	wantSubjects := map[string]uint64{cfg.CRDTSubject(e, ""): 1, cfg.CRDTSubject(kept, "a"): 1}
	if diff := cmp.Diff(wantSubjects, info.State.Subjects); diff != "" {
		t.Fatalf("subjects after Delete (-want +got):\n%s", diff)
	}
	// A replica that did not hear of the delete publishes: e stays deleted.
	late := publish(t, c, e, "a", "late")
	if states, deleted, last := load(t, c, e); !deleted || len(states) != 0 || last != late {
		t.Fatalf("Load after a late publish = %v, %v, %d; want deleted, no states, last %d", states, deleted, last, late)
	}
	// Idempotent.
	again, err := c.Delete(t.Context(), e)
	if err != nil || again <= late {
		t.Fatalf("second Delete = %d, %v", again, err)
	}
	if states, deleted, _ := load(t, c, e); !deleted || len(states) != 0 {
		t.Fatalf("Load after second Delete = %v, %v", states, deleted)
	}
	if states, deleted, _ := load(t, c, kept); deleted || len(states) != 1 {
		t.Fatalf("neighbour after Delete = %v, %v", states, deleted)
	}
}

func testCRDTForget(t *testing.T, d deployment) {
	c, _ := d.crdts(t)
	e := streams.Entity{Type: "set", Key: "forget"}
	publish(t, c, e, "gone", "old")
	seq := publish(t, c, e, "live", "merged")
	if err := c.Forget(t.Context(), e, "gone"); err != nil {
		t.Fatal(err)
	}
	states, deleted, _ := load(t, c, e)
	if want := []streams.CRDTState{{Replica: "live", Data: []byte("merged"), Seq: seq}}; deleted || !cmp.Equal(want, states) {
		t.Fatalf("Load after Forget = %+v, %v; want %+v", states, deleted, want)
	}
	if err := c.Forget(t.Context(), e, "never"); err != nil {
		t.Fatalf("Forget of a replica with no state: %v", err)
	}
}

func testCRDTConfirmAnswer(t *testing.T, d deployment) {
	c, _ := d.crdts(t)
	e := streams.Entity{Type: "set", Key: "confirmed"}
	seq := publish(t, c, e, "a", "x")
	release := make(chan struct{})
	asked := make(chan struct{}, 1)
	var mu sync.Mutex
	calls := map[string][]string{}
	answer := func(replica string, wait bool) {
		stop, err := c.Answer(replica, func(ctx context.Context, got streams.Entity, at uint64) error {
			mu.Lock()
			calls[replica] = append(calls[replica], fmt.Sprintf("%v@%d", got, at))
			mu.Unlock()
			if !wait {
				return nil
			}
			select {
			case asked <- struct{}{}:
			default:
			}
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	answer("a", false)
	answer("b", true)
	done := make(chan error, 1)
	go func() { done <- c.Confirm(t.Context(), e, seq, []string{"a", "b", "a"}) }()
	<-asked // b is merging; Confirm must wait for it
	select {
	case err := <-done:
		t.Fatalf("Confirm returned before b answered: %v", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := fmt.Sprintf("%v@%d", e, seq)
	for _, r := range []string{"a", "b"} {
		if len(calls[r]) == 0 || calls[r][0] != want {
			t.Errorf("replica %s was asked %v, want %s", r, calls[r], want)
		}
	}
	if err := c.Confirm(t.Context(), e, seq, nil); err != nil {
		t.Errorf("Confirm of no replicas: %v", err)
	}
}

func testCRDTConfirmNamesMissing(t *testing.T, d deployment) {
	c, cfg := d.crdts(t)
	e := streams.Entity{Type: "set", Key: "unconfirmed"}
	stop, err := c.Answer("a", func(context.Context, streams.Entity, uint64) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// Listen, on Confirm's own connection, to its requests and to a's
	// answers: once a second answer of a arrived here, the first one
	// reached Confirm's subscription before it.
	nc := d.js.Conn()
	answers := make(chan struct{}, 16)
	var once sync.Once
	reqs, err := nc.Subscribe(cfg.CRDTSyncSubject(), func(m *nats.Msg) {
		once.Do(func() {
			if _, err := nc.Subscribe(m.Reply, func(*nats.Msg) { answers <- struct{}{} }); err != nil {
				t.Error(err)
			}
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer reqs.Unsubscribe()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Confirm(ctx, e, 7, []string{"a", "b"}) }()
	<-answers
	<-answers // a answered the repeated request: b still has not
	cancel()
	err = <-done
	var ce *streams.ConfirmError
	if !errors.As(err, &ce) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Confirm = %v, want a *ConfirmError wrapping context.Canceled", err)
	}
	if !cmp.Equal(ce.Missing, []string{"b"}) || ce.Seq != 7 || ce.Entity != e || !strings.Contains(err.Error(), "b") {
		t.Fatalf("Confirm error %+v (%v), want b missing", ce, err)
	}
	// Malformed requests are dropped: Answer survives them and still answers.
	for _, bad := range []string{"", "{", `{"entity":"no-type","seq":1}`, `{"entity":"a.=zz","seq":1}`} {
		if err := nc.PublishRequest(cfg.CRDTSyncSubject(), nc.NewInbox(), []byte(bad)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Confirm(t.Context(), e, 8, []string{"a"}); err != nil {
		t.Fatalf("Confirm after malformed requests: %v", err)
	}
}

func testCRDTProvision(t *testing.T, d deployment) {
	cfg := d.provision(t)
	s, err := d.js.Stream(t.Context(), cfg.CRDTStream())
	if err != nil {
		t.Fatal(err)
	}
	got := s.CachedInfo().Config
	if got.MaxMsgsPerSubject != 1 || got.Discard != jetstream.DiscardOld || !got.AllowDirect || got.DenyPurge ||
		got.Replicas != max(d.store.Replicas, 1) || got.MaxMsgSize != streams.DefaultMaxMsgSize ||
		!slices.Equal(got.Subjects, []string{cfg.CRDTSubjects()}) || got.Metadata["jetstate.service"] != cfg.Service {
		t.Fatalf("CRDT stream config %+v", got)
	}
	if err := streams.Deprovision(t.Context(), d.js, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := d.js.Stream(t.Context(), cfg.CRDTStream()); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("CRDT stream after Deprovision: %v", err)
	}
}

// testCRDTLoadFromOtherConnection: a Load on another connection (another
// sidecar) right after an acknowledged Publish sees it, on R3, every time.
func testCRDTLoadFromOtherConnection(t *testing.T, d deployment, other jetstream.JetStream) {
	c, cfg := d.crdts(t)
	reader, err := streams.NewCRDTs(t.Context(), other, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := streams.Entity{Type: "counter", Key: "shared"}
	for i := range 50 {
		replica := fmt.Sprint("r", i%2)
		seq := publish(t, c, e, replica, fmt.Sprint(i))
		states, _, last := load(t, reader, e)
		if last != seq || len(states) == 0 || states[len(states)-1].Seq != seq {
			t.Fatalf("publish %d at %d: the other connection loads %+v (last %d)", i, seq, states, last)
		}
	}
}

// TestCRDTFollowSurvivesRestart: a Follow delivers what is published after
// the server was stopped and started again on its store.
func TestCRDTFollowSurvivesRestart(t *testing.T) {
	t.Parallel()
	srv := streamstest.RunServer(t)
	d := deployment{js: srv.JetStream(t)}
	c, _ := d.crdts(t)
	e := streams.Entity{Type: "set", Key: "restart"}
	f, _ := startFollow(t, c, e, 0)
	f.waitFor(t, publish(t, c, e, "a", "before"))
	srv.Stop()
	srv.Start()
	seq := publish(t, c, e, "b", "after") // retried until the server is back
	got := f.waitFor(t, seq)
	if last := got[len(got)-1]; last.Replica != "b" || string(last.Data) != "after" {
		t.Fatalf("after the restart Follow delivered %+v", got)
	}
}

// TestCRDTFollowSurvivesLeaderChange: on R3, a Follow delivers what is
// published after the stream's leader was stopped and another took over.
func TestCRDTFollowSurvivesLeaderChange(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	cl := streamstest.RunCluster(t, 3)
	d := deployment{js: cl.JetStream(t), store: streams.StoreConfig{Replicas: 3}}
	c, cfg := d.crdts(t)
	e := streams.Entity{Type: "set", Key: "leader"}
	f, _ := startFollow(t, c, e, 0)
	f.waitFor(t, publish(t, c, e, "a", "before"))
	leader := cl.WaitStreamLeader(cfg.CRDTStream())
	leader.Stop()
	var seqs []uint64
	for i := range 3 {
		seqs = append(seqs, publish(t, c, e, fmt.Sprint("b", i), fmt.Sprint("after-", i))) // one replica each: none replaced
	}
	got := f.waitFor(t, seqs[len(seqs)-1])
	var after []string
	for _, g := range got[1:] {
		after = append(after, string(g.Data))
	}
	if want := []string{"after-0", "after-1", "after-2"}; !slices.Equal(after, want) {
		t.Fatalf("after the leader change Follow delivered %v, want %v", after, want)
	}
}

// Confirm's error names the missing replicas and wraps ctx's error.
func TestConfirmErrorText(t *testing.T) {
	err := &streams.ConfirmError{Entity: streams.Entity{Type: "t", Key: "k"}, Seq: 3, Missing: []string{"b", "c"}, Err: context.DeadlineExceeded}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "b, c") {
		t.Fatalf("%v", err)
	}
}

// TestCRDTFollowAll: one follower of the whole service sees every entity's
// states stored after it started (with their entities, keys with dots and
// wildcards included) and tombstones, and nothing from before; it resumes
// after a server restart.
func TestCRDTFollowAll(t *testing.T) {
	t.Parallel()
	srv := streamstest.RunServer(t)
	d := deployment{js: srv.JetStream(t)}
	c, _ := d.crdts(t)
	a, b := streams.Entity{Type: "set", Key: "a.b *>"}, streams.Entity{Type: "counter", Key: ""}
	before := publish(t, c, a, "r1", "before")
	type got struct {
		e       streams.Entity
		s       streams.CRDTState
		deleted bool
	}
	ch := make(chan got, 16)
	after, stop, err := c.FollowAll(t.Context(), func(e streams.Entity, s streams.CRDTState, deleted bool) { ch <- got{e, s, deleted} })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if after != before {
		t.Fatalf("follows after %d, want %d (the last stored)", after, before)
	}
	next := func() got {
		select {
		case g := <-ch:
			return g
		case <-t.Context().Done():
			t.Fatal("nothing delivered")
		}
		return got{}
	}
	s1 := publish(t, c, a, "r2", "x")
	s2 := publish(t, c, b, "r1", "y")
	for _, want := range []got{{a, streams.CRDTState{Replica: "r2", Data: []byte("x"), Seq: s1}, false}, {b, streams.CRDTState{Replica: "r1", Data: []byte("y"), Seq: s2}, false}} {
		if g := next(); g.e != want.e || g.s.Replica != want.s.Replica || string(g.s.Data) != string(want.s.Data) || g.s.Seq != want.s.Seq || g.deleted {
			t.Fatalf("delivered %+v, want %+v", g, want)
		}
	}
	if _, err := c.Delete(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if g := next(); g.e != b || !g.deleted {
		t.Fatalf("delivered %+v, want b's tombstone", g)
	}
	srv.Restart()
	s3 := publish(t, c, a, "r3", "z")
	for {
		if g := next(); g.s.Seq == s3 {
			if g.e != a || g.s.Replica != "r3" {
				t.Fatalf("after the restart: %+v", g)
			}
			return
		}
	}
}
