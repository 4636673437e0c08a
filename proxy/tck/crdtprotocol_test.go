package tck_test

import (
	"errors"
	"io"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	crmodel "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/crdt"
	pmodel "github.com/jetstate/jetstate/proxy/model"
)

// The CRDT model's own checks: the TCK's model tests (section H), played
// directly against crdtModel over loopback gRPC, so that the proxy tests
// rest on a known-good function.

// --- message builders, in the TCK's notation ---

func crInit(service, id string, d *crdt.CrdtDelta) *crdt.CrdtStreamIn {
	return &crdt.CrdtStreamIn{Message: &crdt.CrdtStreamIn_Init{Init: &crdt.CrdtInit{ServiceName: service, EntityId: id, Delta: d}}}
}

func crDeltaIn(d *crdt.CrdtDelta) *crdt.CrdtStreamIn {
	return &crdt.CrdtStreamIn{Message: &crdt.CrdtStreamIn_Delta{Delta: d}}
}

func crCmd(id string, n int64, name string, req proto.Message) *crdt.CrdtStreamIn {
	return &crdt.CrdtStreamIn{Message: &crdt.CrdtStreamIn_Command{Command: command(id, n, name, req)}}
}

// crStreamedCmd is a command of a server-streaming method.
func crStreamedCmd(id string, n int64, req *crmodel.StreamedRequest) *crdt.CrdtStreamIn {
	c := command(id, n, "ProcessStreamed", req)
	c.Streamed = true
	return &crdt.CrdtStreamIn{Message: &crdt.CrdtStreamIn_Command{Command: c}}
}

func crCancelled(id string, n int64) *crdt.CrdtStreamIn {
	return &crdt.CrdtStreamIn{Message: &crdt.CrdtStreamIn_StreamCancelled{StreamCancelled: &cloudstate.StreamCancelled{EntityId: id, Id: n}}}
}

// crOut is a reply; action nil is none (an empty streamed call's).
func crOut(n int64, action *cloudstate.ClientAction, state *crdt.CrdtStateAction, effects ...*cloudstate.SideEffect) *crdt.CrdtStreamOut {
	return &crdt.CrdtStreamOut{Message: &crdt.CrdtStreamOut_Reply{Reply: &crdt.CrdtReply{
		CommandId: n, ClientAction: action, StateAction: state, SideEffects: effects}}}
}

// crStreamedOut is the reply opening a streamed call.
func crStreamedOut(n int64, action *cloudstate.ClientAction, state *crdt.CrdtStateAction) *crdt.CrdtStreamOut {
	out := crOut(n, action, state)
	out.GetReply().Streamed = true
	return out
}

func crFailure(n int64, desc string) *crdt.CrdtStreamOut {
	return crOut(n, failure(n, desc, false), nil)
}

func crStreamed(n int64, resp *crmodel.Response, end bool, effects ...*cloudstate.SideEffect) *crdt.CrdtStreamOut {
	return &crdt.CrdtStreamOut{Message: &crdt.CrdtStreamOut_StreamedMessage{StreamedMessage: &crdt.CrdtStreamedMessage{
		CommandId: n, ClientAction: replyOf(resp), SideEffects: effects, EndStream: end}}}
}

func crCancelledOut(n int64, state *crdt.CrdtStateAction) *crdt.CrdtStreamOut {
	return &crdt.CrdtStreamOut{Message: &crdt.CrdtStreamOut_StreamCancelledResponse{StreamCancelledResponse: &crdt.CrdtStreamCancelledResponse{
		CommandId: n, StateAction: state}}}
}

func crUpdate(d *crdt.CrdtDelta) *crdt.CrdtStateAction {
	return &crdt.CrdtStateAction{Action: &crdt.CrdtStateAction_Update{Update: d}}
}

func crDeleted() *crdt.CrdtStateAction {
	return &crdt.CrdtStateAction{Action: &crdt.CrdtStateAction_Delete{Delete: &crdt.CrdtDelete{}}}
}

func dGCounter(n uint64) *crdt.CrdtDelta {
	return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Gcounter{Gcounter: &crdt.GCounterDelta{Increment: n}}}
}

