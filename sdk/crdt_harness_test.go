package sdk_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/sdk"
	tm "github.com/jetstate/jetstate/sdk/internal/testmodel"
)

// crdtConn is the proxy's side of one CRDT entity stream.
type crdtConn struct {
	t      *testing.T
	stream pb.Crdt_HandleClient
	id     string
}

func openCrdt(t *testing.T, conn *grpc.ClientConn) *crdtConn {
	t.Helper()
	stream, err := pb.NewCrdtClient(conn).Handle(streamCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return &crdtConn{t: t, stream: stream}
}

// openCrdtModel opens a stream for the model entity id, with init carrying delta (nil: none).
func openCrdtModel(t *testing.T, conn *grpc.ClientConn, id string, delta *pb.CrdtDelta) *crdtConn {
	t.Helper()
	c := openCrdt(t, conn)
	c.init(crdtModel, id, delta)
	return c
}

func (c *crdtConn) send(in *pb.CrdtStreamIn) {
	c.t.Helper()
	if err := c.stream.Send(in); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *crdtConn) init(service, id string, delta *pb.CrdtDelta) {
	c.t.Helper()
	c.id = id
	c.send(&pb.CrdtStreamIn{Message: &pb.CrdtStreamIn_Init{Init: &pb.CrdtInit{ServiceName: service, EntityId: id, Delta: delta}}})
}

func (c *crdtConn) delta(d *pb.CrdtDelta) {
	c.t.Helper()
	c.send(&pb.CrdtStreamIn{Message: &pb.CrdtStreamIn_Delta{Delta: d}})
}

func (c *crdtConn) deleted() {
	c.t.Helper()
	c.send(&pb.CrdtStreamIn{Message: &pb.CrdtStreamIn_Delete{Delete: &pb.CrdtDelete{}}})
}

func (c *crdtConn) cancel(id int64) {
	c.t.Helper()
	c.send(&pb.CrdtStreamIn{Message: &pb.CrdtStreamIn_StreamCancelled{StreamCancelled: &cloudstate.StreamCancelled{EntityId: c.id, Id: id}}})
}

func (c *crdtConn) command(id int64, name string, payload proto.Message, streamed bool) {
	c.t.Helper()
	c.send(&pb.CrdtStreamIn{Message: &pb.CrdtStreamIn_Command{Command: &cloudstate.Command{
		EntityId: c.id, Id: id, Name: name, Payload: anyOf(payload), Streamed: streamed,
	}}})
}

// process sends command id Process with the actions.
func (c *crdtConn) process(id int64, actions ...*tm.CrdtRequestAction) {
	c.t.Helper()
	c.command(id, "Process", &tm.CrdtRequest{Id: c.id, Actions: actions}, false)
}

// processStreamed sends command id ProcessStreamed.
func (c *crdtConn) processStreamed(id int64, r *tm.CrdtStreamedRequest) {
	c.t.Helper()
	r.Id = c.id
	c.command(id, "ProcessStreamed", r, true)
}

func (c *crdtConn) expect(want *pb.CrdtStreamOut) {
	c.t.Helper()
	got, err := c.stream.Recv()
	if err != nil {
		c.t.Fatalf("recv: %v, want %v", err, want)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		c.t.Fatalf("unexpected message (-want +got):\n%s", diff)
	}
}

func (c *crdtConn) expectReply(r *pb.CrdtReply) {
	c.t.Helper()
	c.expect(&pb.CrdtStreamOut{Message: &pb.CrdtStreamOut_Reply{Reply: r}})
}

// expectState expects the reply to command id rendering state, with the state action (nil:
// none).
func (c *crdtConn) expectState(id int64, state string, action *pb.CrdtStateAction) {
	c.t.Helper()
	c.expectReply(&pb.CrdtReply{CommandId: id, ClientAction: reply(state), StateAction: action})
}

func (c *crdtConn) expectStreamed(m *pb.CrdtStreamedMessage) {
	c.t.Helper()
	c.expect(&pb.CrdtStreamOut{Message: &pb.CrdtStreamOut_StreamedMessage{StreamedMessage: m}})
}

func (c *crdtConn) expectCancelled(r *pb.CrdtStreamCancelledResponse) {
	c.t.Helper()
	c.expect(&pb.CrdtStreamOut{Message: &pb.CrdtStreamOut_StreamCancelledResponse{StreamCancelledResponse: r}})
}

func (c *crdtConn) expectFailure(commandID int64, description string) {
	c.t.Helper()
	c.expect(&pb.CrdtStreamOut{Message: &pb.CrdtStreamOut_Failure{Failure: &cloudstate.Failure{CommandId: commandID, Description: description}}})
	c.expectEnd()
}

// expectFailurePrefix is expectFailure for descriptions that end in a protobuf error, whose
// text protobuf deliberately varies.
func (c *crdtConn) expectFailurePrefix(commandID int64, prefix string) {
	c.t.Helper()
	got, err := c.stream.Recv()
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	if f := got.GetFailure(); f == nil || f.GetCommandId() != commandID || !strings.HasPrefix(f.GetDescription(), prefix) {
		c.t.Fatalf("got %v, want a failure of command %d starting %q", got, commandID, prefix)
	}
	c.expectEnd()
}

// passivate half-closes the stream, as the proxy does on passivation and after a delete, and
// expects the user function to end it.
func (c *crdtConn) passivate() {
	c.t.Helper()
	if err := c.stream.CloseSend(); err != nil {
		c.t.Fatal(err)
	}
	c.expectEnd()
}

func (c *crdtConn) expectEnd() {
	c.t.Helper()
	if m, err := c.stream.Recv(); !errors.Is(err, io.EOF) {
		c.t.Fatalf("recv = %v, %v; want the end of the stream", m, err)
	}
}

// Request actions of the CRDT model.

func crdtUpdate(u *tm.CrdtUpdate) *tm.CrdtRequestAction {
	return &tm.CrdtRequestAction{Action: &tm.CrdtRequestAction_Update{Update: u}}
}

func incGC(n uint64) *tm.CrdtRequestAction {
	return crdtUpdate(&tm.CrdtUpdate{Update: &tm.CrdtUpdate_GcounterIncrement{GcounterIncrement: n}})
}

func changePN(n int64) *tm.CrdtRequestAction {
	return crdtUpdate(&tm.CrdtUpdate{Update: &tm.CrdtUpdate_PncounterChange{PncounterChange: n}})
}

func addGSet(s string) *tm.CrdtRequestAction {
	return crdtUpdate(&tm.CrdtUpdate{Update: &tm.CrdtUpdate_GsetAdd{GsetAdd: s}})
}

func orsetUpdate(u *tm.SetUpdate) *tm.CrdtUpdate {
	return &tm.CrdtUpdate{Update: &tm.CrdtUpdate_Orset{Orset: u}}
}

func addORSet(s string) *tm.CrdtRequestAction {
	return crdtUpdate(orsetUpdate(&tm.SetUpdate{Action: &tm.SetUpdate_Add{Add: s}}))
}

func removeORSet(s string) *tm.CrdtRequestAction {
	return crdtUpdate(orsetUpdate(&tm.SetUpdate{Action: &tm.SetUpdate_Remove{Remove: s}}))
}

func clearORSet() *tm.CrdtRequestAction {
	return crdtUpdate(orsetUpdate(&tm.SetUpdate{Action: &tm.SetUpdate_Clear{Clear: true}}))
}

func setLWW(v string, clock sdk.Clock, custom int64) *tm.CrdtRequestAction {
	return crdtUpdate(&tm.CrdtUpdate{Update: &tm.CrdtUpdate_Lwwregister{Lwwregister: &tm.RegisterUpdate{Value: v, Clock: int32(clock), CustomClockValue: custom}}})
}

func enableFlag() *tm.CrdtRequestAction {
	return crdtUpdate(&tm.CrdtUpdate{Update: &tm.CrdtUpdate_FlagEnable{FlagEnable: true}})
}

func voteUpdate(v bool) *tm.CrdtUpdate {
	return &tm.CrdtUpdate{Update: &tm.CrdtUpdate_SelfVote{SelfVote: v}}
}

func vote(v bool) *tm.CrdtRequestAction { return crdtUpdate(voteUpdate(v)) }

func mapUpdate(u *tm.MapUpdate) *tm.CrdtRequestAction {
	return crdtUpdate(&tm.CrdtUpdate{Update: &tm.CrdtUpdate_Ormap{Ormap: u}})
}

func mapAdd(key string) *tm.CrdtRequestAction {
	return mapUpdate(&tm.MapUpdate{Key: key, Action: &tm.MapUpdate_Add{Add: true}})
}

func mapSet(key string, a *tm.CrdtRequestAction) *tm.CrdtRequestAction {
	return mapUpdate(&tm.MapUpdate{Key: key, Action: &tm.MapUpdate_Update{Update: a.GetUpdate()}})
}

func mapRemove(key string) *tm.CrdtRequestAction {
	return mapUpdate(&tm.MapUpdate{Key: key, Action: &tm.MapUpdate_Remove{Remove: true}})
}

func mapClear() *tm.CrdtRequestAction {
	return mapUpdate(&tm.MapUpdate{Action: &tm.MapUpdate_Clear{Clear: true}})
}

func crdtDelete() *tm.CrdtRequestAction {
	return &tm.CrdtRequestAction{Action: &tm.CrdtRequestAction_Delete{Delete: &tm.Delete{}}}
}

func crdtForward(id string) *tm.CrdtRequestAction {
	return &tm.CrdtRequestAction{Action: &tm.CrdtRequestAction_Forward{Forward: &tm.Forward{Id: id}}}
}

func crdtEffect(id string, synchronous bool) *tm.CrdtRequestAction {
	return &tm.CrdtRequestAction{Action: &tm.CrdtRequestAction_Effect{Effect: &tm.Effect{Id: id, Synchronous: synchronous}}}
}

func crdtFail(msg string) *tm.CrdtRequestAction {
	return &tm.CrdtRequestAction{Action: &tm.CrdtRequestAction_Fail{Fail: &tm.Fail{Message: msg}}}
}

func crdtError(msg string) *tm.CrdtRequestAction {
	return &tm.CrdtRequestAction{Action: &tm.CrdtRequestAction_Error{Error: &tm.Error{Message: msg}}}
}

func crdtPanic(msg string) *tm.CrdtRequestAction {
	return &tm.CrdtRequestAction{Action: &tm.CrdtRequestAction_Panic{Panic: &tm.Panic{Message: msg}}}
}

// withConsistency sets the write consistency of an update action.
func withConsistency(a *tm.CrdtRequestAction, w tm.WriteConsistency) *tm.CrdtRequestAction {
	a.GetUpdate().WriteConsistency = w
	return a
}

// Deltas.

func strs(ss ...string) []*anypb.Any {
	var out []*anypb.Any
	for _, s := range ss {
		out = append(out, sdk.String(s))
	}
	return out
}

func dGC(n uint64) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Gcounter{Gcounter: &pb.GCounterDelta{Increment: n}}}
}

