package streamstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams/streamstest"
)

// TestClusterSurvivesFullRestart checks the helpers themselves: an R3 stream
// created right after RunCluster returns, its data kept across stopping and
// restarting every node on its own store.
func TestClusterSurvivesFullRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	c := streamstest.RunCluster(t, 3)
	js := c.JetStream(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "s", Subjects: []string{"s.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.a", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if c.WaitStreamLeader("s") == nil {
		t.Fatal("no stream leader")
	}
	c.RestartAll()
	c.WaitStreamLeader("s")
	s, err := js.Stream(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, "s.a")
	if err != nil || string(m.Data) != "kept" {
		t.Fatalf("after restart: %v, %v", m, err)
	}
}

func TestServerRestartKeepsStore(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "s", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.a", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	url := srv.ClientURL()
	srv.Restart()
	if srv.ClientURL() != url || !srv.Running() {
		t.Fatalf("restarted on %s, was %s", srv.ClientURL(), url)
	}
	// Clients reconnect by themselves (and fail publishes meanwhile).
	for deadline := time.Now().Add(10 * time.Second); !js.Conn().IsConnected(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("client did not reconnect within 10s")
		}
	}
	s, err := js.Stream(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if info := s.CachedInfo(); info.State.Msgs != 1 {
		t.Fatalf("after restart the stream holds %d messages", info.State.Msgs)
	}
}