func dPNCounter(n int64) *crdt.CrdtDelta {
	return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Pncounter{Pncounter: &crdt.PNCounterDelta{Change: n}}}
}

func dGSet(added ...string) *crdt.CrdtDelta {
	return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Gset{Gset: &crdt.GSetDelta{Added: primitives(added)}}}
}

func dORSet(cleared bool, removed, added []string) *crdt.CrdtDelta {
	return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Orset{Orset: &crdt.ORSetDelta{Cleared: cleared, Removed: primitives(removed), Added: primitives(added)}}}
}

func dVote(self bool, votesFor, voters int32) *crdt.CrdtDelta {
	return &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Vote{Vote: &crdt.VoteDelta{SelfVote: self, VotesFor: votesFor, TotalVoters: voters}}}
}

func crReq(id string, actions ...*crmodel.RequestAction) *crmodel.Request {
	return &crmodel.Request{Id: id, Actions: actions}
}

func crUpd(u *crmodel.Update) *crmodel.RequestAction {
	return &crmodel.RequestAction{Action: &crmodel.RequestAction_Update{Update: u}}
}

func uGCounter(n uint64) *crmodel.Update {
	return &crmodel.Update{Update: &crmodel.Update_Gcounter{Gcounter: &crmodel.GCounterUpdate{Increment: n}}}
}

func uPNCounter(n int64) *crmodel.Update {
	return &crmodel.Update{Update: &crmodel.Update_Pncounter{Pncounter: &crmodel.PNCounterUpdate{Change: n}}}
}

func uVote(self bool) *crmodel.Update {
	return &crmodel.Update{Update: &crmodel.Update_Vote{Vote: &crmodel.VoteUpdate{SelfVote: self}}}
}

func incrementBy(ns ...uint64) []*crmodel.RequestAction {
	var out []*crmodel.RequestAction
	for _, n := range ns {
		out = append(out, crUpd(uGCounter(n)))
	}
	return out
}

func changeBy(ns ...int64) []*crmodel.RequestAction {
	var out []*crmodel.RequestAction
	for _, n := range ns {
		out = append(out, crUpd(uPNCounter(n)))
	}
	return out
}

func gsetAdd(es ...string) []*crmodel.RequestAction {
	var out []*crmodel.RequestAction
	for _, e := range es {
		out = append(out, crUpd(&crmodel.Update{Update: &crmodel.Update_Gset{Gset: &crmodel.GSetUpdate{Add: e}}}))
	}
	return out
}

func orset(u *crmodel.ORSetUpdate) *crmodel.RequestAction {
	return crUpd(&crmodel.Update{Update: &crmodel.Update_Orset{Orset: u}})
}

func orsetAdd(es ...string) []*crmodel.RequestAction {
	var out []*crmodel.RequestAction
	for _, e := range es {
		out = append(out, orset(&crmodel.ORSetUpdate{Action: &crmodel.ORSetUpdate_Add{Add: e}}))
	}
	return out
}

func orsetRemove(es ...string) []*crmodel.RequestAction {
	var out []*crmodel.RequestAction
	for _, e := range es {
		out = append(out, orset(&crmodel.ORSetUpdate{Action: &crmodel.ORSetUpdate_Remove{Remove: e}}))
	}
	return out
}

func orsetClear() *crmodel.RequestAction {
	return orset(&crmodel.ORSetUpdate{Action: &crmodel.ORSetUpdate_Clear{Clear: true}})
}

func crDel() *crmodel.RequestAction {
	return &crmodel.RequestAction{Action: &crmodel.RequestAction_Delete{Delete: &crmodel.Delete{}}}
}

func crFwd(id string) *crmodel.RequestAction {
	return &crmodel.RequestAction{Action: &crmodel.RequestAction_Forward{Forward: &crmodel.Forward{Id: id}}}
}

func crEff(id string, sync bool) *crmodel.RequestAction {
	return &crmodel.RequestAction{Action: &crmodel.RequestAction_Effect{Effect: &crmodel.Effect{Id: id, Synchronous: sync}}}
}

func crFail(msg string) *crmodel.RequestAction {
	return &crmodel.RequestAction{Action: &crmodel.RequestAction_Fail{Fail: &crmodel.Fail{Message: msg}}}
}

