package proxy_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// serveStoppable serves f on lis like serveFunction, and returns stop,
// which shuts the function down the way a function process does when it
// stops: it ends every open stream (each handler returns UNAVAILABLE),
// waits until their statuses are written, then stops the server
// gracefully. The sidecar reads each stream's end before the server's
// GOAWAY and the connection's end.
func serveStoppable(t testing.TB, f *testFunction, lis net.Listener) (stop func()) {
	t.Helper()
	stopping := make(chan struct{})
	rpcs := &rpcCount{}
	srv := grpc.NewServer(grpc.StatsHandler(rpcs), grpc.StreamInterceptor(
		func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			done := make(chan error, 1)
			// The handler goes on in the background after the stream's end
			// (its Recv fails once the server finished the stream).
			go func() { done <- handler(srv, ss) }()
			select {
			case err := <-done:
				return err
			case <-stopping:
				return status.Error(codes.Unavailable, "function stopping")
			}
		}))
	cloudstate.RegisterEntityDiscoveryServer(srv, f)
	eventsourced.RegisterEventSourcedServer(srv, f)
	valueentity.RegisterValueEntityServer(srv, valueFunction{f})
	actionpb.RegisterActionProtocolServer(srv, f)
	go srv.Serve(lis)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(stopping)
			rpcs.Wait() // every stream's status is queued before the GOAWAY
			srv.GracefulStop()
		})
	}
	t.Cleanup(func() { close(f.hang); srv.Stop() })
	return stop
}

// rpcCount is a stats.Handler counting the server's RPCs in progress: an
// RPC ends after its status was written.
type rpcCount struct{ sync.WaitGroup }

func (c *rpcCount) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (c *rpcCount) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (c *rpcCount) HandleConn(context.Context, stats.ConnStats)                       {}
func (c *rpcCount) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch s.(type) {
	case *stats.Begin:
		c.Add(1)
	case *stats.End:
		c.Done()
	}
}

// TestFunctionRestart restarts the user function on the same address
// while entities are active: their streams are gone, and the first command
// to each is sent on a new stream (init and replay from storage) instead of
// failing with "send command: EOF"; it runs exactly once.
func TestFunctionRestart(t *testing.T) {
	srv := streamstest.RunServer(t)
	h := &harness{t: t, js: srv.JetStream(t), uf: newTestFunction(t), types: newTestTypes(t)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.ufAddr = lis.Addr().String()
	stop := serveStoppable(t, h.uf, lis)
	h.startProxy(nil)
	h.mustCall("Counter/Add", "c", ptr(1), 1)
	h.mustCall("Register/Set", "r", ptr(4), 4)

	stop()
	lis, err = net.Listen("tcp", h.ufAddr)
	if err != nil {
		t.Fatal(err)
	}
	h.uf = newTestFunction(t)
	serveFunction(t, h.uf, lis)
	// Once an action call reaches the new function, the sidecar has read
	// the old connection to its end, and with it the end of each stream
	// (which came first). A call may fail before: it went to the old one.
	for failsafe := time.Now().Add(time.Minute); ; {
		err := h.conn.Invoke(t.Context(), "/test.Echo/Echo", h.types.msg("Value"), h.types.msg("Value"))
		if err == nil {
			break
		}
		if time.Now().After(failsafe) {
			t.Fatalf("the new function is not reached within a minute: %v", err)
		}
	}

	h.mustCall("Counter/Add", "c", ptr(2), 3)
	h.mustCall("Register/Set", "r", ptr(5), 5)
	// Each entity was re-activated once on the new function, which got
	// the command once.
	for _, key := range []string{"c", "r"} {
		s := h.streamsOf(key)
		if len(s) != 1 {
			t.Fatalf("the new function has %d streams of %q, want 1", len(s), key)
		}
		var commands []string
		for _, r := range s[0] {
			switch in := r.in.(type) {
			case *eventsourced.EventSourcedStreamIn:
				if c := in.GetCommand(); c != nil {
					commands = append(commands, c.GetName())
				}
			case *valueentity.ValueEntityStreamIn:
				if c := in.GetCommand(); c != nil {
					commands = append(commands, c.GetName())
				}
			}
		}
		if len(commands) != 1 {
			t.Fatalf("the new function got the commands %q for %q, want one", commands, key)
		}
	}

	// The counter's command ran once: one event more in its journal.
	j, err := streams.NewJournal(h.js, streams.Config{Service: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var events []int64
	for r, err := range j.Read(t.Context(), streams.Entity{Type: "counter", Key: "c"}, streams.Version{}) {
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, h.types.intField("Value", "n", r.Data))
	}
	if d := cmp.Diff([]int64{1, 2}, events); d != "" {
		t.Fatalf("journal of c (-want +got):\n%s", d)
	}
	h.mustCall("Counter/Get", "c", nil, 3)
	h.mustCall("Register/Get", "r", nil, 5)
}
