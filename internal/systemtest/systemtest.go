// Package systemtest runs the real parts of a jetstate system inside a
// test: a user function written with the sdk, and a sidecar in front of
// it, each on loopback and stopped when the test ends. The tests of the
// console, the examples and the Grafana dashboard share it; only tests
// import it.
package systemtest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/sdk"
)

// ServeFunction serves a function of the sdk with entities on a loopback
// port until the test ends, and returns its address.
func ServeFunction(t testing.TB, cfg sdk.Config, entities ...sdk.Entity) string {
	t.Helper()
	fn, err := sdk.New(cfg, entities...)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	Go(t, func(ctx context.Context) error { return fn.Serve(ctx, lis) })
	return lis.Addr().String()
}

// RunSidecar runs a sidecar of cfg on js until the test ends, and returns
// it once it serves.
func RunSidecar(t testing.TB, js jetstream.JetStream, cfg proxy.Config) *proxy.Proxy {
	t.Helper()
	p, err := proxy.New(cfg, js)
	if err != nil {
		t.Fatal(err)
	}
	r := Go(t, p.Run)
	select {
	case <-p.Serving():
	case <-r.Done():
		t.Fatalf("sidecar %s stopped before serving: %v", cfg.Storage.Service, r.Err())
	case <-time.After(20 * time.Second): // a failsafe
		t.Fatalf("sidecar %s not serving within 20s", cfg.Storage.Service)
	}
	return p
}

// Dial returns a client of addr's gRPC server, closed when the test ends.
func Dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Running is what Go runs.
type Running struct {
	done chan struct{}
	err  error
}

// Done is closed when the run returned.
func (r *Running) Done() <-chan struct{} { return r.done }

// Err is what the run returned, once Done is closed.
func (r *Running) Err() error { return r.err }

// Go runs run in a goroutine until the test ends: then its context is
// cancelled and the cleanup waits for it to return.
func Go(t testing.TB, run func(context.Context) error) *Running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}
