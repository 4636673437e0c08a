package embedded_test

import (
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/embedded"
)

func TestStartServesJetStream(t *testing.T) {
	s, err := embedded.Start(embedded.Config{Port: -1, StoreDir: t.TempDir(), SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := streams.CheckServer(t.Context(), js); err != nil {
		t.Fatalf("CheckServer: %v", err)
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	if _, err := embedded.Start(embedded.Config{Port: -1}); err == nil {
		t.Fatal("Start without StoreDir succeeded")
	}
	first, err := embedded.Start(embedded.Config{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Shutdown()
	// The same port twice: the second must fail, not hang.
	u, err := url.Parse(first.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	if s, err := embedded.Start(embedded.Config{Port: port, StoreDir: t.TempDir(), ReadyTimeout: time.Second}); err == nil {
		s.Shutdown()
		t.Fatal("second server on the same port started")
	}
}
