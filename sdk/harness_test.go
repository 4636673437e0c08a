package sdk_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	"github.com/jetstate/jetstate/sdk"
	tm "github.com/jetstate/jetstate/sdk/internal/testmodel"
)

// The tests play the proxy's role against a real server over loopback gRPC and compare every
// message the user function sends with the exact message a TCK model test expects (spec
// section 4.1: whole-message protobuf equality).

// Service names of the test model.
const (
	esModel = "jetstate.sdk.testmodel.EventSourcedModel"
	esTwo   = "jetstate.sdk.testmodel.EventSourcedTwo"
	veModel = "jetstate.sdk.testmodel.ValueEntityModel"
	veTwo   = "jetstate.sdk.testmodel.ValueEntityTwo"
)

// recvTimeout bounds every wait for a message from the user function.
const recvTimeout = 10 * time.Second

// testLogger writes to the test's output, shown when the test fails.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// serve starts a server for entities on a loopback port and returns a client connection to it.
// The server is stopped, and waited for, when the test ends.
func serve(t *testing.T, cfg sdk.Config, entities ...sdk.Entity) *grpc.ClientConn {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = time.Second
	}
	srv, err := sdk.New(cfg, entities...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return conn
}

// streamCtx bounds a stream's life so that a hung user function fails the test.
func streamCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), recvTimeout)
	t.Cleanup(cancel)
	return ctx
}

// esConn is the proxy's side of one event-sourced entity stream.
type esConn struct {
	t      *testing.T
	stream eventsourced.EventSourced_HandleClient
}

func openES(t *testing.T, conn *grpc.ClientConn) *esConn {
	t.Helper()
	stream, err := eventsourced.NewEventSourcedClient(conn).Handle(streamCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return &esConn{t: t, stream: stream}
}

func (c *esConn) send(in *eventsourced.EventSourcedStreamIn) {
	c.t.Helper()
	if err := c.stream.Send(in); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// init sends init without a snapshot.
func (c *esConn) init(service, id string) {
	c.t.Helper()
	c.send(&eventsourced.EventSourcedStreamIn{Message: &eventsourced.EventSourcedStreamIn_Init{Init: &eventsourced.EventSourcedInit{ServiceName: service, EntityId: id}}})
}

// initSnapshot sends init with a snapshot taken at sequence seq.
func (c *esConn) initSnapshot(service, id string, seq int64, snapshot proto.Message) {
	c.t.Helper()
	c.send(&eventsourced.EventSourcedStreamIn{Message: &eventsourced.EventSourcedStreamIn_Init{Init: &eventsourced.EventSourcedInit{
		ServiceName: service, EntityId: id,
		Snapshot: &eventsourced.EventSourcedSnapshot{SnapshotSequence: seq, Snapshot: anyOf(snapshot)},
	}}})
}

func (c *esConn) event(seq int64, payload proto.Message) {
	c.t.Helper()
	c.send(&eventsourced.EventSourcedStreamIn{Message: &eventsourced.EventSourcedStreamIn_Event{Event: &eventsourced.EventSourcedEvent{Sequence: seq, Payload: anyOf(payload)}}})
}

func (c *esConn) command(id int64, entityID, name string, payload proto.Message) {
	c.t.Helper()
	c.send(&eventsourced.EventSourcedStreamIn{Message: &eventsourced.EventSourcedStreamIn_Command{Command: &cloudstate.Command{
		EntityId: entityID, Id: id, Name: name, Payload: anyOf(payload),
	}}})
}

// expect receives the next message and compares it with want.
func (c *esConn) expect(want *eventsourced.EventSourcedStreamOut) {
	c.t.Helper()
	got, err := c.stream.Recv()
	if err != nil {
		c.t.Fatalf("recv: %v, want %v", err, want)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		c.t.Fatalf("unexpected message (-want +got):\n%s", diff)
	}
}

// expectReply expects an EventSourcedReply.
func (c *esConn) expectReply(r *eventsourced.EventSourcedReply) {
	c.t.Helper()
	c.expect(&eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Reply{Reply: r}})
}

// expectFailure expects a stream-level Failure, then the end of the stream.
func (c *esConn) expectFailure(commandID int64, description string) {
	c.t.Helper()
	c.expect(&eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Failure{Failure: &cloudstate.Failure{CommandId: commandID, Description: description}}})
	c.expectEnd()
}

// passivate half-closes the stream, as the proxy does on passivation, and expects the user
// function to end it.
func (c *esConn) passivate() {
	c.t.Helper()
	if err := c.stream.CloseSend(); err != nil {
		c.t.Fatal(err)
	}
	c.expectEnd()
}

func (c *esConn) expectEnd() {
	c.t.Helper()
	if m, err := c.stream.Recv(); !errors.Is(err, io.EOF) {
		c.t.Fatalf("recv = %v, %v; want the end of the stream", m, err)
	}
}

// veConn is the proxy's side of one value-entity stream.
type veConn struct {
	t      *testing.T
	stream valueentity.ValueEntity_HandleClient
}

