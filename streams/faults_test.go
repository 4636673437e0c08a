package streams_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// ackedWriter appends one event at a time to its own entity and remembers
// every append the journal acknowledged.
type ackedWriter struct {
	e      streams.Entity
	mu     sync.Mutex
	acked  map[uint64]string // seq -> data
	errors int
}

func (w *ackedWriter) run(ctx context.Context, t *testing.T, j *streams.Journal) {
	var v streams.Version
	for i := 0; ctx.Err() == nil; i++ {
		data := fmt.Sprintf("%s-%d", w.e.Key, i)
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		nv, err := j.Append(actx, w.e, v, []streams.Event{{Type: "n", Data: []byte(data)}})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// Unacknowledged: it may or may not have landed. Reload.
			w.mu.Lock()
			w.errors++
			w.mu.Unlock()
			if errors.Is(err, streams.ErrConflict) {
				t.Errorf("%v: single writer got a conflict: %v", w.e, err)
			}
			hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			v, err = j.Head(hctx, w.e)
			cancel()
			if err != nil && ctx.Err() == nil {
				t.Errorf("%v: head: %v", w.e, err)
				return
			}
			continue
		}
		v = nv
		w.mu.Lock()
		w.acked[nv.Seq] = data
		w.mu.Unlock()
	}
}

func (w *ackedWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// verify checks that every acknowledged event is in the journal at its
// sequence number and that the history is dense.
func (w *ackedWriter) verify(t *testing.T, j *streams.Journal) {
	t.Helper()
	recs := readAll(t, j, w.e, streams.Version{})
	checkDense(t, recs, 1)
	got := map[uint64]string{}
	for _, r := range recs {
		got[r.Seq] = string(r.Data)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for seq, data := range w.acked {
		if got[seq] != data {
			t.Fatalf("%v: acknowledged event %d (%q) reads back as %q", w.e, seq, data, got[seq])
		}
	}
	t.Logf("%v: %d acknowledged, %d in journal, %d failed attempts", w.e, len(w.acked), len(recs), w.errors)
}

// startWriters runs n writers until the returned stop function is called.
func startWriters(t *testing.T, j *streams.Journal, n int) ([]*ackedWriter, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	ws := make([]*ackedWriter, n)
	for i := range ws {
		ws[i] = &ackedWriter{e: streams.Entity{Type: "t", Key: fmt.Sprint("w", i)}, acked: map[uint64]string{}}
		wg.Go(func() { ws[i].run(ctx, t, j) })
	}
	return ws, func() { cancel(); wg.Wait() }
}

// waitProgress waits until every writer has n more acknowledged appends.
func waitProgress(t *testing.T, ws []*ackedWriter, n int) {
	t.Helper()
	base := make([]int, len(ws))
	for i, w := range ws {
		base[i] = w.count()
	}
	deadline := time.Now().Add(60 * time.Second)
	for i, w := range ws {
		for w.count() < base[i]+n {
			if time.Now().After(deadline) {
				t.Fatalf("%v made no progress: %d acknowledged", w.e, w.count())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestClusterNodeLossKeepsAcknowledgedEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	c := streamstest.RunCluster(t, 3)
	js := c.JetStream(t)
	cfg := streams.Config{Service: "faults"}
	if err := streams.Provision(t.Context(), js, cfg, streams.StoreConfig{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	j, err := streams.NewJournal(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ws, stop := startWriters(t, j, 6)
	defer stop()
	waitProgress(t, ws, 20)

	// Kill the stream leader mid-append, let a new one take over, bring the
	// node back; then the same for a follower.
	leader := c.WaitStreamLeader(cfg.JournalStream())
	t.Logf("stopping leader %s", leader.Name())
	leader.Stop()
	waitProgress(t, ws, 20)
	leader.Restart()
	waitProgress(t, ws, 20)
	newLeader := c.WaitStreamLeader(cfg.JournalStream())
	for _, s := range c.Servers {
		if s != newLeader {
			t.Logf("stopping follower %s", s.Name())
			s.Stop()
			waitProgress(t, ws, 20)
			s.Restart()
			break
		}
	}
	waitProgress(t, ws, 10)
	stop()
	for _, w := range ws {
		w.verify(t, j)
	}
}

func TestSingleNodeRestartKeepsAcknowledgedEvents(t *testing.T) {
	s := streamstest.RunServer(t)
	js := s.JetStream(t)
	cfg := streams.Config{Service: "restart"}
	ctx := t.Context()
	if err := streams.Provision(ctx, js, cfg, streams.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	j, err := streams.NewJournal(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := streams.NewValues(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := streams.NewSnapshots(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := streams.Entity{Type: "t", Key: "kept"}
	rev, err := vals.Put(ctx, e, []byte("value"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := snaps.Save(ctx, e, streams.Snapshot{Version: streams.Version{Seq: 1, StreamSeq: 1}, Data: []byte("snap")}); err != nil {
		t.Fatal(err)
	}

	ws, stop := startWriters(t, j, 4)
	defer stop()
	waitProgress(t, ws, 20)
	s.Restart() // writers keep going: their appends retry until the server is back
	waitProgress(t, ws, 20)
	stop()
	for _, w := range ws {
		w.verify(t, j)
	}
	if data, got, err := vals.Get(ctx, e); err != nil || got != rev || string(data) != "value" {
		t.Fatalf("value after restart = %q at %d, %v; want value at %d", data, got, err, rev)
	}
	if snap, found, err := snaps.Load(ctx, e); err != nil || !found || string(snap.Data) != "snap" {
		t.Fatalf("snapshot after restart = %+v, %v, %v", snap, found, err)
	}
}

func TestServerWithoutJetStream(t *testing.T) {
	s := streamstest.RunServer(t, streamstest.WithoutJetStream())
	js, err := jetstream.New(s.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cfg := streams.Config{Service: "nojs"}
	if _, err := streams.CheckServer(ctx, js); !errors.Is(err, streams.ErrNoJetStream) {
		t.Errorf("CheckServer = %v, want ErrNoJetStream", err)
	}
	if err := streams.Provision(ctx, js, cfg, streams.StoreConfig{}); !errors.Is(err, streams.ErrNoJetStream) {
		t.Errorf("Provision = %v, want ErrNoJetStream", err)
	}
	j, err := streams.NewJournal(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := streams.Entity{Type: "t", Key: "k"}
	if _, err := j.Append(ctx, e, streams.Version{}, events("x", 1)); !errors.Is(err, streams.ErrNoJetStream) {
		t.Errorf("Append = %v, want ErrNoJetStream", err)
	}
	if _, err := j.Head(ctx, e); !errors.Is(err, streams.ErrNoJetStream) {
		t.Errorf("Head = %v, want ErrNoJetStream", err)
	}
	if _, err := streams.NewValues(ctx, js, cfg); !errors.Is(err, streams.ErrNoJetStream) {
		t.Errorf("NewValues = %v, want ErrNoJetStream", err)
	}
}

func TestCheckServerReportsLevel(t *testing.T) {
	s := streamstest.RunServer(t)
	level, err := streams.CheckServer(t.Context(), s.JetStream(t))
	if err != nil || level < streams.MinAPILevel {
		t.Fatalf("CheckServer = %d, %v", level, err)
	}
}
