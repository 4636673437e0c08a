package streams_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/jetstate/jetstate/streams"
)

// testTail: Tail finds where the last n events of an entity begin, among
// other entities' messages and multi-event messages, for every n; and
// TailStart the first of a subject's last n messages. Direct Get may be
// answered by a replica that lags behind the leader, which can only make
// the tail longer: exact on one node, at least as long on a cluster.
func testTail(t *testing.T, d deployment) {
	cfg := d.provision(t)
	j, err := streams.NewJournal(d.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	e := streams.Entity{Type: "t", Key: "tail"}
	other := streams.Entity{Type: "t", Key: "other"}
	if v, err := j.Tail(ctx, e, 3); err != nil || v != (streams.Version{}) {
		t.Fatalf("Tail of an entity without events = %+v, %v; want the zero Version", v, err)
	}
	var v, ov streams.Version
	var msgSeqs []uint64 // the stream sequences of e's messages
	for i := range 40 {
		n := 1 + i%3 // 1, 2 or 3 events per message
		if v, err = j.Append(ctx, e, v, events(fmt.Sprint(i), n)); err != nil {
			t.Fatal(err)
		}
		msgSeqs = append(msgSeqs, v.StreamSeq)
		for range i % 4 { // others' messages in between, unevenly
			if ov, err = j.Append(ctx, other, ov, events("o", 1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	exact := d.store.Replicas <= 1
	all := readAll(t, j, e, streams.Version{})
	for _, n := range []int{1, 2, 3, 5, 17, 50, 79, 80, len(all) - 1, len(all), len(all) + 1, 1000} {
		from, err := j.Tail(ctx, e, n)
		if err != nil {
			t.Fatalf("Tail %d: %v", n, err)
		}
		got := readAll(t, j, e, from)
		if len(got) < min(n, len(all)) || exact && len(got) != min(n, len(all)) {
			t.Errorf("Tail %d: Read yields %d events of %d, want %d", n, len(got), len(all), min(n, len(all)))
			continue
		}
		if diff := cmp.Diff(all[len(all)-len(got):], got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Tail %d: not the journal's end (-want +got):\n%s", n, diff)
		}
	}
	subject := cfg.Subject(e)
	for _, n := range []int{1, 7, 40, 41} {
		got, err := streams.TailStart(ctx, d.js, cfg.JournalStream(), subject, n)
		if want := msgSeqs[max(0, len(msgSeqs)-n)]; err != nil || got > want || exact && got != want {
			t.Errorf("TailStart %d = %d, %v; want %d", n, got, err, want)
		}
	}
	if got, err := streams.TailStart(ctx, d.js, cfg.JournalStream(), cfg.Subject(streams.Entity{Type: "t", Key: "none"}), 5); err != nil || got != 0 {
		t.Errorf("TailStart of an empty subject = %d, %v", got, err)
	}
	if _, err := j.Tail(ctx, streams.Entity{Type: "", Key: "k"}, 5); err == nil {
		t.Error("Tail of an entity without a type succeeded")
	}
}
