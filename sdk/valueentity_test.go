package sdk_test

import (
	"testing"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	ve "github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	"github.com/jetstate/jetstate/sdk"
	tm "github.com/jetstate/jetstate/sdk/internal/testmodel"
)

// updateP is state_action=update{P(v)}.
func updateP(v string) *ve.ValueEntityAction {
	return &ve.ValueEntityAction{Action: &ve.ValueEntityAction_Update{Update: &ve.ValueEntityUpdate{Value: p(v)}}}
}

// deleteState is state_action=delete{}.
func deleteState() *ve.ValueEntityAction {
	return &ve.ValueEntityAction{Action: &ve.ValueEntityAction_Delete{Delete: &ve.ValueEntityDelete{}}}
}

// TestValueEntity follows the TCK's value-entity model tests (spec section 4.2, items 48-64).
func TestValueEntity(t *testing.T) {
	conn := serve(t, sdk.Config{}, veModelEntity(sdk.ValueEntityConfig{}), veTwoEntity())

	// open starts a stream for id with no stored state.
	open := func(t *testing.T, id string) *veConn {
		t.Helper()
		c := openVE(t, conn)
		c.init(veModel, id, nil)
		return c
	}

	t.Run("initial empty state", func(t *testing.T) { // 48
		c := open(t, "ve-1")
		c.command(1, "ve-1", "Process", req("ve-1"))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply("")})
		c.passivate()
	})

	t.Run("update", func(t *testing.T) { // 49
		c := open(t, "ve-2")
		c.command(1, "ve-2", "Process", req("ve-2", update("A")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply("A"), StateAction: updateP("A")})
		c.command(2, "ve-2", "Process", req("ve-2"))
		c.expectReply(&ve.ValueEntityReply{CommandId: 2, ClientAction: reply("A")})
		c.passivate()
	})

	t.Run("delete", func(t *testing.T) { // 50
		c := open(t, "ve-3")
		c.command(1, "ve-3", "Process", req("ve-3", update("A")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply("A"), StateAction: updateP("A")})
		c.command(2, "ve-3", "Process", req("ve-3", del()))
		c.expectReply(&ve.ValueEntityReply{CommandId: 2, ClientAction: reply(""), StateAction: deleteState()})
		c.command(3, "ve-3", "Process", req("ve-3"))
		c.expectReply(&ve.ValueEntityReply{CommandId: 3, ClientAction: reply("")})
		c.passivate()
	})

	t.Run("several updates in one command", func(t *testing.T) { // 51
		c := open(t, "ve-4")
		c.command(1, "ve-4", "Process", req("ve-4", update("A"), update("B"), update("C")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply("C"), StateAction: updateP("C")})
		c.passivate()
	})

	t.Run("updates then delete in one command", func(t *testing.T) { // 52
		c := open(t, "ve-5")
		c.command(1, "ve-5", "Process", req("ve-5", update("A"), update("B"), del()))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply(""), StateAction: deleteState()})
		c.passivate()
	})

	t.Run("update, delete, update in one command", func(t *testing.T) { // 53
		c := open(t, "ve-6")
		c.command(1, "ve-6", "Process", req("ve-6", update("A"), del(), update("B")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply("B"), StateAction: updateP("B")})
		c.passivate()
	})

	t.Run("rehydration after passivation", func(t *testing.T) { // 54
		c := open(t, "ve-7")
		for i, v := range []string{"A", "B", "C", "D"} {
			id := int64(i + 1)
			c.command(id, "ve-7", "Process", req("ve-7", update(v)))
			c.expectReply(&ve.ValueEntityReply{CommandId: id, ClientAction: reply(v), StateAction: updateP(v)})
		}
		c.passivate()
		c = openVE(t, conn)
		c.init(veModel, "ve-7", &tm.Persisted{Value: "D"})
		c.command(1, "ve-7", "Process", req("ve-7"))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply("D")})
		c.command(2, "ve-7", "Process", req("ve-7", update("E")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 2, ClientAction: reply("E"), StateAction: updateP("E")})
		c.command(3, "ve-7", "Process", req("ve-7"))
		c.expectReply(&ve.ValueEntityReply{CommandId: 3, ClientAction: reply("E")})
		c.passivate()
	})

	t.Run("multiple side effects", func(t *testing.T) { // 55
		c := open(t, "ve-8")
		c.command(1, "ve-8", "Process", req("ve-8", effect("1", false), effect("2", false), effect("3", false)))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply(""), SideEffects: []*cloudstate.SideEffect{
			sideEffect(veTwo, "1", false), sideEffect(veTwo, "2", false), sideEffect(veTwo, "3", false),
		}})
		c.passivate()
	})

	t.Run("side effect after an update", func(t *testing.T) { // 56
		c := open(t, "ve-9")
		c.command(1, "ve-9", "Process", req("ve-9", update("X")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply("X"), StateAction: updateP("X")})
		c.command(2, "ve-9", "Process", req("ve-9", effect("ve-9", false)))
		c.expectReply(&ve.ValueEntityReply{CommandId: 2, ClientAction: reply("X"), SideEffects: []*cloudstate.SideEffect{sideEffect(veTwo, "ve-9", false)}})
		c.command(3, "ve-9", "Process", req("ve-9"))
		c.expectReply(&ve.ValueEntityReply{CommandId: 3, ClientAction: reply("X")})
		c.passivate()
	})

	t.Run("updates and side effects", func(t *testing.T) { // 57
		c := open(t, "ve-10")
		c.command(1, "ve-10", "Process", req("ve-10", update("A"), update("B"), update("C"), update("D"), update("E"),
			effect("1", false), effect("2", false), effect("3", false)))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply("E"), StateAction: updateP("E"), SideEffects: []*cloudstate.SideEffect{
			sideEffect(veTwo, "1", false), sideEffect(veTwo, "2", false), sideEffect(veTwo, "3", false),
		}})
		c.passivate()
	})

	t.Run("synchronous side effect", func(t *testing.T) { // 58
		c := open(t, "ve-11")
		c.command(1, "ve-11", "Process", req("ve-11", effect("ve-11", true)))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply(""), SideEffects: []*cloudstate.SideEffect{sideEffect(veTwo, "ve-11", true)}})
		c.passivate()
	})

	t.Run("forward after an update", func(t *testing.T) { // 59
		c := open(t, "ve-12")
		c.command(1, "ve-12", "Process", req("ve-12", update("X")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply("X"), StateAction: updateP("X")})
		c.command(2, "ve-12", "Process", req("ve-12", forward("ve-12")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 2, ClientAction: forwardTo(veTwo, "ve-12")})
		c.command(3, "ve-12", "Process", req("ve-12"))
		c.expectReply(&ve.ValueEntityReply{CommandId: 3, ClientAction: reply("X")})
		c.passivate()
	})

	t.Run("update and forward", func(t *testing.T) { // 60
		c := open(t, "ve-13")
		c.command(1, "ve-13", "Process", req("ve-13", update("A"), forward("ve-13")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: forwardTo(veTwo, "ve-13"), StateAction: updateP("A")})
		c.passivate()
	})

	t.Run("side effect and forward", func(t *testing.T) { // 61
		c := open(t, "ve-14")
		c.command(1, "ve-14", "Process", req("ve-14", effect("ve-14", false), forward("ve-14")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: forwardTo(veTwo, "ve-14"), SideEffects: []*cloudstate.SideEffect{sideEffect(veTwo, "ve-14", false)}})
		c.passivate()
	})

	t.Run("failure", func(t *testing.T) { // 62
		c := open(t, "ve-15")
		c.command(1, "ve-15", "Process", req("ve-15", fail("expected failure")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: failure(1, "expected failure", false)})
		c.passivate()
	})

	t.Run("connection usable after failure", func(t *testing.T) { // 63
		c := open(t, "ve-16")
		c.command(1, "ve-16", "Process", req("ve-16", update("A")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply("A"), StateAction: updateP("A")})
		// The failed command's update is dropped along with it.
		c.command(2, "ve-16", "Process", req("ve-16", update("B"), fail("expected failure")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 2, ClientAction: failure(2, "expected failure", false)})
		c.command(3, "ve-16", "Process", req("ve-16"))
		c.expectReply(&ve.ValueEntityReply{CommandId: 3, ClientAction: reply("A")})
		c.passivate()
	})

	t.Run("failure drops side effects", func(t *testing.T) { // 64
		c := open(t, "ve-17")
		c.command(1, "ve-17", "Process", req("ve-17", effect("ve-17", false), fail("expected failure")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: failure(1, "expected failure", false)})
		c.passivate()
	})

	t.Run("handler error fails the command", func(t *testing.T) {
		c := open(t, "ve-18")
		c.command(1, "ve-18", "Process", req("ve-18", update("A"), effect("x", true), errorAction("handler said no")))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: failure(1, "handler said no", false)})
		c.command(2, "ve-18", "Process", req("ve-18"))
		c.expectReply(&ve.ValueEntityReply{CommandId: 2, ClientAction: reply("")})
		c.passivate()
	})
}

