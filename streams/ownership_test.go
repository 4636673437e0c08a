package streams_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

func TestShardOfIsStableAndSpread(t *testing.T) {
	// Fixed values (computed apart from the code, FNV-1a by hand):
	// changing the hash would move the entities of every deployed service.
	golden := map[streams.Entity]int{
		{Type: "cart", Key: "alice"}: 79,
		{Type: "cart", Key: "bob"}:   24,
		{Type: "cart", Key: ""}:      37,
		{Type: "counter", Key: "1"}:  64,
	}
	for e, want := range golden {
		if got := streams.ShardOf(e, 100); got != want {
			t.Errorf("ShardOf(%v, 100) = %d, want %d (the hash must never change)", e, got, want)
		}
	}
	counts := make([]int, 100)
	for i := range 100_000 {
		counts[streams.ShardOf(streams.Entity{Type: "t", Key: strings.Repeat("k", i%7) + string(rune('a'+i%26)) + itoa(i)}, 100)]++
	}
	for s, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("shard %d got %d of 100000 keys, want about 1000", s, n)
		}
	}
}

func itoa(i int) string { return time.Duration(i).String() }

func TestOwnership(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	ctx := t.Context()
	cfg := streams.Config{Service: "own"}
	if err := streams.Provision(ctx, js, cfg, streams.StoreConfig{Shards: 8, MemberTTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	o, err := streams.NewOwnership(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.Shards() != 8 || o.MemberTTL() != time.Second {
		t.Fatalf("shards %d ttl %v, want 8 and 1s", o.Shards(), o.MemberTTL())
	}

	t.Run("shard count is fixed", func(t *testing.T) {
		err := streams.Provision(ctx, js, cfg, streams.StoreConfig{Shards: 9, MemberTTL: time.Second})
		if err == nil || !strings.Contains(err.Error(), "fixed") {
			t.Fatalf("re-provision with 9 shards = %v, want refusal", err)
		}
		if err := streams.Provision(ctx, js, cfg, streams.StoreConfig{Shards: 8, MemberTTL: time.Second}); err != nil {
			t.Fatalf("re-provision with the same count: %v", err)
		}
	})

	t.Run("bad config", func(t *testing.T) {
		err := streams.Provision(ctx, js, streams.Config{Service: "x"}, streams.StoreConfig{Shards: -1, MemberTTL: time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), "shards") || !strings.Contains(err.Error(), "member TTL") {
			t.Fatalf("err = %v, want both problems", err)
		}
	})

	w, err := o.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	<-w.Ready()
	waitView := func(what string, ok func(streams.View) bool) streams.View {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			v, changed := w.View()
			if ok(v) {
				return v
			}
			select {
			case <-changed:
			case <-deadline:
				t.Fatalf("view never %s: %+v", what, v)
			}
		}
	}

	t.Run("members come and go", func(t *testing.T) {
		if err := o.Heartbeat(ctx, "a.b c", []byte("info")); err != nil {
			t.Fatal(err)
		}
		if err := o.Heartbeat(ctx, "z", nil); err != nil {
			t.Fatal(err)
		}
		v := waitView("has both", func(v streams.View) bool { return len(v.Members) == 2 })
		if string(v.Members["a.b c"]) != "info" {
			t.Fatalf("members = %v", v.Members)
		}
		if err := o.Leave(ctx, "z"); err != nil {
			t.Fatal(err)
		}
		waitView("lost z", func(v streams.View) bool { _, ok := v.Members["z"]; return !ok })
		// "a.b c" stops heartbeating: it expires after the TTL, by the
		// server's expiry marker, and not before.
		start := time.Now()
		if err := o.Heartbeat(ctx, "a.b c", []byte("info")); err != nil {
			t.Fatal(err)
		}
		waitView("expired a.b c", func(v streams.View) bool { return len(v.Members) == 0 })
		if d := time.Since(start); d < o.MemberTTL() {
			t.Fatalf("member expired %v after its heartbeat, TTL %v", d, o.MemberTTL())
		}
		members, err := js.Stream(ctx, "KV_"+cfg.MemberBucket())
		if err != nil {
			t.Fatal(err)
		}
		last, err := members.GetLastMsgForSubject(ctx, "$KV."+cfg.MemberBucket()+"."+streams.EncodeToken("a.b c"))
		if err != nil {
			t.Fatal(err)
		}
		if r := last.Header.Get(jetstream.MarkerReasonHeader); r != "MaxAge" {
			t.Fatalf("a.b c removed by %q (headers %v), want the server's MaxAge expiry", r, last.Header)
		}
	})

	t.Run("shard owners are fenced", func(t *testing.T) {
		rev, err := o.SetOwner(ctx, 3, "a", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.SetOwner(ctx, 3, "b", 0); !errors.Is(err, streams.ErrConflict) {
			t.Fatalf("second claim = %v, want conflict", err)
		}
		rev2, err := o.SetOwner(ctx, 3, "b", rev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.SetOwner(ctx, 3, "c", rev); !errors.Is(err, streams.ErrConflict) {
			t.Fatalf("stale handoff = %v, want conflict", err)
		}
		v := waitView("shows b", func(v streams.View) bool { return v.Owners[3].Member == "b" })
		if v.Owners[3].Revision != rev2 || v.Owners[0] != (streams.Owner{}) {
			t.Fatalf("owners = %+v", v.Owners)
		}
		if _, err := o.SetOwner(ctx, 8, "a", 0); err == nil {
			t.Fatal("shard 8 of 8 accepted")
		}
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := o.SetOwner(ctx, 1, "a", 0); err == nil {
			t.Fatal("cancelled write succeeded")
		}
	})

	t.Run("unprovisioned service", func(t *testing.T) {
		if _, err := streams.NewOwnership(ctx, js, streams.Config{Service: "none"}); !errors.Is(err, streams.ErrStreamNotFound) {
			t.Fatalf("err = %v", err)
		}
	})
}