func dPN(n int64) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Pncounter{Pncounter: &pb.PNCounterDelta{Change: n}}}
}

func dGSet(added ...string) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Gset{Gset: &pb.GSetDelta{Added: strs(added...)}}}
}

func dORSet(cleared bool, removed, added []string) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Orset{Orset: &pb.ORSetDelta{Cleared: cleared, Removed: strs(removed...), Added: strs(added...)}}}
}

func dLWW(v string, clock pb.CrdtClock, custom int64) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Lwwregister{Lwwregister: &pb.LWWRegisterDelta{Value: sdk.String(v), Clock: clock, CustomClockValue: custom}}}
}

func dFlag(v bool) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Flag{Flag: &pb.FlagDelta{Value: v}}}
}

func dVote(self bool, votesFor, voters int32) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Vote{Vote: &pb.VoteDelta{SelfVote: self, VotesFor: votesFor, TotalVoters: voters}}}
}

// entry is an ORMap entry delta under the string key k.
func entry(k string, d *pb.CrdtDelta) *pb.ORMapEntryDelta {
	return &pb.ORMapEntryDelta{Key: sdk.String(k), Delta: d}
}

func dORMap(cleared bool, removed []string, updated, added []*pb.ORMapEntryDelta) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Ormap{Ormap: &pb.ORMapDelta{Cleared: cleared, Removed: strs(removed...), Updated: updated, Added: added}}}
}

// upd is state_action=update{d} with write consistency LOCAL.
func upd(d *pb.CrdtDelta) *pb.CrdtStateAction {
	return &pb.CrdtStateAction{Action: &pb.CrdtStateAction_Update{Update: d}}
}

// delAction is state_action=delete{}.
func delAction() *pb.CrdtStateAction {
	return &pb.CrdtStateAction{Action: &pb.CrdtStateAction_Delete{Delete: &pb.CrdtDelete{}}}
}

// crdtSideEffect is effect(id) to CrdtTwo/Call.
func crdtSideEffect(id string, synchronous bool) *cloudstate.SideEffect {
	return &cloudstate.SideEffect{ServiceName: crdtTwo, CommandName: "Call", Payload: anyOf(&tm.CrdtRequest{Id: id}), Synchronous: synchronous}
}

// streamedMsg is a streamed message for command id replying state.
func streamedMsg(id int64, state string) *pb.CrdtStreamedMessage {
	return &pb.CrdtStreamedMessage{CommandId: id, ClientAction: reply(state)}
}
