package sdk_test

import (
	"fmt"
	"testing"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/sdk"
	tm "github.com/jetstate/jetstate/sdk/internal/testmodel"
)

// TestCrdt follows the TCK's CRDT model tests (spec section 4.2, items 98-177).
func TestCrdt(t *testing.T) {
	conn := serve(t, sdk.Config{}, crdtModelEntity(sdk.CrdtConfig{}), crdtTwoEntity())

	t.Run("initial empty state", func(t *testing.T) { // (a) of every type
		for kind, want := range map[string]string{
			"GCounter": "0", "PNCounter": "0", "GSet": "[]", "ORSet": "[]", "Flag": "false", "ORMap": "{}", "Vote": "false 0 1",
		} {
			c := openCrdtModel(t, conn, kind+"-a", nil)
			c.process(1)
			c.expectState(1, want, nil)
			c.passivate()
		}
		// The model's first access creates an LWWRegister, which sends its value.
		c := openCrdtModel(t, conn, "LWWRegister-a", nil)
		c.process(1)
		c.expectState(1, "", upd(dLWW("", pb.CrdtClock_DEFAULT, 0)))
		c.process(2)
		c.expectState(2, "", nil)
		c.passivate()
	})

	t.Run("GCounter", func(t *testing.T) {
		c := openCrdtModel(t, conn, "GCounter-b", nil) // (b)
		c.process(1, incGC(42))
		c.expectState(1, "42", upd(dGC(42)))
		c.process(2, incGC(1), incGC(2), incGC(3))
		c.expectState(2, "48", upd(dGC(6)))
		c.passivate()

		c = openCrdtModel(t, conn, "GCounter-c", dGC(42)) // (c)
		c.process(1, incGC(123))
		c.expectState(1, "165", upd(dGC(123)))
		c.passivate()

		c = openCrdtModel(t, conn, "GCounter-d", nil) // (d)
		c.delta(dGC(42))
		c.process(1, incGC(123))
		c.expectState(1, "165", upd(dGC(123)))
		c.passivate()

		c = openCrdtModel(t, conn, "GCounter-e", nil) // (e)
		c.process(1, incGC(1))
		c.expectState(1, "1", upd(dGC(1)))
		c.delta(dGC(2))
		c.delta(dGC(3))
		c.process(2)
		c.expectState(2, "6", nil)
		c.process(3, incGC(4))
		c.expectState(3, "10", upd(dGC(4)))
		c.delta(dGC(5))
		c.process(4, incGC(6))
		c.expectState(4, "21", upd(dGC(6)))
		c.passivate()
		c = openCrdtModel(t, conn, "GCounter-e", dGC(21)) // (f)
		c.delta(dGC(1))
		c.process(1, incGC(2))
		c.expectState(1, "24", upd(dGC(2)))
		c.passivate()
	})

	t.Run("PNCounter", func(t *testing.T) {
		c := openCrdtModel(t, conn, "PNCounter-b", nil)
		c.process(1, changePN(1), changePN(-2), changePN(3))
		c.expectState(1, "2", upd(dPN(2)))
		c.process(2, changePN(-4), changePN(5), changePN(-6))
		c.expectState(2, "-3", upd(dPN(-5)))
		c.process(3, changePN(7), changePN(-7)) // nets out
		c.expectState(3, "-3", nil)
		c.delta(dPN(10))
		c.process(4, changePN(-1))
		c.expectState(4, "6", upd(dPN(-1)))
		c.passivate()
		c = openCrdtModel(t, conn, "PNCounter-b", dPN(6))
		c.process(1)
		c.expectState(1, "6", nil)
		c.passivate()
	})

	t.Run("GSet", func(t *testing.T) {
		c := openCrdtModel(t, conn, "GSet-b", nil)
		c.process(1, addGSet("b"), addGSet("a"))
		c.expectState(1, "[a,b]", upd(dGSet("a", "b")))
		c.process(2, addGSet("b"), addGSet("c"))
		c.expectState(2, "[a,b,c]", upd(dGSet("c")))
		c.process(3, addGSet("c"), addGSet("a"))
		c.expectState(3, "[a,b,c]", nil)
		c.delta(dGSet("d", "a"))
		c.process(4, addGSet("d"), addGSet("e"))
		c.expectState(4, "[a,b,c,d,e]", upd(dGSet("e")))
		c.passivate()
		c = openCrdtModel(t, conn, "GSet-b", dGSet("a", "b"))
		c.process(1, addGSet("a"))
		c.expectState(1, "[a,b]", nil)
		c.passivate()
	})

	t.Run("ORSet", func(t *testing.T) {
		c := openCrdtModel(t, conn, "ORSet-b", nil)
		c.process(1, addORSet("a"), addORSet("b"))
		c.expectState(1, "[a,b]", upd(dORSet(false, nil, []string{"a", "b"})))
		c.process(2, addORSet("b"), addORSet("c"))
		c.expectState(2, "[a,b,c]", upd(dORSet(false, nil, []string{"c"})))
		c.process(3, addORSet("c"), addORSet("a"))
		c.expectState(3, "[a,b,c]", nil)
		c.process(4, removeORSet("b"), removeORSet("d"))
		c.expectState(4, "[a,c]", upd(dORSet(false, []string{"b"}, nil)))
		c.process(5, removeORSet("c"), removeORSet("d"), addORSet("b"), addORSet("c"))
		c.expectState(5, "[a,b,c]", upd(dORSet(false, nil, []string{"b"})))
		c.process(6, clearORSet())
		c.expectState(6, "[]", upd(dORSet(true, nil, nil)))
		c.process(7, addORSet("a"), clearORSet(), addORSet("x"))
		c.expectState(7, "[x]", upd(dORSet(true, nil, []string{"x"})))
		c.process(8, addORSet("y"), removeORSet("y")) // nets out
		c.expectState(8, "[x]", nil)
		c.delta(dORSet(false, []string{"x"}, []string{"p", "q"}))
		c.delta(dORSet(true, nil, []string{"z"}))
		c.process(9, addORSet("a"))
		c.expectState(9, "[a,z]", upd(dORSet(false, nil, []string{"a"})))
		c.passivate()
	})

	t.Run("LWWRegister", func(t *testing.T) {
		c := openCrdtModel(t, conn, "LWWRegister-b", nil)
		c.process(1, setLWW("one", sdk.ClockDefault, 0))
		c.expectState(1, "one", upd(dLWW("one", pb.CrdtClock_DEFAULT, 0)))
		c.process(2, setLWW("two", sdk.ClockDefault, 0))
		c.expectState(2, "two", upd(dLWW("two", pb.CrdtClock_DEFAULT, 0)))
		c.process(3, setLWW("two", sdk.ClockDefault, 0)) // an equal value is still a write
		c.expectState(3, "two", upd(dLWW("two", pb.CrdtClock_DEFAULT, 0)))
		c.delta(dLWW("three", pb.CrdtClock_DEFAULT, 0))
		c.process(4)
		c.expectState(4, "three", nil)
		c.passivate()

		c = openCrdtModel(t, conn, "LWWRegister-clock", dLWW("one", pb.CrdtClock_DEFAULT, 0)) // 162
		c.process(1, setLWW("two", sdk.ClockReverse, 0))
		c.expectState(1, "two", upd(dLWW("two", pb.CrdtClock_REVERSE, 0)))
		c.process(2, setLWW("three", sdk.ClockCustom, 123))
		c.expectState(2, "three", upd(dLWW("three", pb.CrdtClock_CUSTOM, 123)))
		c.process(3, setLWW("four", sdk.ClockCustomAutoIncrement, 456))
		c.expectState(3, "four", upd(dLWW("four", pb.CrdtClock_CUSTOM_AUTO_INCREMENT, 456)))
		c.passivate()
	})

	t.Run("Flag", func(t *testing.T) {
		c := openCrdtModel(t, conn, "Flag-b", nil)
		c.process(1, enableFlag())
		c.expectState(1, "true", upd(dFlag(true)))
		c.process(2, enableFlag())
		c.expectState(2, "true", nil)
		c.delta(dFlag(false)) // (e): a replicated false does not switch it off
		c.process(3)
		c.expectState(3, "true", nil)
		c.passivate()
		c = openCrdtModel(t, conn, "Flag-c", dFlag(false)) // (c)
		c.process(1)
		c.expectState(1, "false", nil)
		c.passivate()
		c = openCrdtModel(t, conn, "Flag-c", dFlag(true))
		c.process(1)
		c.expectState(1, "true", nil)
		c.passivate()
	})

	t.Run("Vote", func(t *testing.T) {
		c := openCrdtModel(t, conn, "Vote-b", nil)
		c.process(1, vote(true))
		c.expectState(1, "true 1 1", upd(dVote(true, 0, 0)))
		c.process(2, vote(true))
		c.expectState(2, "true 1 1", nil)
		c.process(3, vote(false))
		c.expectState(3, "false 0 1", upd(dVote(false, 0, 0)))
		c.process(4, vote(false))
		c.expectState(4, "false 0 1", nil)
		c.process(5, vote(true), vote(false)) // nets out
		c.expectState(5, "false 0 1", nil)
		c.passivate()

		c = openCrdtModel(t, conn, "Vote-c", dVote(true, 2, 3)) // (c)
		c.process(1)
		c.expectState(1, "true 2 3", nil)
		c.process(2, vote(false))
		c.expectState(2, "false 1 3", upd(dVote(false, 0, 0)))
		c.passivate()

		c = openCrdtModel(t, conn, "Vote-d", nil) // (d)
		c.delta(dVote(false, 3, 5))
		c.process(1, vote(true))
		c.expectState(1, "true 4 5", upd(dVote(true, 0, 0)))
		c.delta(dVote(true, 5, 7)) // (e): the proxy's tally is adopted
		c.process(2)
		c.expectState(2, "true 5 7", nil)
		c.delta(dVote(true, 4, 6))
		c.process(3, vote(false))
		c.expectState(3, "false 3 6", upd(dVote(false, 0, 0)))
		c.passivate()
	})

	t.Run("ORMap", func(t *testing.T) {
		c := openCrdtModel(t, conn, "ORMap-b", nil)
		c.process(1, mapAdd("PNCounter-1"), mapAdd("ORSet-1"))
		c.expectState(1, "{ORSet-1:[],PNCounter-1:0}", upd(dORMap(false, nil, nil, []*pb.ORMapEntryDelta{
			entry("ORSet-1", dORSet(false, nil, nil)), entry("PNCounter-1", dPN(0)),
		})))
		c.process(2, mapSet("PNCounter-1", changePN(5)), mapSet("GSet-1", addGSet("a")))
		c.expectState(2, "{GSet-1:[a],ORSet-1:[],PNCounter-1:5}", upd(dORMap(false, nil,
			[]*pb.ORMapEntryDelta{entry("PNCounter-1", dPN(5))},
			[]*pb.ORMapEntryDelta{entry("GSet-1", dGSet("a"))},
		)))
		c.process(3, mapAdd("ORSet-1"), mapSet("GSet-1", addGSet("a")))
		c.expectState(3, "{GSet-1:[a],ORSet-1:[],PNCounter-1:5}", nil)
		c.process(4, mapRemove("ORSet-1"))
		c.expectState(4, "{GSet-1:[a],PNCounter-1:5}", upd(dORMap(false, []string{"ORSet-1"}, nil, nil)))
		c.process(5, mapAdd("Flag-1"), mapRemove("Flag-1")) // nets out
		c.expectState(5, "{GSet-1:[a],PNCounter-1:5}", nil)
		c.process(6, mapRemove("PNCounter-1"), mapSet("PNCounter-1", changePN(1))) // a new value
		c.expectState(6, "{GSet-1:[a],PNCounter-1:1}", upd(dORMap(false, []string{"PNCounter-1"}, nil,
			[]*pb.ORMapEntryDelta{entry("PNCounter-1", dPN(1))})))
		c.process(7, mapClear())
		c.expectState(7, "{}", upd(dORMap(true, nil, nil, nil)))
		c.process(8, mapAdd("Vote-1"), mapClear(), mapSet("LWWRegister-1", setLWW("x", sdk.ClockDefault, 0)))
		c.expectState(8, "{LWWRegister-1:x}", upd(dORMap(true, nil, nil, []*pb.ORMapEntryDelta{
			entry("LWWRegister-1", dLWW("x", pb.CrdtClock_DEFAULT, 0)),
		})))
		// Nested maps, and deltas from the proxy into nested values.
		c.process(9, mapSet("ORMap-inner", mapSet("GCounter-1", incGC(2))))
		c.expectState(9, "{LWWRegister-1:x,ORMap-inner:{GCounter-1:2}}", upd(dORMap(false, nil, nil, []*pb.ORMapEntryDelta{
			entry("ORMap-inner", dORMap(false, nil, nil, []*pb.ORMapEntryDelta{entry("GCounter-1", dGC(2))})),
		})))
		c.delta(dORMap(false, []string{"LWWRegister-1"},
			[]*pb.ORMapEntryDelta{entry("ORMap-inner", dORMap(false, nil, []*pb.ORMapEntryDelta{entry("GCounter-1", dGC(3))}, nil))},
			[]*pb.ORMapEntryDelta{entry("Vote-1", dVote(true, 2, 3))}))
		c.process(10, mapSet("ORMap-inner", mapSet("GCounter-1", incGC(1))), mapSet("Vote-1", vote(false)))
		c.expectState(10, "{ORMap-inner:{GCounter-1:6},Vote-1:false 1 3}", upd(dORMap(false, nil, []*pb.ORMapEntryDelta{
			entry("ORMap-inner", dORMap(false, nil, []*pb.ORMapEntryDelta{entry("GCounter-1", dGC(1))}, nil)),
			entry("Vote-1", dVote(false, 0, 0)),
		}, nil)))
		c.passivate()

		// (f) rehydration: init carries the whole value, nested.
		c = openCrdtModel(t, conn, "ORMap-b", dORMap(false, nil, nil, []*pb.ORMapEntryDelta{
			entry("ORMap-inner", dORMap(false, nil, nil, []*pb.ORMapEntryDelta{entry("GCounter-1", dGC(6))})),
			entry("GSet-1", dGSet("a", "b")),
		}))
		c.process(1, mapSet("GSet-1", addGSet("c")))
		c.expectState(1, "{GSet-1:[a,b,c],ORMap-inner:{GCounter-1:6}}", upd(dORMap(false, nil,
			[]*pb.ORMapEntryDelta{entry("GSet-1", dGSet("c"))}, nil)))
		c.passivate()

		// 169: side effects and state changes.
		c = openCrdtModel(t, conn, "ORMap-169", nil)
		c.process(1, mapAdd("PNCounter-1"), mapSet("GSet-1", addGSet("a")), mapSet("GSet-1", addGSet("b")), mapSet("GSet-1", addGSet("c")),
			crdtEffect("1", false), crdtEffect("2", false), crdtEffect("3", false))
		c.expectReply(&pb.CrdtReply{CommandId: 1, ClientAction: reply("{GSet-1:[a,b,c],PNCounter-1:0}"),
			SideEffects: []*cloudstate.SideEffect{crdtSideEffect("1", false), crdtSideEffect("2", false), crdtSideEffect("3", false)},
			StateAction: upd(dORMap(false, nil, nil, []*pb.ORMapEntryDelta{entry("GSet-1", dGSet("a", "b", "c")), entry("PNCounter-1", dPN(0))})),
		})
		c.passivate()
	})

	t.Run("delete action received from entity", func(t *testing.T) { // (g)
		for kind, d := range map[string]*pb.CrdtDelta{
			"GCounter": dGC(1), "PNCounter": dPN(1), "GSet": dGSet("a"), "ORSet": dORSet(false, nil, []string{"a"}),
			"LWWRegister": dLWW("a", pb.CrdtClock_DEFAULT, 0), "Flag": dFlag(true), "ORMap": dORMap(false, nil, nil, []*pb.ORMapEntryDelta{entry("Flag-1", dFlag(true))}),
			"Vote": dVote(true, 1, 1),
		} {
			c := openCrdtModel(t, conn, kind+"-g", d)
			want := map[string]string{"GCounter": "1", "PNCounter": "1", "GSet": "[a]", "ORSet": "[a]", "LWWRegister": "a", "Flag": "true", "ORMap": "{Flag-1:true}", "Vote": "true 1 1"}[kind]
			c.process(1, crdtDelete())
			c.expectState(1, want, delAction())
			c.passivate() // the proxy ends the stream after a delete
		}
	})

	t.Run("delete action sent to entity", func(t *testing.T) { // (h)
		c := openCrdtModel(t, conn, "GCounter-h", dGC(3))
		c.deleted()
		c.passivate()
	})

	t.Run("forward", func(t *testing.T) { // 163, 164
		c := openCrdtModel(t, conn, "GCounter-163", nil)
		c.process(1, incGC(42))
		c.expectState(1, "42", upd(dGC(42)))
		c.process(2, crdtForward("X-GCounter-163"))
		c.expectReply(&pb.CrdtReply{CommandId: 2, ClientAction: &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Forward{Forward: &cloudstate.Forward{
			ServiceName: crdtTwo, CommandName: "Call", Payload: anyOf(&tm.CrdtRequest{Id: "X-GCounter-163"}),
		}}}})
		c.process(3)
		c.expectState(3, "42", nil)
		c.passivate()

		c = openCrdtModel(t, conn, "PNCounter-164", nil)
		c.process(1, changePN(-42), crdtForward("X"))
		c.expectReply(&pb.CrdtReply{CommandId: 1, StateAction: upd(dPN(-42)), ClientAction: &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Forward{Forward: &cloudstate.Forward{
			ServiceName: crdtTwo, CommandName: "Call", Payload: anyOf(&tm.CrdtRequest{Id: "X"}),
		}}}})
		c.passivate()
	})

	t.Run("side effects", func(t *testing.T) { // 165, 166, 168
		c := openCrdtModel(t, conn, "GSet-165", dGSet("one"))
		c.process(1, crdtEffect("X", false))
		c.expectReply(&pb.CrdtReply{CommandId: 1, ClientAction: reply("[one]"), SideEffects: []*cloudstate.SideEffect{crdtSideEffect("X", false)}})
		c.process(2, crdtEffect("Y", true))
		c.expectReply(&pb.CrdtReply{CommandId: 2, ClientAction: reply("[one]"), SideEffects: []*cloudstate.SideEffect{crdtSideEffect("Y", true)}})
		c.passivate()
	})

	t.Run("failure drops changes", func(t *testing.T) { // 170, 171
		c := openCrdtModel(t, conn, "PNCounter-171", nil)
		c.process(1, changePN(42))
		c.expectState(1, "42", upd(dPN(42)))
		c.process(2, changePN(1), crdtEffect("x", false), crdtFail("expected failure"))
		c.expectReply(&pb.CrdtReply{CommandId: 2, ClientAction: failure(2, "expected failure", false)})
		c.process(3)
		c.expectState(3, "42", nil)
		c.process(4, changePN(1), crdtError("handler said no"))
		c.expectReply(&pb.CrdtReply{CommandId: 4, ClientAction: failure(4, "handler said no", false)})
		c.process(5, changePN(1))
		c.expectState(5, "43", upd(dPN(1)))
		c.passivate()

		// A failed command that created the state leaves none; one of an ORMap restores nested
		// values.
		c = openCrdtModel(t, conn, "ORSet-fail", nil)
		c.process(1, addORSet("a"), crdtFail("no"))
		c.expectReply(&pb.CrdtReply{CommandId: 1, ClientAction: failure(1, "no", false)})
		c.process(2, addORSet("b"))
		c.expectState(2, "[b]", upd(dORSet(false, nil, []string{"b"})))
		c.passivate()
		c = openCrdtModel(t, conn, "ORMap-fail", dORMap(false, nil, nil, []*pb.ORMapEntryDelta{entry("GCounter-1", dGC(1))}))
		c.process(1, mapSet("GCounter-1", incGC(5)), mapRemove("GCounter-1"), mapAdd("Flag-1"), crdtFail("no"))
		c.expectReply(&pb.CrdtReply{CommandId: 1, ClientAction: failure(1, "no", false)})
		c.process(2, mapSet("GCounter-1", incGC(1)))
		c.expectState(2, "{GCounter-1:2}", upd(dORMap(false, nil, []*pb.ORMapEntryDelta{entry("GCounter-1", dGC(1))}, nil)))
		c.passivate()
	})

	t.Run("write consistency", func(t *testing.T) { // 177
		c := openCrdtModel(t, conn, "GCounter-177", nil)
		for i, w := range []tm.WriteConsistency{tm.WriteConsistency_WRITE_CONSISTENCY_LOCAL, tm.WriteConsistency_WRITE_CONSISTENCY_MAJORITY, tm.WriteConsistency_WRITE_CONSISTENCY_ALL} {
			id := int64(i + 1)
			c.process(id, withConsistency(incGC(1), w))
			a := upd(dGC(1))
			a.WriteConsistency = pb.CrdtWriteConsistency(w)
			c.expectState(id, fmt.Sprint(id), a)
		}
		c.passivate()
	})
}

