package streamstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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

// TestServerStopThenStart checks the split of Restart: between Stop and
// Start the server is down (a publish fails), after Start the same client
// is served again on the same store.
func TestServerStopThenStart(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "s", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	disconnected, reconnected := make(chan struct{}, 1), make(chan struct{}, 1)
	js.Conn().SetDisconnectErrHandler(func(*nats.Conn, error) { disconnected <- struct{}{} })
	js.Conn().SetReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} })
	srv.Stop()
	if srv.Running() || srv.NATS() != nil {
		t.Fatal("running after Stop")
	}
	select { // the client notices (a publish before that would wait for its ack)
	case <-disconnected:
	case <-ctx.Done():
		t.Fatal("client not disconnected within 30s")
	}
	if _, err := js.Publish(ctx, "s.a", []byte("lost")); err == nil {
		t.Fatal("a publish succeeded while the server was stopped")
	}
	srv.Start()
	srv.Start() // starting a running server does nothing
	if !srv.Running() {
		t.Fatal("not running after Start")
	}
	select { // the client reconnects by itself
	case <-reconnected:
	case <-ctx.Done():
		t.Fatalf("client did not reconnect within 30s: %v %v %v", js.Conn().Status(), js.Conn().LastError(), js.Conn().Stats())
	}
	if _, err := js.Publish(ctx, "s.a", []byte("kept")); err != nil {
		t.Fatalf("publish after Start: %v", err)
	}
	s, err := js.Stream(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if info := s.CachedInfo(); info.State.Msgs != 1 {
		t.Fatalf("after Start the stream holds %d messages, want 1", info.State.Msgs)
	}
}
