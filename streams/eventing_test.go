package streams_test

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// TestEventingStream: Provision creates the prefix's eventing stream with
// the store's storage, and an existing one (another service's choice of
// limits) is left alone.
func TestEventingStream(t *testing.T) {
	t.Parallel()
	s := streamstest.RunServer(t)
	js := s.JetStream(t)
	cfg := streams.Config{Prefix: "ev", Service: "cart"}
	if err := streams.Provision(t.Context(), js, cfg, streams.StoreConfig{Storage: streams.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), "ev_eventing")
	if err != nil {
		t.Fatalf("eventing stream after Provision: %v", err)
	}
	c := st.CachedInfo().Config
	if !slices.Equal(c.Subjects, []string{"ev_topic.>", "ev_deadletter.>"}) || c.Storage != jetstream.MemoryStorage ||
		c.MaxAge != streams.DefaultTopicMaxAge || c.Duplicates != 2*time.Minute || !c.AllowDirect {
		t.Errorf("eventing stream config: subjects %v storage %v max age %v duplicates %v direct %v", c.Subjects, c.Storage, c.MaxAge, c.Duplicates, c.AllowDirect)
	}
	// A dead letter of any service of the prefix is stored.
	if _, err := js.Publish(t.Context(), "ev_deadletter.cart.view", []byte("x")); err != nil {
		t.Errorf("publish a dead letter: %v", err)
	}

	// Someone shortened its max age: provisioning another service keeps it.
	c.MaxAge = time.Hour
	if _, err := js.UpdateStream(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if err := streams.Provision(t.Context(), js, streams.Config{Prefix: "ev", Service: "chat"}, streams.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := streams.EnsureEventingStream(t.Context(), js, cfg, streams.StoreConfig{}, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != time.Hour || info.Config.Storage != jetstream.MemoryStorage {
		t.Errorf("existing eventing stream changed: max age %v storage %v", info.Config.MaxAge, info.Config.Storage)
	}
}