// TestCrdtStreamed follows TCK items 172-176 and 181.
func TestCrdtStreamed(t *testing.T) {
	conn := serve(t, sdk.Config{}, crdtModelEntity(sdk.CrdtConfig{}), crdtTwoEntity())

	t.Run("streamed responses", func(t *testing.T) { // 172
		c := openCrdtModel(t, conn, "GCounter-172", nil)
		c.processStreamed(1, &tm.CrdtStreamedRequest{})
		c.expectReply(&pb.CrdtReply{CommandId: 1, ClientAction: reply("0"), Streamed: true})
		for i, n := range []uint64{1, 2, 3} {
			id := int64(i + 2)
			c.process(id, incGC(n))
			want := fmt.Sprint([]int{1, 3, 6}[i])
			c.expectState(id, want, upd(dGC(n)))
			c.expectStreamed(streamedMsg(1, want))
		}
		c.process(5) // no change, no message
		c.expectState(5, "6", nil)
		c.delta(dGC(4)) // a change from the proxy
		c.expectStreamed(streamedMsg(1, "10"))
		c.passivate()
	})

	t.Run("stream-ending action", func(t *testing.T) { // 173
		c := openCrdtModel(t, conn, "GCounter-173", nil)
		c.processStreamed(1, &tm.CrdtStreamedRequest{EndState: "3"})
		c.expectReply(&pb.CrdtReply{CommandId: 1, ClientAction: reply("0"), Streamed: true})
		c.process(2, incGC(1))
		c.expectState(2, "1", upd(dGC(1)))
		c.expectStreamed(streamedMsg(1, "1"))
		c.process(3, incGC(2))
		c.expectState(3, "3", upd(dGC(2)))
		c.expectStreamed(&pb.CrdtStreamedMessage{CommandId: 1, ClientAction: reply("3"), EndStream: true})
		c.process(4, incGC(3))
		c.expectState(4, "6", upd(dGC(3)))
		c.process(5) // nothing streamed in between
		c.expectState(5, "6", nil)
		c.passivate()
	})

	t.Run("cancellation", func(t *testing.T) { // 174
		c := openCrdtModel(t, conn, "PNCounter-174", nil)
		c.processStreamed(1, &tm.CrdtStreamedRequest{CancelUpdate: changePN(-42).GetUpdate()})
		c.expectReply(&pb.CrdtReply{CommandId: 1, ClientAction: reply("0"), Streamed: true})
		c.process(2, changePN(10))
		c.expectState(2, "10", upd(dPN(10)))
		c.expectStreamed(streamedMsg(1, "10"))
		c.process(3, changePN(20))
		c.expectState(3, "30", upd(dPN(20)))
		c.expectStreamed(streamedMsg(1, "30"))
		c.cancel(1)
		c.expectCancelled(&pb.CrdtStreamCancelledResponse{CommandId: 1, StateAction: upd(dPN(-42))})
		c.process(4)
		c.expectState(4, "-12", nil)
		c.process(5, changePN(30))
		c.expectState(5, "18", upd(dPN(30)))
		c.passivate()
	})

	t.Run("empty streamed with cancellation", func(t *testing.T) { // 175
		c := openCrdtModel(t, conn, "PNCounter-175", nil)
		c.process(1, changePN(10))
		c.expectState(1, "10", upd(dPN(10)))
		c.processStreamed(2, &tm.CrdtStreamedRequest{CancelUpdate: changePN(-42).GetUpdate(), Empty: true})
		c.expectReply(&pb.CrdtReply{CommandId: 2, Streamed: true})
		c.cancel(2)
		c.expectCancelled(&pb.CrdtStreamCancelledResponse{CommandId: 2, StateAction: upd(dPN(-42))})
		c.process(3)
		c.expectState(3, "-32", nil)
		c.passivate()
	})

	t.Run("side effects", func(t *testing.T) { // 176
		c := openCrdtModel(t, conn, "GSet-176", nil)
		c.processStreamed(1, &tm.CrdtStreamedRequest{Effects: []*tm.Effect{{Id: "one"}, {Id: "two", Synchronous: true}}})
		c.expectReply(&pb.CrdtReply{CommandId: 1, ClientAction: reply("[]"), Streamed: true})
		effects := []*cloudstate.SideEffect{crdtSideEffect("one", false), crdtSideEffect("two", true)}
		c.process(2, addGSet("a"))
		c.expectState(2, "[a]", upd(dGSet("a")))
		c.expectStreamed(&pb.CrdtStreamedMessage{CommandId: 1, ClientAction: reply("[a]"), SideEffects: effects})
		c.process(3, addGSet("b"))
		c.expectState(3, "[a,b]", upd(dGSet("b")))
		c.expectStreamed(&pb.CrdtStreamedMessage{CommandId: 1, ClientAction: reply("[a,b]"), SideEffects: effects})
		c.passivate()
	})

	t.Run("connection tracking", func(t *testing.T) { // 181, the chat's presence
		c := openCrdtModel(t, conn, "Vote-181", nil)
		c.processStreamed(1, &tm.CrdtStreamedRequest{}) // monitor
		c.expectReply(&pb.CrdtReply{CommandId: 1, ClientAction: reply("false 0 1"), Streamed: true})
		c.processStreamed(2, &tm.CrdtStreamedRequest{InitialUpdate: voteUpdate(true), CancelUpdate: voteUpdate(false), Empty: true}) // connect
		c.expectReply(&pb.CrdtReply{CommandId: 2, Streamed: true, StateAction: upd(dVote(true, 0, 0))})
		c.expectStreamed(streamedMsg(1, "true 1 1"))
		c.cancel(2)
		c.expectCancelled(&pb.CrdtStreamCancelledResponse{CommandId: 2, StateAction: upd(dVote(false, 0, 0))})
		c.expectStreamed(streamedMsg(1, "false 0 1"))
		c.cancel(1)
		c.expectCancelled(&pb.CrdtStreamCancelledResponse{CommandId: 1})
		c.process(3, crdtDelete())
		c.expectState(3, "false 0 1", delAction())
		c.passivate()
	})

	t.Run("passivation with an open stream", func(t *testing.T) {
		c := openCrdtModel(t, conn, "Flag-pass", nil)
		c.processStreamed(1, &tm.CrdtStreamedRequest{})
		c.expectReply(&pb.CrdtReply{CommandId: 1, ClientAction: reply("false"), Streamed: true})
		c.passivate()
	})

	t.Run("cancel of an ended stream", func(t *testing.T) {
		c := openCrdtModel(t, conn, "Flag-end", nil)
		c.processStreamed(1, &tm.CrdtStreamedRequest{EndState: "true"})
		c.expectReply(&pb.CrdtReply{CommandId: 1, ClientAction: reply("false"), Streamed: true})
		c.delta(dFlag(true))
		c.expectStreamed(&pb.CrdtStreamedMessage{CommandId: 1, ClientAction: reply("true"), EndStream: true})
		c.cancel(1) // crossed the end on the way: answered, nothing else
		c.expectCancelled(&pb.CrdtStreamCancelledResponse{CommandId: 1})
		c.passivate()
	})

	t.Run("failed streamed command opens no stream", func(t *testing.T) {
		c := openCrdtModel(t, conn, "GCounter-sf", nil)
		c.processStreamed(1, &tm.CrdtStreamedRequest{InitialUpdate: &tm.CrdtUpdate{Update: &tm.CrdtUpdate_PncounterChange{PncounterChange: 1}}})
		c.expectReply(&pb.CrdtReply{CommandId: 1, ClientAction: failure(1, "update of another CRDT type", false)})
		c.process(2, incGC(1))
		c.expectState(2, "1", upd(dGC(1)))
		c.process(3) // no streamed message for command 1 came
		c.expectState(3, "1", nil)
		c.passivate()
	})
}

