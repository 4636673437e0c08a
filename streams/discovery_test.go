package streams_test

import (
	"errors"
	"testing"

	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// TestDiscovery: the latest answer is kept, an equal one is not written
// again, and a service provisioned without the bucket says so.
func TestDiscovery(t *testing.T) {
	t.Parallel()
	js := streamstest.RunServer(t).JetStream(t)
	cfg := streams.Config{Service: "shop"}
	if _, err := streams.NewDiscovery(t.Context(), js, cfg); !errors.Is(err, streams.ErrStreamNotFound) {
		t.Fatalf("NewDiscovery before Provision: %v, want ErrStreamNotFound", err)
	}
	if err := streams.Provision(t.Context(), js, cfg, streams.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	d, err := streams.NewDiscovery(t.Context(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, found, err := d.Get(t.Context()); err != nil || found {
		t.Fatalf("Get of a new service: found %v, %v", found, err)
	}
	for _, spec := range []string{"one", "one", "two"} {
		if err := d.Put(t.Context(), []byte(spec)); err != nil {
			t.Fatalf("Put %s: %v", spec, err)
		}
	}
	got, found, err := d.Get(t.Context())
	if err != nil || !found || string(got) != "two" {
		t.Fatalf("Get = %q, %v, %v; want two", got, found, err)
	}
	kv, err := js.KeyValue(t.Context(), cfg.DiscoveryBucket())
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), "spec")
	if err != nil {
		t.Fatal(err)
	}
	if e.Revision() != 2 {
		t.Errorf("revision %d after putting one, one, two: want 2 (an equal answer is not written)", e.Revision())
	}
}