func acts(groups ...[]*crmodel.RequestAction) []*crmodel.RequestAction {
	var out []*crmodel.RequestAction
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

func stGCounter(n uint64) *crmodel.Response {
	return &crmodel.Response{State: &crmodel.State{Value: &crmodel.State_Gcounter{Gcounter: &crmodel.GCounterValue{Value: n}}}}
}

func stPNCounter(n int64) *crmodel.Response {
	return &crmodel.Response{State: &crmodel.State{Value: &crmodel.State_Pncounter{Pncounter: &crmodel.PNCounterValue{Value: n}}}}
}

func stGSet(es ...string) *crmodel.Response {
	return &crmodel.Response{State: &crmodel.State{Value: &crmodel.State_Gset{Gset: &crmodel.GSetValue{Elements: es}}}}
}

func stORSet(es ...string) *crmodel.Response {
	return &crmodel.Response{State: &crmodel.State{Value: &crmodel.State_Orset{Orset: &crmodel.ORSetValue{Elements: es}}}}
}

func stVote(self bool, votesFor, voters int32) *crmodel.Response {
	return &crmodel.Response{State: &crmodel.State{Value: &crmodel.State_Vote{Vote: &crmodel.VoteValue{SelfVote: self, VotesFor: votesFor, TotalVoters: voters}}}}
}

// --- the TCK's protocol driver, for one CRDT stream ---

type crdtProtocol struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[crdt.CrdtStreamIn, crdt.CrdtStreamOut]
}