// TestCrdtBadInput: protocol-level problems get a stream Failure and end the stream.
func TestCrdtBadInput(t *testing.T) {
	conn := serve(t, sdk.Config{}, crdtModelEntity(sdk.CrdtConfig{}), crdtTwoEntity())

	t.Run("unknown command", func(t *testing.T) {
		c := openCrdtModel(t, conn, "GCounter-bad1", nil)
		c.command(1, "Nope", &tm.CrdtRequest{}, false)
		c.expectFailure(1, `unknown command "Nope" for jetstate.sdk.testmodel.CrdtModel`)
	})
	t.Run("undecodable payload", func(t *testing.T) {
		c := openCrdtModel(t, conn, "GCounter-bad2", nil)
		c.send(&pb.CrdtStreamIn{Message: &pb.CrdtStreamIn_Command{Command: &cloudstate.Command{
			EntityId: c.id, Id: 1, Name: "Process", Payload: anyOfURL("type.googleapis.com/jetstate.sdk.testmodel.CrdtRequest", []byte{0xff}),
		}}})
		c.expectFailurePrefix(1, `command Process: decode payload of type "type.googleapis.com/jetstate.sdk.testmodel.CrdtRequest": proto:`)
	})
	t.Run("payload of the wrong type", func(t *testing.T) {
		c := openCrdtModel(t, conn, "GCounter-bad3", nil)
		c.command(1, "Process", &tm.Other{}, false)
		c.expectFailure(1, "command Process: payload of type jetstate.sdk.testmodel.Other, want jetstate.sdk.testmodel.CrdtRequest")
	})
	t.Run("delta of another type", func(t *testing.T) {
		c := openCrdtModel(t, conn, "GCounter-bad4", dGC(1))
		c.delta(dPN(1))
		c.expectFailure(0, "delta: delta of another CRDT type: a pncounter delta for a gcounter")
	})
	t.Run("init delta of no type", func(t *testing.T) {
		c := openCrdtModel(t, conn, "GCounter-bad5", &pb.CrdtDelta{})
		c.expectFailure(0, "init delta: delta of another CRDT type: empty delta")
	})
	t.Run("streamed flag of a unary method", func(t *testing.T) {
		c := openCrdtModel(t, conn, "GCounter-bad6", nil)
		c.command(1, "Process", &tm.CrdtRequest{}, true)
		c.expectFailure(1, "protocol error: command Process has streamed=true, but the method is unary")
	})
	t.Run("handler panics", func(t *testing.T) {
		c := openCrdtModel(t, conn, "GCounter-bad7", nil)
		c.process(1, incGC(1), crdtPanic("boom"))
		c.expectFailure(1, "command Process: panic: boom")
	})
	t.Run("second init", func(t *testing.T) {
		c := openCrdtModel(t, conn, "GCounter-bad8", nil)
		c.init(crdtModel, "GCounter-bad8", nil)
		c.expectFailure(0, "protocol error: second init on the stream")
	})
	t.Run("unknown service", func(t *testing.T) {
		c := openCrdt(t, conn)
		c.init(veModel, "x", nil)
		c.expectFailure(0, `unknown CRDT service "jetstate.sdk.testmodel.ValueEntityModel"`)
	})
	t.Run("command before init", func(t *testing.T) {
		c := openCrdt(t, conn)
		c.process(1)
		c.expectFailure(0, "protocol error: the first message of a stream must be init")
	})
	t.Run("server survives", func(t *testing.T) {
		c := openCrdtModel(t, conn, "GCounter-bad9", dGC(2))
		c.process(1)
		c.expectState(1, "2", nil)
		c.passivate()
	})
}