func openVE(t *testing.T, conn *grpc.ClientConn) *veConn {
	t.Helper()
	stream, err := valueentity.NewValueEntityClient(conn).Handle(streamCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return &veConn{t: t, stream: stream}
}

func (c *veConn) send(in *valueentity.ValueEntityStreamIn) {
	c.t.Helper()
	if err := c.stream.Send(in); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// init sends init with the stored state, nil for none (state is then an empty
// ValueEntityInitState, as the proxy always sends it).
func (c *veConn) init(service, id string, state proto.Message) {
	c.t.Helper()
	s := &valueentity.ValueEntityInitState{}
	if state != nil {
		s.Value = anyOf(state)
	}
	c.send(&valueentity.ValueEntityStreamIn{Message: &valueentity.ValueEntityStreamIn_Init{Init: &valueentity.ValueEntityInit{ServiceName: service, EntityId: id, State: s}}})
}

func (c *veConn) command(id int64, entityID, name string, payload proto.Message) {
	c.t.Helper()
	c.send(&valueentity.ValueEntityStreamIn{Message: &valueentity.ValueEntityStreamIn_Command{Command: &cloudstate.Command{
		EntityId: entityID, Id: id, Name: name, Payload: anyOf(payload),
	}}})
}

func (c *veConn) expect(want *valueentity.ValueEntityStreamOut) {
	c.t.Helper()
	got, err := c.stream.Recv()
	if err != nil {
		c.t.Fatalf("recv: %v, want %v", err, want)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		c.t.Fatalf("unexpected message (-want +got):\n%s", diff)
	}
}

func (c *veConn) expectReply(r *valueentity.ValueEntityReply) {
	c.t.Helper()
	c.expect(&valueentity.ValueEntityStreamOut{Message: &valueentity.ValueEntityStreamOut_Reply{Reply: r}})
}

func (c *veConn) expectFailure(commandID int64, description string) {
	c.t.Helper()
	c.expect(&valueentity.ValueEntityStreamOut{Message: &valueentity.ValueEntityStreamOut_Failure{Failure: &cloudstate.Failure{CommandId: commandID, Description: description}}})
	c.expectEnd()
}

func (c *veConn) passivate() {
	c.t.Helper()
	if err := c.stream.CloseSend(); err != nil {
		c.t.Fatal(err)
	}
	c.expectEnd()
}

func (c *veConn) expectEnd() {
	c.t.Helper()
	if m, err := c.stream.Recv(); !errors.Is(err, io.EOF) {
		c.t.Fatalf("recv = %v, %v; want the end of the stream", m, err)
	}
}

// Message builders, in the TCK's notation.

func anyOf(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// anyOfURL is an Any with any type URL and bytes.
func anyOfURL(typeURL string, value []byte) *anypb.Any {
	return &anypb.Any{TypeUrl: typeURL, Value: value}
}

// req is Request{id, actions}.
func req(id string, actions ...*tm.RequestAction) *tm.Request {
	return &tm.Request{Id: id, Actions: actions}
}

func emit(v string) *tm.RequestAction {
	return &tm.RequestAction{Action: &tm.RequestAction_Emit{Emit: &tm.Emit{Value: v}}}
}

func update(v string) *tm.RequestAction {
	return &tm.RequestAction{Action: &tm.RequestAction_Update{Update: &tm.Update{Value: v}}}
}

func del() *tm.RequestAction {
	return &tm.RequestAction{Action: &tm.RequestAction_Delete{Delete: &tm.Delete{}}}
}

func forward(id string) *tm.RequestAction {
	return &tm.RequestAction{Action: &tm.RequestAction_Forward{Forward: &tm.Forward{Id: id}}}
}

func effect(id string, synchronous bool) *tm.RequestAction {
	return &tm.RequestAction{Action: &tm.RequestAction_Effect{Effect: &tm.Effect{Id: id, Synchronous: synchronous}}}
}

func fail(msg string) *tm.RequestAction {
	return &tm.RequestAction{Action: &tm.RequestAction_Fail{Fail: &tm.Fail{Message: msg}}}
}

func errorAction(msg string) *tm.RequestAction {
	return &tm.RequestAction{Action: &tm.RequestAction_Error{Error: &tm.Error{Message: msg}}}
}

func panicAction(msg string) *tm.RequestAction {
	return &tm.RequestAction{Action: &tm.RequestAction_Panic{Panic: &tm.Panic{Message: msg}}}
}

// p is P(v): the Any of Persisted{v}.
func p(v string) *anypb.Any { return anyOf(&tm.Persisted{Value: v}) }

// ps is a list of P(v).
func ps(vs ...string) []*anypb.Any {
	var out []*anypb.Any
	for _, v := range vs {
		out = append(out, p(v))
	}
	return out
}

// reply is a client action replying Response{message}.
func reply(message string) *cloudstate.ClientAction {
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: &cloudstate.Reply{Payload: anyOf(&tm.Response{Message: message})}}}
}

// forwardTo is a client action forwarding Request{id} to service/Call.
func forwardTo(service, id string) *cloudstate.ClientAction {
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Forward{Forward: &cloudstate.Forward{
		ServiceName: service, CommandName: "Call", Payload: anyOf(req(id)),
	}}}
}

// failure is a client action failing command id.
func failure(id int64, description string, restart bool) *cloudstate.ClientAction {
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: &cloudstate.Failure{CommandId: id, Description: description, Restart: restart}}}
}

// sideEffect is effect(id) to service/Call.
func sideEffect(service, id string, synchronous bool) *cloudstate.SideEffect {
	return &cloudstate.SideEffect{ServiceName: service, CommandName: "Call", Payload: anyOf(req(id)), Synchronous: synchronous}
}
