package chat_test

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/jetstate/jetstate/examples/chat"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/sdk"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// system is the chat on loopback, all real: an in-process NATS server, the chat function and
// the sidecar.
type system struct {
	addr string // the sidecar's ingress: gRPC and HTTP/JSON
}

// sidecarConfig is the sidecar of the tests, serving CRDT entities.
func sidecarConfig(userFunction string) proxy.Config {
	return proxy.Config{
		Storage:      streams.Config{Service: "chat"},
		Provision:    &streams.StoreConfig{},
		UserFunction: userFunction,
		Listen:       "127.0.0.1:0",
		Enabled:      []string{model.CRDT},
	}
}

// requireCRDT returns the chat's entities.
func requireCRDT(t *testing.T) []sdk.Entity {
	t.Helper()
	entities, err := chat.Entities()
	if err != nil {
		t.Fatal(err)
	}
	return entities
}

func startSystem(t *testing.T) *system {
	t.Helper()
	entities := requireCRDT(t)
	js := streamstest.RunServer(t).JetStream(t)
	fn, err := sdk.New(sdk.Config{ServiceName: "chat"}, entities...)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fnCtx, stopFn := context.WithCancel(context.Background())
	fnDone := make(chan error, 1)
	go func() { fnDone <- fn.Serve(fnCtx, lis) }()
	t.Cleanup(func() { stopFn(); <-fnDone })

	p, err := proxy.New(sidecarConfig(lis.Addr().String()), js)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-p.Serving():
	case err := <-done:
		t.Fatalf("sidecar stopped before serving: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("sidecar not serving within 20s")
	}
	return &system{addr: p.Addr().String()}
}

func (s *system) sidecarURL() *url.URL { return &url.URL{Scheme: "http", Host: s.addr} }
