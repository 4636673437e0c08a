package tck_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/crdt"
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
	crHandle = "/cloudstate.crdt.Crdt/handle"
)

// tck is one sidecar with the model function behind the interceptor.
type tck struct {
	t    *testing.T
	ic   *interceptor
	p    *proxy.Proxy
	conn *grpc.ClientConn // client of the sidecar
	// checked holds the indexes (into ic.events) of the events a test has
	// checked; claimed, the calls nextCall has handed out.
	checked map[int]bool
	claimed map[int]bool
	stop    func()
}

// startTCK starts a sidecar in front of the TCK model function, which serves
// every entity kind's model (as the TCK's one user function does).
func startTCK(t *testing.T) *tck {
	t.Helper()
	return startTCKWith(t, func(srv *grpc.Server) {
		m := &model{}
		cloudstate.RegisterEntityDiscoveryServer(srv, m)
		eventsourced.RegisterEventSourcedServer(srv, m)
		valueentity.RegisterValueEntityServer(srv, valueModel{})
		action.RegisterActionProtocolServer(srv, actionModel{})
		crdt.RegisterCrdtServer(srv, crdtModel{})
	})
}

// tckConfig is the sidecar's configuration in every TCK run: the
// defaults, the function at uf.
func tckConfig(uf string) proxy.Config {
	return proxy.Config{
		Storage:          streams.Config{Service: "tck"},
		Provision:        &streams.StoreConfig{},
		UserFunction:     uf,
		Listen:           "127.0.0.1:0",
		DiscoveryBackoff: 10 * time.Millisecond,
	}
}

// startTCKWith is startTCK with another model function: register serves
// its protocol services.
func startTCKWith(t *testing.T, register func(*grpc.Server)) *tck {
	t.Helper()
	nats := streamstest.RunServer(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	ic, icAddr := startInterceptor(t, lis.Addr().String())

	p, err := proxy.New(tckConfig(icAddr), nats.JetStream(t))
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
	x := &tck{t: t, ic: ic, p: p, conn: conn, checked: map[int]bool{}, claimed: map[int]bool{}}
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

// nextCall waits for the first call of method, in the order the calls were
// opened, that no earlier nextCall returned (the TCK's
// interceptor.expectAction...Connection()).
func (x *tck) nextCall(method string) int {
	x.t.Helper()
	deadline := time.Now().Add(expectTimeout)
	for {
		x.ic.mu.Lock()
		for i, m := range x.ic.methods {
			if call := i + 1; m == method && !x.claimed[call] {
				x.claimed[call] = true
				x.ic.mu.Unlock()
				return call
			}
		}
		x.ic.mu.Unlock()
		if time.Now().After(deadline) {
			x.t.Fatalf("no further call of %s within %v", method, expectTimeout)
		}
		x.waitEvent(deadline)
	}
}

// mark is the number of events recorded so far: an event whose index (as
// returned by in and out) is below it happened before the mark was taken.
func (x *tck) mark() int {
	x.ic.mu.Lock()
	defer x.ic.mu.Unlock()
	return len(x.ic.events)
}

func initEntity(m proto.Message) string {
	switch v := m.(type) {
	case *eventsourced.EventSourcedStreamIn:
		return v.GetInit().GetEntityId()
	case *valueentity.ValueEntityStreamIn:
		return v.GetInit().GetEntityId()
	case *crdt.CrdtStreamIn:
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
	_, e := x.nextOf(call, false)
	return e
}

// nextOf returns the index and the next unchecked event of call, waiting
// for it, and marks it checked. With pastInEnd, an unchecked end of the
// request direction is passed over (and left for closed): the interceptor
// records each direction from its own goroutine, so when the sidecar ends
// its requests without waiting for answers (unary and server-streaming
// calls), that end may be recorded before or after the answers.
func (x *tck) nextOf(call int, pastInEnd bool) (int, event) {
	x.t.Helper()
	deadline := time.Now().Add(expectTimeout)
	for {
		x.ic.mu.Lock()
		for i, e := range x.ic.events {
			if e.call != call || x.checked[i] || pastInEnd && e.in && e.closed {
				continue
			}
			x.checked[i] = true
			x.ic.mu.Unlock()
			return i, e
		}
		x.ic.mu.Unlock()
		if time.Now().After(deadline) {
			x.t.Fatalf("call %d: no further message within %v", call, expectTimeout)
		}
		x.waitEvent(deadline)
	}
}

// in expects the next message of call to go sidecar -> function and equal
// want; it returns the event's index.
func (x *tck) in(call int, want proto.Message) int {
	x.t.Helper()
	return x.expect(call, true, want)
}

// out expects the next message of call to go function -> sidecar and equal
// want (a pending end of the requests aside); it returns the event's index.
func (x *tck) out(call int, want proto.Message) int {
	x.t.Helper()
	return x.expect(call, false, want)
}

// actionMessage strips the metadata of the action protocol's messages
// before they are compared, as the TCK does: the sidecar passes the
// client's headers on, and they vary with the client. Entity protocols are
// compared whole.
var actionMessage = cmp.Options{
	protocmp.IgnoreFields(&action.ActionCommand{}, "metadata"),
	protocmp.IgnoreFields(&cloudstate.Reply{}, "metadata"),
	protocmp.IgnoreFields(&cloudstate.Forward{}, "metadata"),
	protocmp.IgnoreFields(&cloudstate.SideEffect{}, "metadata"),
}

func (x *tck) expect(call int, in bool, want proto.Message) int {
	x.t.Helper()
	i, e := x.nextOf(call, !in)
	if e.in != in || e.closed {
		x.t.Fatalf("call %d: got %s, want %s %v", call, describe(e), direction(in), want)
	}
	opts := cmp.Options{protocmp.Transform()}
	if strings.HasPrefix(e.method, "/"+action.ActionProtocol_ServiceDesc.ServiceName+"/") {
		opts = append(opts, actionMessage)
	}
	if d := cmp.Diff(want, e.msg, opts); d != "" {
		x.t.Fatalf("call %d %s (-want +got):\n%s", call, direction(in), d)
	}
	return i
}

// ended expects the next event of call to be the end of one direction
// (in: the sidecar's requests, else the function's answers).
func (x *tck) ended(call int, in bool) {
	x.t.Helper()
	if e := x.next(call); !e.closed || e.in != in {
		x.t.Fatalf("call %d: got %s, want %s closed", call, describe(e), direction(in))
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
	extra := map[int][]string{}
	for i, e := range x.ic.events {
		if e.call != 1 && !x.checked[i] { // call 1 is discovery, checked by its own test
			extra[e.call] = append(extra[e.call], describe(e))
		}
	}
	for i, m := range x.ic.methods {
		if call := i + 1; call != 1 && len(extra[call]) == 0 && !x.claimed[call] && !x.anyChecked(call) {
			extra[call] = []string{m + " opened"}
		}
	}
	for _, call := range slices.Sorted(maps.Keys(extra)) {
		x.t.Fatalf("call %d has unexpected messages: %v", call, extra[call])
	}
}

// anyChecked tells whether a test looked at call; the caller holds ic.mu.
func (x *tck) anyChecked(call int) bool {
	for i, e := range x.ic.events {
		if e.call == call && x.checked[i] {
			return true
		}
	}
	return false
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
