package streams_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// streamNames lists every stream on the server (buckets are KV_<bucket>).
func streamNames(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	var names []string
	l := js.StreamNames(t.Context())
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("stream names: %v", err)
	}
	slices.Sort(names)
	return names
}

func TestDeprovision(t *testing.T) {
	t.Parallel()
	s := streamstest.RunServer(t)
	js := s.JetStream(t)
	gone := streams.Config{Service: "gone"}
	kept := streams.Config{Service: "kept"}
	other := streams.Config{Prefix: "other", Service: "gone"}
	for _, cfg := range []streams.Config{gone, kept, other} {
		if err := streams.Provision(t.Context(), js, cfg, streams.StoreConfig{}); err != nil {
			t.Fatalf("Provision %+v: %v", cfg, err)
		}
	}
	j, err := streams.NewJournal(js, gone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(t.Context(), streams.Entity{Type: "cart", Key: "a"}, streams.Version{}, []streams.Event{{Type: "added", Data: []byte("x")}}); err != nil {
		t.Fatalf("Append: %v", err)
	}

	if err := streams.Deprovision(t.Context(), js, gone); err != nil {
		t.Fatalf("Deprovision: %v", err)
	}
	want := []string{
		"KV_jetstate_kept_discovery", "KV_jetstate_kept_members", "KV_jetstate_kept_shards", "KV_jetstate_kept_snapshots", "KV_jetstate_kept_values",
		"KV_other_gone_discovery", "KV_other_gone_members", "KV_other_gone_shards", "KV_other_gone_snapshots", "KV_other_gone_values",
		"jetstate_eventing", "jetstate_kept_crdt", "jetstate_kept_journal", "other_eventing", "other_gone_crdt", "other_gone_journal",
	}
	if got := streamNames(t, js); !slices.Equal(got, want) {
		t.Errorf("streams after Deprovision:\n got %v\nwant %v", got, want)
	}
	if _, err := j.Head(t.Context(), streams.Entity{Type: "cart", Key: "a"}); !errors.Is(err, streams.ErrStreamNotFound) {
		t.Errorf("Head after Deprovision: %v, want ErrStreamNotFound", err)
	}
	// Idempotent: a second call finds nothing and succeeds.
	if err := streams.Deprovision(t.Context(), js, gone); err != nil {
		t.Errorf("second Deprovision: %v", err)
	}
	if err := streams.Deprovision(t.Context(), js, streams.Config{Service: "a.b"}); !errors.Is(err, streams.ErrInvalidName) {
		t.Errorf("Deprovision of an invalid name: %v, want ErrInvalidName", err)
	}
}