// crdtModelConn serves crdtModel on loopback and returns a client of it.
func crdtModelConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	crdt.RegisterCrdtServer(srv, crdtModel{})
	cloudstate.RegisterEntityDiscoveryServer(srv, &model{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func connectCRDT(t *testing.T, conn *grpc.ClientConn) *crdtProtocol {
	t.Helper()
	stream, err := crdt.NewCrdtClient(conn).Handle(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return &crdtProtocol{t: t, stream: stream}
}

func (p *crdtProtocol) send(in *crdt.CrdtStreamIn) *crdtProtocol {
	p.t.Helper()
	if err := p.stream.Send(in); err != nil {
		p.t.Fatalf("send %v: %v", in, err)
	}
	return p
}

func (p *crdtProtocol) expect(want *crdt.CrdtStreamOut) *crdtProtocol {
	p.t.Helper()
	got, err := p.stream.Recv()
	if err != nil {
		p.t.Fatalf("want %v: %v", want, err)
	}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		p.t.Fatalf("(-want +got):\n%s", d)
	}
	return p
}

// passivate ends the requests and expects the function to end its side.
func (p *crdtProtocol) passivate() {
	p.t.Helper()
	if err := p.stream.CloseSend(); err != nil {
		p.t.Fatal(err)
	}
	if got, err := p.stream.Recv(); !errors.Is(err, io.EOF) {
		p.t.Fatalf("after passivation: %v, %v; want the stream ended", got, err)
	}
}

func TestCRDTModelDiscovery(t *testing.T) { // 96, 97
	spec, err := cloudstate.NewEntityDiscoveryClient(crdtModelConn(t)).Discover(t.Context(), &cloudstate.ProxyInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pmodel.BuildModel(spec, []string{pmodel.EventSourced, pmodel.ValueEntity, pmodel.Action, pmodel.CRDT}); err != nil {
		t.Fatalf("the model's discovery answer does not validate: %v", err)
	}
	found := map[string]*cloudstate.Entity{}
	for _, e := range spec.GetEntities() {
		found[e.GetServiceName()] = e
	}
	for _, name := range []string{crModel, crTwo, crConfigured} {
		if found[name].GetEntityType() != pmodel.CRDT {
			t.Errorf("%s: entity %v, want a CRDT", name, found[name])
		}
	}
	if got := found[crConfigured].GetPassivationStrategy().GetTimeout().GetTimeout(); got != 100 {
		t.Errorf("CrdtConfigured passivation timeout %d ms, want 100", got)
	}
}

func TestCRDTModel(t *testing.T) {
	conn := crdtModelConn(t)
	reply := func(n int64, resp *crmodel.Response, state *crdt.CrdtStateAction, effects ...*cloudstate.SideEffect) *crdt.CrdtStreamOut {
		return crOut(n, replyOf(resp), state, effects...)
	}
	process := func(id string, n int64, actions ...*crmodel.RequestAction) *crdt.CrdtStreamIn {
		return crCmd(id, n, "Process", crReq(id, actions...))
	}

	t.Run("GCounter initial empty state", func(t *testing.T) {
		id := "GCounter-1"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(process(id, 1)).expect(reply(1, stGCounter(0), nil)).
			passivate()
	})
	t.Run("GCounter state changes", func(t *testing.T) {
		id := "GCounter-2"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(process(id, 1, incrementBy(42)...)).expect(reply(1, stGCounter(42), crUpdate(dGCounter(42)))).
			send(process(id, 2, incrementBy(1, 2, 3)...)).expect(reply(2, stGCounter(48), crUpdate(dGCounter(6)))).
			passivate()
	})
	t.Run("GCounter initial delta in init", func(t *testing.T) {
		id := "GCounter-3"
		connectCRDT(t, conn).send(crInit(crModel, id, dGCounter(42))).
			send(process(id, 1, incrementBy(123)...)).expect(reply(1, stGCounter(165), crUpdate(dGCounter(123)))).
			passivate()
	})
	t.Run("GCounter initial empty state with replicated initial delta", func(t *testing.T) {
		id := "GCounter-4"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).send(crDeltaIn(dGCounter(42))).
			send(process(id, 1, incrementBy(123)...)).expect(reply(1, stGCounter(165), crUpdate(dGCounter(123)))).
			passivate()
	})
	t.Run("GCounter mix of local and replicated state changes", func(t *testing.T) {
		id := "GCounter-5"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(process(id, 1, incrementBy(1)...)).expect(reply(1, stGCounter(1), crUpdate(dGCounter(1)))).
			send(crDeltaIn(dGCounter(2))).send(crDeltaIn(dGCounter(3))).
			send(process(id, 2)).expect(reply(2, stGCounter(6), nil)).
			send(process(id, 3, incrementBy(4)...)).expect(reply(3, stGCounter(10), crUpdate(dGCounter(4)))).
			send(crDeltaIn(dGCounter(5))).
			send(process(id, 4, incrementBy(6)...)).expect(reply(4, stGCounter(21), crUpdate(dGCounter(6)))).
			passivate()
	})
	t.Run("GCounter delete action received from entity", func(t *testing.T) {
		id := "GCounter-6"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(process(id, 1, incrementBy(42)...)).expect(reply(1, stGCounter(42), crUpdate(dGCounter(42)))).
			send(process(id, 2, crDel())).expect(reply(2, stGCounter(42), crDeleted())).
			passivate()
	})
	t.Run("GCounter delete action sent to entity", func(t *testing.T) {
		id := "GCounter-7"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(&crdt.CrdtStreamIn{Message: &crdt.CrdtStreamIn_Delete{Delete: &crdt.CrdtDelete{}}}).
			passivate()
	})
	t.Run("ORSet state changes", func(t *testing.T) {
		id := "ORSet-1"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(process(id, 1, orsetAdd("a", "b")...)).expect(reply(1, stORSet("a", "b"), crUpdate(dORSet(false, nil, []string{"a", "b"})))).
			send(process(id, 2, orsetAdd("b", "c")...)).expect(reply(2, stORSet("a", "b", "c"), crUpdate(dORSet(false, nil, []string{"c"})))).
			send(process(id, 3, orsetAdd("c", "a")...)).expect(reply(3, stORSet("a", "b", "c"), nil)).
			send(process(id, 4, orsetRemove("b", "d")...)).expect(reply(4, stORSet("a", "c"), crUpdate(dORSet(false, []string{"b"}, nil)))).
			send(process(id, 5, acts(orsetRemove("c", "d"), orsetAdd("b", "c"))...)).
			expect(reply(5, stORSet("a", "b", "c"), crUpdate(dORSet(false, nil, []string{"b"})))).
			send(process(id, 6, orsetClear())).expect(reply(6, stORSet(), crUpdate(dORSet(true, nil, nil)))).
			send(process(id, 7, acts(orsetAdd("a"), []*crmodel.RequestAction{orsetClear()}, orsetAdd("x"))...)).
			expect(reply(7, stORSet("x"), crUpdate(dORSet(true, nil, []string{"x"})))).
			passivate()
	})
	t.Run("LWWRegister initial empty state", func(t *testing.T) {
		id := "LWWRegister-1"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(process(id, 1)).
			expect(reply(1, &crmodel.Response{State: &crmodel.State{Value: &crmodel.State_Lwwregister{Lwwregister: &crmodel.LWWRegisterValue{}}}},
				crUpdate(&crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Lwwregister{Lwwregister: &crdt.LWWRegisterDelta{Value: primitive("")}}}))).
			send(process(id, 2)).
			expect(reply(2, &crmodel.Response{State: &crmodel.State{Value: &crmodel.State_Lwwregister{Lwwregister: &crmodel.LWWRegisterValue{}}}}, nil)).
			passivate()
	})
	t.Run("ORMap adds entries", func(t *testing.T) {
		id := "ORMap-1"
		add := func(k string) *crmodel.RequestAction {
			return crUpd(&crmodel.Update{Update: &crmodel.Update_Ormap{Ormap: &crmodel.ORMapUpdate{Action: &crmodel.ORMapUpdate_Add{Add: k}}}})
		}
		entry := func(k string, u *crmodel.Update) *crmodel.RequestAction {
			return crUpd(&crmodel.Update{Update: &crmodel.Update_Ormap{Ormap: &crmodel.ORMapUpdate{Action: &crmodel.ORMapUpdate_Update{
				Update: &crmodel.ORMapEntryUpdate{Key: k, Update: u}}}}})
		}
		state := &crmodel.Response{State: &crmodel.State{Value: &crmodel.State_Ormap{Ormap: &crmodel.ORMapValue{Entries: []*crmodel.ORMapEntryValue{
			{Key: "ORSet-1", Value: stORSet().GetState()}, {Key: "PNCounter-1", Value: stPNCounter(0).GetState()}}}}}}
		delta := &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Ormap{Ormap: &crdt.ORMapDelta{Added: []*crdt.ORMapEntryDelta{
			{Key: primitive("ORSet-1"), Delta: dORSet(false, nil, nil)}, {Key: primitive("PNCounter-1"), Delta: dPNCounter(0)}}}}}
		state2 := &crmodel.Response{State: &crmodel.State{Value: &crmodel.State_Ormap{Ormap: &crmodel.ORMapValue{Entries: []*crmodel.ORMapEntryValue{
			{Key: "ORSet-1", Value: stORSet().GetState()}, {Key: "PNCounter-1", Value: stPNCounter(5).GetState()}}}}}}
		delta2 := &crdt.CrdtDelta{Delta: &crdt.CrdtDelta_Ormap{Ormap: &crdt.ORMapDelta{Updated: []*crdt.ORMapEntryDelta{
			{Key: primitive("PNCounter-1"), Delta: dPNCounter(5)}}}}}
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(process(id, 1, add("PNCounter-1"), add("ORSet-1"))).expect(reply(1, state, crUpdate(delta))).
			send(process(id, 2, entry("PNCounter-1", uPNCounter(5)))).expect(reply(2, state2, crUpdate(delta2))).
			passivate()
	})
	t.Run("Vote state changes", func(t *testing.T) {
		id := "Vote-1"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(process(id, 1, crUpd(uVote(true)))).expect(reply(1, stVote(true, 1, 1), crUpdate(dVote(true, 0, 0)))).
			send(process(id, 2, crUpd(uVote(true)))).expect(reply(2, stVote(true, 1, 1), nil)).
			send(process(id, 3, crUpd(uVote(false)))).expect(reply(3, stVote(false, 0, 1), crUpdate(dVote(false, 0, 0)))).
			send(process(id, 4, crUpd(uVote(false)))).expect(reply(4, stVote(false, 0, 1), nil)).
			passivate()
	})
	t.Run("Vote mix of local and replicated state changes", func(t *testing.T) {
		id := "Vote-2"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(process(id, 1, crUpd(uVote(true)))).expect(reply(1, stVote(true, 1, 1), crUpdate(dVote(true, 0, 0)))).
			send(crDeltaIn(dVote(true, 5, 7))).
			send(process(id, 2)).expect(reply(2, stVote(true, 5, 7), nil)).
			send(crDeltaIn(dVote(true, 4, 6))).
			send(process(id, 3, crUpd(uVote(false)))).expect(reply(3, stVote(false, 3, 6), crUpdate(dVote(false, 0, 0)))).
			passivate()
	})
	t.Run("forward with state change", func(t *testing.T) { // 164
		id := "PNCounter-1"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(process(id, 1, append(changeBy(-42), crFwd("X-"+id))...)).
			expect(crOut(1, forwardTo(crTwo, crReq("X-"+id)), crUpdate(dPNCounter(-42)))).
			passivate()
	})
	t.Run("failure drops side effects and changes", func(t *testing.T) { // 170, 171
		id := "PNCounter-2"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(process(id, 1, changeBy(42)...)).expect(reply(1, stPNCounter(42), crUpdate(dPNCounter(42)))).
			send(process(id, 2, acts(changeBy(1), []*crmodel.RequestAction{crEff("e", false), crFail("expected failure")})...)).
			expect(crFailure(2, "expected failure")).
			send(process(id, 3)).expect(reply(3, stPNCounter(42), nil)).
			passivate()
	})
	t.Run("streamed responses", func(t *testing.T) { // 172
		id := "GCounter-8"
		p := connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(crStreamedCmd(id, 1, &crmodel.StreamedRequest{Id: id})).expect(crStreamedOut(1, replyOf(stGCounter(0)), nil))
		for i, s := range []struct{ inc, state uint64 }{{1, 1}, {2, 3}, {3, 6}} {
			n := int64(i + 2)
			p.send(process(id, n, incrementBy(s.inc)...)).expect(reply(n, stGCounter(s.state), crUpdate(dGCounter(s.inc)))).
				expect(crStreamed(1, stGCounter(s.state), false))
		}
		p.passivate()
	})
	t.Run("streamed responses with stream ending action", func(t *testing.T) { // 173
		id := "GCounter-9"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(crStreamedCmd(id, 1, &crmodel.StreamedRequest{Id: id, EndState: stGCounter(3).GetState()})).
			expect(crStreamedOut(1, replyOf(stGCounter(0)), nil)).
			send(process(id, 2, incrementBy(1)...)).expect(reply(2, stGCounter(1), crUpdate(dGCounter(1)))).
			expect(crStreamed(1, stGCounter(1), false)).
			send(process(id, 3, incrementBy(2)...)).expect(reply(3, stGCounter(3), crUpdate(dGCounter(2)))).
			expect(crStreamed(1, stGCounter(3), true)).
			send(process(id, 4, incrementBy(3)...)).expect(reply(4, stGCounter(6), crUpdate(dGCounter(3)))).
			passivate()
	})
	t.Run("streamed responses with cancellation", func(t *testing.T) { // 174
		id := "PNCounter-3"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(crStreamedCmd(id, 1, &crmodel.StreamedRequest{Id: id, CancelUpdate: uPNCounter(-42)})).
			expect(crStreamedOut(1, replyOf(stPNCounter(0)), nil)).
			send(process(id, 2, changeBy(10)...)).expect(reply(2, stPNCounter(10), crUpdate(dPNCounter(10)))).
			expect(crStreamed(1, stPNCounter(10), false)).
			send(process(id, 3, changeBy(20)...)).expect(reply(3, stPNCounter(30), crUpdate(dPNCounter(20)))).
			expect(crStreamed(1, stPNCounter(30), false)).
			send(crCancelled(id, 1)).expect(crCancelledOut(1, crUpdate(dPNCounter(-42)))).
			send(process(id, 4)).expect(reply(4, stPNCounter(-12), nil)).
			send(process(id, 5, changeBy(30)...)).expect(reply(5, stPNCounter(18), crUpdate(dPNCounter(30)))).
			passivate()
	})
	t.Run("empty streamed responses with cancellation", func(t *testing.T) { // 175
		id := "PNCounter-4"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(process(id, 1, changeBy(10)...)).expect(reply(1, stPNCounter(10), crUpdate(dPNCounter(10)))).
			send(crStreamedCmd(id, 2, &crmodel.StreamedRequest{Id: id, CancelUpdate: uPNCounter(-42), Empty: true})).
			expect(crStreamedOut(2, nil, nil)).
			send(crCancelled(id, 2)).expect(crCancelledOut(2, crUpdate(dPNCounter(-42)))).
			send(process(id, 3)).expect(reply(3, stPNCounter(-32), nil)).
			passivate()
	})
	t.Run("streamed responses with side effects", func(t *testing.T) { // 176
		id := "GSet-1"
		effects := []*cloudstate.SideEffect{effect(crTwo, crReq("one"), false), effect(crTwo, crReq("two"), true)}
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(crStreamedCmd(id, 1, &crmodel.StreamedRequest{Id: id, Effects: []*crmodel.Effect{{Id: "one"}, {Id: "two", Synchronous: true}}})).
			expect(crStreamedOut(1, replyOf(stGSet()), nil)).
			send(process(id, 2, gsetAdd("a")...)).expect(reply(2, stGSet("a"), crUpdate(dGSet("a")))).
			expect(crStreamed(1, stGSet("a"), false, effects...)).
			send(process(id, 3, gsetAdd("b")...)).expect(reply(3, stGSet("a", "b"), crUpdate(dGSet("b")))).
			expect(crStreamed(1, stGSet("a", "b"), false, effects...)).
			passivate()
	})
	t.Run("write consistency", func(t *testing.T) { // 177
		id := "GCounter-10"
		p := connectCRDT(t, conn).send(crInit(crModel, id, nil))
		for i, c := range []crmodel.UpdateWriteConsistency{crmodel.UpdateWriteConsistency_LOCAL, crmodel.UpdateWriteConsistency_MAJORITY, crmodel.UpdateWriteConsistency_ALL} {
			n := int64(i + 1)
			u := uGCounter(uint64(n))
			u.WriteConsistency = c
			state := crUpdate(dGCounter(uint64(n)))
			state.WriteConsistency = crdt.CrdtWriteConsistency(c)
			p.send(process(id, n, crUpd(u))).expect(reply(n, stGCounter(uint64(n*(n+1)/2)), state))
		}
		p.passivate()
	})
	t.Run("Vote connection tracking", func(t *testing.T) { // the function's side of 181
		id := "Vote-3"
		connectCRDT(t, conn).send(crInit(crModel, id, nil)).
			send(crStreamedCmd(id, 1, &crmodel.StreamedRequest{Id: id})).expect(crStreamedOut(1, replyOf(stVote(false, 0, 1)), nil)).
			send(crStreamedCmd(id, 2, &crmodel.StreamedRequest{Id: id, InitialUpdate: uVote(true), CancelUpdate: uVote(false), Empty: true})).
			expect(crStreamedOut(2, nil, crUpdate(dVote(true, 0, 0)))).
			expect(crStreamed(1, stVote(true, 1, 1), false)).
			send(crCancelled(id, 2)).expect(crCancelledOut(2, crUpdate(dVote(false, 0, 0)))).
			expect(crStreamed(1, stVote(false, 0, 1), false)).
			send(crCancelled(id, 1)).expect(crCancelledOut(1, nil)).
			send(process(id, 3, crDel())).expect(reply(3, stVote(false, 0, 1), crDeleted())).
			passivate()
	})
	t.Run("CrdtTwo deletes on request", func(t *testing.T) {
		id := "two-1"
		connectCRDT(t, conn).send(crInit(crTwo, id, nil)).
			send(crCmd(id, 1, "Call", crReq(id))).expect(crOut(1, replyOf(&crmodel.Response{}), nil)).
			send(crCmd(id, 2, "Call", crReq(id, crDel()))).expect(crOut(2, replyOf(&crmodel.Response{}), crDeleted())).
			passivate()
	})
}