// TestValueEntityBadInput: protocol-level problems get a stream Failure and end the stream;
// the server goes on serving.
func TestValueEntityBadInput(t *testing.T) {
	conn := serve(t, sdk.Config{}, veModelEntity(sdk.ValueEntityConfig{}), veTwoEntity())

	t.Run("unknown command", func(t *testing.T) {
		c := openVE(t, conn)
		c.init(veModel, "bad-1", nil)
		c.command(1, "bad-1", "Nope", req("bad-1"))
		c.expectFailure(1, `unknown command "Nope" for jetstate.sdk.testmodel.ValueEntityModel`)
	})
	t.Run("payload of the wrong type", func(t *testing.T) {
		c := openVE(t, conn)
		c.init(veModel, "bad-2", nil)
		c.command(1, "bad-2", "Process", &tm.Other{Id: "bad-2"})
		c.expectFailure(1, "command Process: payload of type jetstate.sdk.testmodel.Other, want jetstate.sdk.testmodel.Request")
	})
	t.Run("handler panics", func(t *testing.T) {
		c := openVE(t, conn)
		c.init(veModel, "bad-3", nil)
		c.command(1, "bad-3", "Process", req("bad-3", update("A"), panicAction("boom")))
		c.expectFailure(1, "command Process: panic: boom")
	})
	t.Run("stored state of the wrong type", func(t *testing.T) {
		c := openVE(t, conn)
		c.init(veModel, "bad-4", &tm.Response{Message: "A"})
		c.expectFailure(0, "init state: payload of type jetstate.sdk.testmodel.Response, want jetstate.sdk.testmodel.Persisted")
	})
	t.Run("command before init", func(t *testing.T) {
		c := openVE(t, conn)
		c.command(1, "bad-5", "Process", req("bad-5"))
		c.expectFailure(0, "protocol error: the first message of a stream must be init")
	})
	t.Run("unknown service", func(t *testing.T) {
		c := openVE(t, conn)
		c.init(esModel, "bad-6", nil)
		c.expectFailure(0, `unknown value entity service "jetstate.sdk.testmodel.EventSourcedModel"`)
	})
	t.Run("server survives", func(t *testing.T) {
		c := openVE(t, conn)
		c.init(veModel, "bad-7", &tm.Persisted{Value: "A"})
		c.command(1, "bad-7", "Process", req("bad-7"))
		c.expectReply(&ve.ValueEntityReply{CommandId: 1, ClientAction: reply("A")})
		c.passivate()
	})
}
