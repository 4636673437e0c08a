package tck_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// expectTimeout is how long an expected message may take (the TCK's ~3 s).
const expectTimeout = 3 * time.Second

const (
	esHandle = "/cloudstate.eventsourced.EventSourced/handle"
	veHandle = "/cloudstate.valueentity.ValueEntity/handle"
)

// tck is one sidecar with the model function behind the interceptor.
type tck struct {
	t    *testing.T
	ic   *interceptor
	p    *proxy.Proxy
	conn *grpc.ClientConn // client of the sidecar
	seen map[int]int      // per call: events already checked
	stop func()
}

func startTCK(t *testing.T) *tck {
	t.Helper()
	nats := streamstest.RunServer(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	m := &model{}
	cloudstate.RegisterEntityDiscoveryServer(srv, m)
	eventsourced.RegisterEventSourcedServer(srv, m)
	valueentity.RegisterValueEntityServer(srv, valueModel{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	ic, icAddr := startInterceptor(t, lis.Addr().String())

	p, err := proxy.New(proxy.Config{
		Storage:          streams.Config{Service: "tck"},
		Provision:        &streams.StoreConfig{},
		UserFunction:     icAddr,
		Listen:           "127.0.0.1:0",
		DiscoveryBackoff: 10 * time.Millisecond,
	}, nats.JetStream(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Serving():
	case err := <-done:
		t.Fatalf("sidecar stopped before serving: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("sidecar not serving within 20s")
	}
	conn, err := grpc.NewClient(p.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	x := &tck{t: t, ic: ic, p: p, conn: conn, seen: map[int]int{}}
	x.stop = func() {
		conn.Close()
		cancel()
		<-done
	}
	t.Cleanup(x.stop)
	return x
}

// callOf waits for the first call of method whose init names entityID.
func (x *tck) callOf(method, entityID string) int {
	x.t.Helper()
	return x.nthCall(method, entityID, 1)
}

// nthCall waits for the n-th call (from 1) of method whose init names
// entityID and returns its number.
func (x *tck) nthCall(method, entityID string, n int) int {
	x.t.Helper()
	deadline := time.Now().Add(expectTimeout)
	for {
		if calls := x.calls(method, entityID); len(calls) >= n {
			return calls[n-1]
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("no call %d of %s for entity %q", n, method, entityID)
		}
		x.waitEvent(deadline)
	}
}

// calls lists the calls of method whose init names entityID, in order.
func (x *tck) calls(method, entityID string) []int {
	x.ic.mu.Lock()
	defer x.ic.mu.Unlock()
	var out []int
	for _, e := range x.ic.events {
		if e.method == method && e.in && e.msg != nil && initEntity(e.msg) == entityID {
			out = append(out, e.call)
		}
	}
	return out
}

func initEntity(m proto.Message) string {
	switch v := m.(type) {
	case *eventsourced.EventSourcedStreamIn:
		return v.GetInit().GetEntityId()
	case *valueentity.ValueEntityStreamIn:
		return v.GetInit().GetEntityId()
	}
	return ""
}

func (x *tck) waitEvent(deadline time.Time) {
	select {
	case <-x.ic.wake:
	case <-time.After(time.Until(deadline)):
	}
}

// next returns the next unchecked event of call, waiting for it.
func (x *tck) next(call int) event {
	x.t.Helper()
	deadline := time.Now().Add(expectTimeout)
	for {
		x.ic.mu.Lock()
		n := 0
		for _, e := range x.ic.events {
			if e.call != call {
				continue
			}
			if n == x.seen[call] {
				x.seen[call]++
				x.ic.mu.Unlock()
				return e
			}
			n++
		}
		x.ic.mu.Unlock()
		if time.Now().After(deadline) {
			x.t.Fatalf("call %d: no message %d within %v", call, x.seen[call]+1, expectTimeout)
		}
		x.waitEvent(deadline)
	}
}

// in expects the next message of call to go sidecar -> function and equal want.
func (x *tck) in(call int, want proto.Message) {
	x.t.Helper()
	x.expect(call, true, want)
}

// out expects the next message of call to go function -> sidecar and equal want.
func (x *tck) out(call int, want proto.Message) {
	x.t.Helper()
	x.expect(call, false, want)
}

func (x *tck) expect(call int, in bool, want proto.Message) {
	x.t.Helper()
	e := x.next(call)
	if e.in != in || e.closed {
		x.t.Fatalf("call %d: got %s, want %s %v", call, describe(e), direction(in), want)
	}
	if d := cmp.Diff(want, e.msg, protocmp.Transform()); d != "" {
		x.t.Fatalf("call %d %s (-want +got):\n%s", call, direction(in), d)
	}
}

// closed expects both directions of call to end next (in either order).
func (x *tck) closed(call int) {
	x.t.Helper()
	for range 2 {
		if e := x.next(call); !e.closed {
			x.t.Fatalf("call %d: got %s, want the stream closed", call, describe(e))
		}
	}
}

// noMore checks that, 10 ms after the last step, the interceptor recorded
// nothing that was not checked (the TCK's verifyNoMoreInteractions).
func (x *tck) noMore() {
	x.t.Helper()
	time.Sleep(10 * time.Millisecond)
	x.ic.mu.Lock()
	defer x.ic.mu.Unlock()
	counts := map[int]int{}
	for _, e := range x.ic.events {
		counts[e.call]++
	}
	for call, n := range counts {
		if call == 1 { // discovery, checked by its own test
			continue
		}
		if x.seen[call] < n {
			var extra []string
			i := 0
			for _, e := range x.ic.events {
				if e.call == call {
					if i >= x.seen[call] {
						extra = append(extra, describe(e))
					}
					i++
				}
			}
			x.t.Fatalf("call %d has unexpected messages: %v", call, extra)
		}
	}
}

func direction(in bool) string {
	if in {
		return "sidecar->function"
	}
	return "function->sidecar"
}

func describe(e event) string {
	if e.closed {
		return direction(e.in) + " closed"
	}
	return fmt.Sprintf("%s %v", direction(e.in), e.msg)
}
