package streams_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// deployment is one JetStream set-up the conformance suite runs against.
type deployment struct {
	js    jetstream.JetStream
	store streams.StoreConfig
}

var serviceSeq atomic.Int64

// provision creates a fresh service on d and returns its config.
func (d deployment) provision(t *testing.T) streams.Config {
	t.Helper()
	cfg := streams.Config{Service: fmt.Sprintf("svc%d", serviceSeq.Add(1))}
	if err := streams.Provision(t.Context(), d.js, cfg, d.store); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return cfg
}

func (d deployment) journal(t *testing.T) *streams.Journal {
	t.Helper()
	j, err := streams.NewJournal(d.js, d.provision(t))
	if err != nil {
		t.Fatalf("NewJournal: %v", err)
	}
	return j
}

func TestConformanceSingleNode(t *testing.T) {
	t.Parallel()
	s := streamstest.RunServer(t)
	runSuite(t, deployment{js: s.JetStream(t)})
}

func TestConformanceClusterR3(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	c := streamstest.RunCluster(t, 3)
	runSuite(t, deployment{js: c.JetStream(t), store: streams.StoreConfig{Replicas: 3}})
}

// runSuite is the behaviour every journal deployment must show.
func runSuite(t *testing.T, d deployment) {
	t.Run("AppendRead", func(t *testing.T) { testAppendRead(t, d) })
	t.Run("AnyKey", func(t *testing.T) { testAnyKey(t, d) })
	t.Run("Conflict", func(t *testing.T) { testConflict(t, d) })
	t.Run("RetryAfterLostAck", func(t *testing.T) { testRetryAfterLostAck(t, d) })
	t.Run("ReadFromVersion", func(t *testing.T) { testReadFromVersion(t, d) })
	t.Run("LongJournal", func(t *testing.T) { testLongJournal(t, d) })
	t.Run("Tail", func(t *testing.T) { testTail(t, d) })
	t.Run("SnapshotRecovery", func(t *testing.T) { testSnapshotRecovery(t, d) })
	t.Run("Values", func(t *testing.T) { testValues(t, d) })
	t.Run("ConcurrentWriters", func(t *testing.T) { testConcurrentWriters(t, d) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, d) })
	t.Run("ProvisionIdempotent", func(t *testing.T) { testProvisionIdempotent(t, d) })
}

func events(prefix string, n int) []streams.Event {
	evs := make([]streams.Event, n)
	for i := range evs {
		evs[i] = streams.Event{Type: "type." + prefix, Data: fmt.Appendf(nil, "%s-%d", prefix, i)}
	}
	return evs
}

// readAll collects every record after v.
func readAll(t *testing.T, j *streams.Journal, e streams.Entity, v streams.Version) []streams.Record {
	t.Helper()
	var out []streams.Record
	for r, err := range j.Read(t.Context(), e, v) {
		if err != nil {
			t.Fatalf("Read %v after %+v: %v", e, v, err)
		}
		out = append(out, r)
	}
	return out
}

// checkDense fails unless records carry sequence numbers first, first+1, ...
func checkDense(t *testing.T, recs []streams.Record, first uint64) {
	t.Helper()
	for i, r := range recs {
		if r.Seq != first+uint64(i) {
			t.Fatalf("record %d has seq %d, want %d", i, r.Seq, first+uint64(i))
		}
		if i > 0 && r.StreamSeq < recs[i-1].StreamSeq {
			t.Fatalf("record %d: stream seq went back from %d to %d", i, recs[i-1].StreamSeq, r.StreamSeq)
		}
	}
}

func testAppendRead(t *testing.T, d deployment) {
	j := d.journal(t)
	ctx := t.Context()
	e := streams.Entity{Type: "cart", Key: "u1"}

	if v, err := j.Head(ctx, e); err != nil || v != (streams.Version{}) {
		t.Fatalf("Head of new entity = %+v, %v; want zero", v, err)
	}
	if recs := readAll(t, j, e, streams.Version{}); len(recs) != 0 {
		t.Fatalf("new entity has %d records", len(recs))
	}

	var v streams.Version
	var want []streams.Event
	for i, n := range []int{1, 3, 1, 5} { // commands with 1..5 events
		evs := events(fmt.Sprint("c", i), n)
		nv, err := j.Append(ctx, e, v, evs)
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		if nv.Seq != v.Seq+uint64(n) || nv.StreamSeq <= v.StreamSeq {
			t.Fatalf("Append %d: version %+v after %+v", i, nv, v)
		}
		v = nv
		want = append(want, evs...)
	}
	if head, err := j.Head(ctx, e); err != nil || head != v {
		t.Fatalf("Head = %+v, %v; want %+v", head, err, v)
	}
	recs := readAll(t, j, e, streams.Version{})
	checkDense(t, recs, 1)
	got := make([]streams.Event, len(recs))
	for i, r := range recs {
		got[i] = r.Event
		if r.Time.IsZero() {
			t.Fatalf("record %d has no time", i)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("read back (-want +got):\n%s", diff)
	}
	if last := recs[len(recs)-1].Version; last != v {
		t.Fatalf("last record version %+v, want %+v", last, v)
	}
	// Appending nothing is a no-op.
	if nv, err := j.Append(ctx, e, v, nil); err != nil || nv != v {
		t.Fatalf("empty Append = %+v, %v", nv, err)
	}
}

func testAnyKey(t *testing.T, d deployment) {
	j := d.journal(t)
	ctx := t.Context()
	keys := []string{"", ".", "a.b", "a=2Eb", " ", "a b", "*", ">", "a.*.>", "ключ", "日本", "\x00", "=",
		strings.Repeat("é", streams.MaxKeyLen/2)}
	types := []string{"t", "com.example.Cart", "t.*"}
	vs := map[streams.Entity]streams.Version{}
	for _, typ := range types {
		for _, k := range keys {
			e := streams.Entity{Type: typ, Key: k}
			v, err := j.Append(ctx, e, streams.Version{}, []streams.Event{{Type: typ, Data: []byte(typ + "|" + k)}})
			if err != nil {
				t.Fatalf("Append %q: %v", e, err)
			}
			vs[e] = v
		}
	}
	// Every entity holds exactly its own event: no two keys share a subject.
	for e, v := range vs {
		recs := readAll(t, j, e, streams.Version{})
		if len(recs) != 1 || string(recs[0].Data) != e.Type+"|"+e.Key || recs[0].Version != v {
			t.Fatalf("entity %q read back %+v", e, recs)
		}
		got, err := j.Config().ParseSubject(j.Config().Subject(e))
		if err != nil || got != e {
			t.Fatalf("ParseSubject(Subject(%q)) = %q, %v", e, got, err)
		}
	}
}

func testConflict(t *testing.T, d deployment) {
	j := d.journal(t)
	ctx := t.Context()
	e := streams.Entity{Type: "cart", Key: "c"}
	v1, err := j.Append(ctx, e, streams.Version{}, events("a", 1))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := j.Append(ctx, e, v1, events("b", 2))
	if err != nil {
		t.Fatal(err)
	}
	for _, stale := range []streams.Version{{}, v1} {
		_, err := j.Append(ctx, e, stale, events("stale", 1))
		var ce *streams.ConflictError
		if !errors.Is(err, streams.ErrConflict) || !errors.As(err, &ce) {
			t.Fatalf("Append at stale %+v = %v, want ErrConflict", stale, err)
		}
		if ce.Actual != v2.StreamSeq || ce.Expected != stale.StreamSeq {
			t.Fatalf("conflict %+v, want actual %d", ce, v2.StreamSeq)
		}
	}
	recs := readAll(t, j, e, streams.Version{})
	if len(recs) != 3 {
		t.Fatalf("conflicting appends wrote something: %d records", len(recs))
	}
	// Another entity's position does not fence this one.
	other := streams.Entity{Type: "cart", Key: "other"}
	if _, err := j.Append(ctx, other, v2, events("x", 1)); !errors.Is(err, streams.ErrConflict) {
		t.Fatalf("Append to empty entity with foreign version = %v, want ErrConflict", err)
	}
}

func testReadFromVersion(t *testing.T, d deployment) {
	j := d.journal(t)
	ctx := t.Context()
	e := streams.Entity{Type: "t", Key: "k"}
	var v streams.Version
	for i := range 5 {
		var err error
		if v, err = j.Append(ctx, e, v, events(fmt.Sprint(i), 3)); err != nil {
			t.Fatal(err)
		}
	}
	all := readAll(t, j, e, streams.Version{})
	checkDense(t, all, 1)
	// From every position, including the middle of a multi-event message,
	// Read returns exactly the rest.
	for _, from := range all {
		rest := readAll(t, j, e, from.Version)
		if diff := cmp.Diff(all[from.Seq:], rest, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("read after %+v (-want +got):\n%s", from.Version, diff)
		}
	}
	// Knowing only the per-entity sequence number is enough, too.
	for _, seq := range []uint64{0, 1, 7, 14, 15} {
		rest := readAll(t, j, e, streams.Version{Seq: seq})
		if diff := cmp.Diff(all[seq:], rest, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("read after seq %d (-want +got):\n%s", seq, diff)
		}
	}
	// Stopping early is allowed.
	n := 0
	for range j.Read(ctx, e, streams.Version{}) {
		if n++; n == 2 {
			break
		}
	}
}

func testLongJournal(t *testing.T, d deployment) {
	j := d.journal(t)
	ctx := t.Context()
	e := streams.Entity{Type: "t", Key: "long"}
	const n = 2500 // more than two read pages
	var v streams.Version
	for i := range n {
		var err error
		if v, err = j.Append(ctx, e, v, []streams.Event{{Type: "n", Data: fmt.Append(nil, i)}}); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		// Interleave another entity so pages skip foreign messages.
		if i%10 == 0 {
			if _, err := j.Append(ctx, streams.Entity{Type: "t", Key: fmt.Sprint("o", i)}, streams.Version{}, events("o", 1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	recs := readAll(t, j, e, streams.Version{})
	if len(recs) != n {
		t.Fatalf("read %d records, want %d", len(recs), n)
	}
	checkDense(t, recs, 1)
	for i, r := range recs {
		if string(r.Data) != fmt.Sprint(i) {
			t.Fatalf("record %d = %q", i, r.Data)
		}
	}
}

func testSnapshotRecovery(t *testing.T, d deployment) {
	cfg := d.provision(t)
	ctx := t.Context()
	j, err := streams.NewJournal(d.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := streams.NewSnapshots(ctx, d.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := streams.Entity{Type: "counter", Key: "c.1"}
	if _, found, err := snaps.Load(ctx, e); err != nil || found {
		t.Fatalf("Load of new entity: found %v, %v", found, err)
	}
	// A counter whose state is the sum of its events; snapshot every 7.
	var v streams.Version
	sum := 0
	for i := 1; i <= 30; i++ {
		if v, err = j.Append(ctx, e, v, []streams.Event{{Type: "add", Data: fmt.Append(nil, i)}}); err != nil {
			t.Fatal(err)
		}
		sum += i
		if i%7 == 0 {
			if err := snaps.Save(ctx, e, streams.Snapshot{Version: v, Data: fmt.Append(nil, sum)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	snap, found, err := snaps.Load(ctx, e)
	if err != nil || !found || snap.Seq != 28 {
		t.Fatalf("Load = %+v, %v, %v; want the snapshot at 28", snap, found, err)
	}
	recovered := 0
	fmt.Sscan(string(snap.Data), &recovered)
	tail := readAll(t, j, e, snap.Version)
	checkDense(t, tail, 29)
	for _, r := range tail {
		var x int
		fmt.Sscan(string(r.Data), &x)
		recovered += x
	}
	if recovered != sum {
		t.Fatalf("snapshot + tail = %d, full sum %d", recovered, sum)
	}
	if err := snaps.Delete(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, found, err := snaps.Load(ctx, e); err != nil || found {
		t.Fatalf("Load after Delete: found %v, %v", found, err)
	}
}

func testValues(t *testing.T, d deployment) {
	cfg := d.provision(t)
	ctx := t.Context()
	vals, err := streams.NewValues(ctx, d.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := streams.Entity{Type: "com.example.Counter", Key: "a b.*"}
	if data, rev, err := vals.Get(ctx, e); err != nil || rev != 0 || data != nil {
		t.Fatalf("Get absent = %q, %d, %v", data, rev, err)
	}
	r1, err := vals.Put(ctx, e, []byte("one"), 0)
	if err != nil {
		t.Fatalf("Put new: %v", err)
	}
	if _, err := vals.Put(ctx, e, []byte("again"), 0); !errors.Is(err, streams.ErrConflict) {
		t.Fatalf("Put expecting absent over a value = %v, want ErrConflict", err)
	}
	r2, err := vals.Put(ctx, e, []byte("two"), r1)
	if err != nil || r2 <= r1 {
		t.Fatalf("Put at r1 = %d, %v", r2, err)
	}
	if _, err := vals.Put(ctx, e, []byte("stale"), r1); !errors.Is(err, streams.ErrConflict) {
		t.Fatalf("Put at stale revision = %v, want ErrConflict", err)
	}
	if data, rev, err := vals.Get(ctx, e); err != nil || rev != r2 || !bytes.Equal(data, []byte("two")) {
		t.Fatalf("Get = %q, %d, %v; want two at %d", data, rev, err, r2)
	}
	if err := vals.Delete(ctx, e, r1); !errors.Is(err, streams.ErrConflict) {
		t.Fatalf("Delete at stale revision = %v, want ErrConflict", err)
	}
	if err := vals.Delete(ctx, e, r2); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if data, rev, err := vals.Get(ctx, e); err != nil || rev != 0 || data != nil {
		t.Fatalf("Get after Delete = %q, %d, %v", data, rev, err)
	}
	if err := vals.Delete(ctx, e, 0); err != nil {
		t.Fatalf("Delete of deleted value: %v", err)
	}
	r3, err := vals.Put(ctx, e, []byte("three"), 0)
	if err != nil || r3 <= r2 {
		t.Fatalf("Put after Delete = %d, %v", r3, err)
	}
	if data, _, _ := vals.Get(ctx, e); string(data) != "three" {
		t.Fatalf("Get = %q, want three", data)
	}
}

func testProvisionIdempotent(t *testing.T, d deployment) {
	cfg := d.provision(t)
	ctx := t.Context()
	j, err := streams.NewJournal(d.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := streams.Entity{Type: "t", Key: "k"}
	v, err := j.Append(ctx, e, streams.Version{}, events("x", 2))
	if err != nil {
		t.Fatal(err)
	}
	// Again, and with a changed limit: nothing is lost, the limit applies.
	store := d.store
	store.MaxMsgSize = 4096
	for _, sc := range []streams.StoreConfig{d.store, store} {
		if err := streams.Provision(ctx, d.js, cfg, sc); err != nil {
			t.Fatalf("Provision again: %v", err)
		}
	}
	s, err := d.js.Stream(ctx, cfg.JournalStream())
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	if info.Config.MaxMsgSize != 4096 || info.Config.Metadata["jetstate.durability"] != "flush" {
		t.Fatalf("stream config not updated: %+v", info.Config)
	}
	if info.Config.Replicas != max(d.store.Replicas, 1) {
		t.Fatalf("replicas %d, want %d", info.Config.Replicas, d.store.Replicas)
	}
	if head, err := j.Head(ctx, e); err != nil || head != v {
		t.Fatalf("Head after re-provisioning = %+v, %v; want %+v", head, err, v)
	}
	if _, err := j.Append(ctx, e, v, []streams.Event{{Data: make([]byte, 8192)}}); !errors.Is(err, streams.ErrTooLarge) {
		t.Fatalf("Append beyond new limit = %v, want ErrTooLarge", err)
	}
	bad := streams.StoreConfig{Replicas: 2, Storage: "tape", Durability: "maybe"}
	err = streams.Provision(ctx, d.js, cfg, bad)
	for _, want := range []string{"replicas", "storage", "durability"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Provision(%+v) = %v, want it to name %s", bad, err, want)
		}
	}
}

func testConcurrentWriters(t *testing.T, d deployment) {
	j := d.journal(t)
	ctx := t.Context()
	e := streams.Entity{Type: "t", Key: "contended"}
	const writers = 100
	rounds := 10
	if d.store.Replicas == 3 {
		rounds = 4
	}
	var v streams.Version
	winners := make([]int, rounds)
	for round := range rounds {
		start := make(chan struct{})
		type result struct {
			id  int
			v   streams.Version
			err error
		}
		results := make(chan result, writers)
		expected := v
		for id := range writers {
			go func() {
				<-start
				nv, err := j.Append(ctx, e, expected, []streams.Event{{Type: "w", Data: fmt.Append(nil, id)}})
				results <- result{id, nv, err}
			}()
		}
		close(start)
		won := 0
		for range writers {
			r := <-results
			switch {
			case r.err == nil:
				won++
				winners[round] = r.id
				v = r.v
			case !errors.Is(r.err, streams.ErrConflict):
				t.Fatalf("round %d writer %d: %v", round, r.id, r.err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d writers won, want exactly 1", round, won)
		}
	}
	recs := readAll(t, j, e, streams.Version{})
	if len(recs) != rounds {
		t.Fatalf("history has %d events after %d rounds", len(recs), rounds)
	}
	checkDense(t, recs, 1)
	for i, r := range recs {
		if string(r.Data) != fmt.Sprint(winners[i]) {
			t.Fatalf("event %d written by %s, but writer %d won that round", i+1, r.Data, winners[i])
		}
	}
}

func testBadInput(t *testing.T, d deployment) {
	cfg := d.provision(t)
	ctx := t.Context()
	j, err := streams.NewJournal(d.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := streams.NewValues(ctx, d.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := streams.NewSnapshots(ctx, d.js, cfg)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("InvalidKey", func(t *testing.T) {
		for _, e := range []streams.Entity{
			{Type: "t", Key: strings.Repeat("k", streams.MaxKeyLen+1)},
			{Type: "", Key: "k"},
		} {
			if _, err := j.Append(ctx, e, streams.Version{}, events("x", 1)); !errors.Is(err, streams.ErrInvalidKey) {
				t.Errorf("Append(%.20q) = %v", e, err)
			}
			if _, err := j.Head(ctx, e); !errors.Is(err, streams.ErrInvalidKey) {
				t.Errorf("Head(%.20q) = %v", e, err)
			}
			for _, err := range j.Read(ctx, e, streams.Version{}) {
				if !errors.Is(err, streams.ErrInvalidKey) {
					t.Errorf("Read(%.20q) = %v", e, err)
				}
			}
			if _, err := vals.Put(ctx, e, []byte("v"), 0); !errors.Is(err, streams.ErrInvalidKey) {
				t.Errorf("Put(%.20q) = %v", e, err)
			}
			if err := snaps.Save(ctx, e, streams.Snapshot{}); !errors.Is(err, streams.ErrInvalidKey) {
				t.Errorf("Save(%.20q) = %v", e, err)
			}
		}
	})

	t.Run("TooLarge", func(t *testing.T) {
		e := streams.Entity{Type: "t", Key: "big"}
		v, err := j.Append(ctx, e, streams.Version{}, events("ok", 1))
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{streams.DefaultMaxMsgSize + 1, 4 << 20} {
			_, err := j.Append(ctx, e, v, []streams.Event{{Type: "big", Data: make([]byte, size)}})
			if !errors.Is(err, streams.ErrTooLarge) {
				t.Fatalf("Append of %d bytes = %v, want ErrTooLarge", size, err)
			}
		}
		// Nothing was lost and the journal still takes normal appends.
		if head, err := j.Head(ctx, e); err != nil || head != v {
			t.Fatalf("Head = %+v, %v; want %+v", head, err, v)
		}
		if _, err := j.Append(ctx, e, v, events("after", 1)); err != nil {
			t.Fatalf("Append after refusal: %v", err)
		}
		if _, err := vals.Put(ctx, e, make([]byte, streams.DefaultMaxMsgSize+1), 0); !errors.Is(err, streams.ErrTooLarge) {
			t.Fatalf("Put too large = %v, want ErrTooLarge", err)
		}
	})

	t.Run("MissingStream", func(t *testing.T) {
		missing := streams.Config{Service: "never-provisioned"}
		mj, err := streams.NewJournal(d.js, missing)
		if err != nil {
			t.Fatal(err)
		}
		e := streams.Entity{Type: "t", Key: "k"}
		if _, err := mj.Append(ctx, e, streams.Version{}, events("x", 1)); !errors.Is(err, streams.ErrStreamNotFound) {
			t.Errorf("Append = %v, want ErrStreamNotFound", err)
		}
		if _, err := mj.Head(ctx, e); !errors.Is(err, streams.ErrStreamNotFound) {
			t.Errorf("Head = %v, want ErrStreamNotFound", err)
		}
		if _, err := streams.NewValues(ctx, d.js, missing); !errors.Is(err, streams.ErrStreamNotFound) {
			t.Errorf("NewValues = %v, want ErrStreamNotFound", err)
		}
		if _, err := streams.NewSnapshots(ctx, d.js, missing); !errors.Is(err, streams.ErrStreamNotFound) {
			t.Errorf("NewSnapshots = %v, want ErrStreamNotFound", err)
		}
	})

	t.Run("InvalidConfig", func(t *testing.T) {
		if _, err := streams.NewJournal(d.js, streams.Config{Service: "a.b"}); !errors.Is(err, streams.ErrInvalidName) {
			t.Errorf("NewJournal = %v, want ErrInvalidName", err)
		}
	})
}

func testRetryAfterLostAck(t *testing.T, d deployment) {
	j := d.journal(t)
	ctx := t.Context()
	e := streams.Entity{Type: "t", Key: "retried"}
	// The first attempt lands but its ack is lost; the retry carries the
	// same message id and expected version.
	v1, err := streams.AppendWithID(ctx, j, e, streams.Version{}, events("first", 2), "attempt-1")
	if err != nil {
		t.Fatal(err)
	}
	retry, err := streams.AppendWithID(ctx, j, e, streams.Version{}, events("first", 2), "attempt-1")
	if err != nil || retry != v1 {
		t.Fatalf("retry = %+v, %v; want the first attempt's %+v", retry, err, v1)
	}
	if n := len(readAll(t, j, e, streams.Version{})); n != 2 {
		t.Fatalf("journal has %d events after a retried append of 2", n)
	}
	// A different command at the same version is a real conflict.
	if _, err := streams.AppendWithID(ctx, j, e, streams.Version{}, events("other", 1), "attempt-2"); !errors.Is(err, streams.ErrConflict) {
		t.Fatalf("other writer = %v, want ErrConflict", err)
	}
	// Even after someone else appended on top of the landed attempt, its
	// late retry is recognised as having succeeded, not as a conflict.
	if _, err := j.Append(ctx, e, v1, events("next", 1)); err != nil {
		t.Fatal(err)
	}
	retry, err = streams.AppendWithID(ctx, j, e, streams.Version{}, events("first", 2), "attempt-1")
	if err != nil || retry != v1 {
		t.Fatalf("late retry = %+v, %v; want %+v", retry, err, v1)
	}
	if n := len(readAll(t, j, e, streams.Version{})); n != 3 {
		t.Fatalf("journal has %d events, want 3", n)
	}
}
