package sdk_test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	es "github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/sdk"
	tm "github.com/jetstate/jetstate/sdk/internal/testmodel"
)

// TestEventSourced follows the TCK's event-sourced model tests (spec section 4.2, items 72-90).
func TestEventSourced(t *testing.T) {
	conn := serve(t, sdk.Config{}, esModelEntity(sdk.EventSourcedConfig{}), esTwoEntity())

	t.Run("initial empty state", func(t *testing.T) { // 72
		c := openES(t, conn)
		c.init(esModel, "es-1")
		c.command(1, "es-1", "Process", req("es-1"))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply("")})
		c.passivate()
	})

	t.Run("single event", func(t *testing.T) { // 73
		c := openES(t, conn)
		c.init(esModel, "es-2")
		c.command(1, "es-2", "Process", req("es-2", emit("A")))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply("A"), Events: ps("A")})
		c.command(2, "es-2", "Process", req("es-2"))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: reply("A")})
		c.passivate()
	})

	t.Run("multiple events", func(t *testing.T) { // 74
		c := openES(t, conn)
		c.init(esModel, "es-3")
		c.command(1, "es-3", "Process", req("es-3", emit("A"), emit("B"), emit("C")))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply("ABC"), Events: ps("A", "B", "C")})
		c.passivate()
	})

	t.Run("events and snapshots", func(t *testing.T) { // 75
		c := openES(t, conn)
		c.init(esModel, "es-4")
		id := int64(0)
		step := func(state string, events []string, snapshot string) {
			t.Helper()
			id++
			var actions []*tm.RequestAction
			for _, e := range events {
				actions = append(actions, emit(e))
			}
			c.command(id, "es-4", "Process", req("es-4", actions...))
			want := &es.EventSourcedReply{CommandId: id, ClientAction: reply(state), Events: ps(events...)}
			if snapshot != "" {
				want.Snapshot = p(snapshot)
			}
			c.expectReply(want)
		}
		step("A", []string{"A"}, "")
		step("AB", []string{"B"}, "")
		step("ABC", []string{"C"}, "")
		step("ABCD", []string{"D"}, "")
		step("ABCDE", []string{"E"}, "ABCDE")
		step("ABCDEF", []string{"F"}, "")
		step("ABCDEFG", []string{"G"}, "")
		step("ABCDEFGH", []string{"H"}, "")
		step("ABCDEFGHIJ", []string{"I", "J"}, "ABCDEFGHIJ")
		step("ABCDEFGHIJK", []string{"K"}, "")
		step("ABCDEFGHIJK", nil, "")
		c.passivate()
	})

	t.Run("initial snapshot", func(t *testing.T) { // 76
		c := openES(t, conn)
		c.initSnapshot(esModel, "es-5", 5, &tm.Persisted{Value: "ABCDE"})
		c.command(1, "es-5", "Process", req("es-5"))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply("ABCDE")})
		c.passivate()
	})

	t.Run("initial snapshot and events", func(t *testing.T) { // 77
		c := openES(t, conn)
		c.initSnapshot(esModel, "es-6", 5, &tm.Persisted{Value: "ABCDE"})
		c.event(6, &tm.Persisted{Value: "F"})
		c.event(7, &tm.Persisted{Value: "G"})
		c.command(1, "es-6", "Process", req("es-6"))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply("ABCDEFG")})
		// The sequence number continues from the replayed events: 8, 9, 10 -> snapshot.
		c.command(2, "es-6", "Process", req("es-6", emit("H"), emit("I"), emit("J")))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: reply("ABCDEFGHIJ"), Events: ps("H", "I", "J"), Snapshot: p("ABCDEFGHIJ")})
		c.passivate()
	})

	t.Run("rehydration after passivation", func(t *testing.T) { // 78
		c := openES(t, conn)
		c.init(esModel, "es-7")
		c.command(1, "es-7", "Process", req("es-7", emit("A"), emit("B"), emit("C")))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply("ABC"), Events: ps("A", "B", "C")})
		c.command(2, "es-7", "Process", req("es-7", emit("D"), emit("E")))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: reply("ABCDE"), Events: ps("D", "E"), Snapshot: p("ABCDE")})
		c.command(3, "es-7", "Process", req("es-7", emit("F")))
		c.expectReply(&es.EventSourcedReply{CommandId: 3, ClientAction: reply("ABCDEF"), Events: ps("F")})
		c.command(4, "es-7", "Process", req("es-7", emit("G")))
		c.expectReply(&es.EventSourcedReply{CommandId: 4, ClientAction: reply("ABCDEFG"), Events: ps("G")})
		c.passivate()

		c = openES(t, conn)
		c.initSnapshot(esModel, "es-7", 5, &tm.Persisted{Value: "ABCDE"})
		c.event(6, &tm.Persisted{Value: "F"})
		c.event(7, &tm.Persisted{Value: "G"})
		c.command(1, "es-7", "Process", req("es-7"))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply("ABCDEFG")})
		c.passivate()
	})

	abc := func(t *testing.T, id string) *esConn {
		t.Helper()
		return abcStream(t, conn, id)
	}

	t.Run("forward", func(t *testing.T) { // 79
		c := abc(t, "es-8")
		c.command(2, "es-8", "Process", req("es-8", forward("es-8")))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: forwardTo(esTwo, "es-8")})
		c.command(3, "es-8", "Process", req("es-8"))
		c.expectReply(&es.EventSourcedReply{CommandId: 3, ClientAction: reply("ABC")})
		c.passivate()
	})

	t.Run("emit and forward", func(t *testing.T) { // 80
		c := openES(t, conn)
		c.init(esModel, "es-9")
		c.command(1, "es-9", "Process", req("es-9", emit("A"), forward("es-9")))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: forwardTo(esTwo, "es-9"), Events: ps("A")})
		c.passivate()
	})

	t.Run("emit, snapshot and forward", func(t *testing.T) { // 81
		c := abc(t, "es-10")
		c.command(2, "es-10", "Process", req("es-10", emit("D"), emit("E"), forward("es-10")))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: forwardTo(esTwo, "es-10"), Events: ps("D", "E"), Snapshot: p("ABCDE")})
		c.passivate()
	})

	t.Run("side effect", func(t *testing.T) { // 82
		c := abc(t, "es-11")
		c.command(2, "es-11", "Process", req("es-11", effect("es-11", false)))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: reply("ABC"), SideEffects: []*cloudstate.SideEffect{sideEffect(esTwo, "es-11", false)}})
		c.command(3, "es-11", "Process", req("es-11"))
		c.expectReply(&es.EventSourcedReply{CommandId: 3, ClientAction: reply("ABC")})
		c.passivate()
	})

	t.Run("synchronous side effect", func(t *testing.T) { // 83
		c := abc(t, "es-12")
		c.command(2, "es-12", "Process", req("es-12", effect("es-12", true)))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: reply("ABC"), SideEffects: []*cloudstate.SideEffect{sideEffect(esTwo, "es-12", true)}})
		c.passivate()
	})

	t.Run("side effect and forward", func(t *testing.T) { // 84
		c := abc(t, "es-13")
		c.command(2, "es-13", "Process", req("es-13", effect("es-13", false), forward("es-13")))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: forwardTo(esTwo, "es-13"), SideEffects: []*cloudstate.SideEffect{sideEffect(esTwo, "es-13", false)}})
		c.passivate()
	})

	t.Run("multiple side effects", func(t *testing.T) { // 85
		c := openES(t, conn)
		c.init(esModel, "es-14")
		c.command(1, "es-14", "Process", req("es-14", effect("1", false), effect("2", true), effect("3", false)))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply(""), SideEffects: []*cloudstate.SideEffect{
			sideEffect(esTwo, "1", false), sideEffect(esTwo, "2", true), sideEffect(esTwo, "3", false),
		}})
		c.passivate()
	})

	t.Run("events, snapshot and side effects", func(t *testing.T) { // 86
		c := openES(t, conn)
		c.init(esModel, "es-15")
		c.command(1, "es-15", "Process", req("es-15", emit("A"), emit("B"), emit("C"), emit("D"), emit("E"),
			effect("1", false), effect("2", false), effect("3", false)))
		c.expectReply(&es.EventSourcedReply{
			CommandId: 1, ClientAction: reply("ABCDE"), Events: ps("A", "B", "C", "D", "E"), Snapshot: p("ABCDE"),
			SideEffects: []*cloudstate.SideEffect{sideEffect(esTwo, "1", false), sideEffect(esTwo, "2", false), sideEffect(esTwo, "3", false)},
		})
		c.passivate()
	})

	t.Run("failure", func(t *testing.T) { // 87
		c := openES(t, conn)
		c.init(esModel, "es-16")
		c.command(1, "es-16", "Process", req("es-16", fail("expected failure")))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: failure(1, "expected failure", false)})
		c.passivate()
	})

	t.Run("connection usable after failure", func(t *testing.T) { // 88
		c := openES(t, conn)
		c.init(esModel, "es-17")
		c.command(1, "es-17", "Process", req("es-17", emit("A")))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply("A"), Events: ps("A")})
		c.command(2, "es-17", "Process", req("es-17", fail("expected failure")))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: failure(2, "expected failure", false)})
		c.command(3, "es-17", "Process", req("es-17"))
		c.expectReply(&es.EventSourcedReply{CommandId: 3, ClientAction: reply("A")})
		c.passivate()
	})

	t.Run("failure drops emitted events and asks for a restart", func(t *testing.T) { // 89
		c := abc(t, "es-18")
		c.command(2, "es-18", "Process", req("es-18", emit("4"), emit("5"), fail("failure 1")))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: failure(2, "failure 1", true)})
		// The state is stale: the stream refuses further commands until the proxy restarts it.
		c.command(3, "es-18", "Process", req("es-18"))
		c.expectFailure(3, "the entity must be restarted after a failed command whose events were applied")

		// The proxy restarts the entity: init and the journal without the failed events.
		c = openES(t, conn)
		c.init(esModel, "es-18")
		c.event(1, &tm.Persisted{Value: "A"})
		c.event(2, &tm.Persisted{Value: "B"})
		c.event(3, &tm.Persisted{Value: "C"})
		c.command(1, "es-18", "Process", req("es-18", emit("D")))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply("ABCD"), Events: ps("D")})
		// Emits after the failure are ignored; the one before it was applied.
		c.command(2, "es-18", "Process", req("es-18", emit("6"), fail("failure 2"), emit("7")))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: failure(2, "failure 2", true)})
		c.passivate()

		c = openES(t, conn)
		c.init(esModel, "es-18")
		for i, v := range []string{"A", "B", "C", "D"} {
			c.event(int64(i+1), &tm.Persisted{Value: v})
		}
		c.command(1, "es-18", "Process", req("es-18", emit("E")))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply("ABCDE"), Events: ps("E"), Snapshot: p("ABCDE")})
		c.passivate()
	})

	t.Run("failure drops side effects", func(t *testing.T) { // 90
		c := openES(t, conn)
		c.init(esModel, "es-19")
		c.command(1, "es-19", "Process", req("es-19", effect("es-19", false), fail("expected failure")))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: failure(1, "expected failure", false)})
		c.passivate()
	})

	t.Run("handler error fails the command", func(t *testing.T) {
		c := abc(t, "es-20")
		c.command(2, "es-20", "Process", req("es-20", effect("x", false), errorAction("handler said no")))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: failure(2, "handler said no", false)})
		c.command(3, "es-20", "Process", req("es-20", emit("D"), errorAction("after an event")))
		c.expectReply(&es.EventSourcedReply{CommandId: 3, ClientAction: failure(3, "after an event", true)})
		c.passivate()
	})

	t.Run("event handler error fails the command", func(t *testing.T) {
		c := abc(t, "es-21")
		c.command(2, "es-21", "Process", req("es-21", emit("bad event")))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: failure(2, "apply jetstate.sdk.testmodel.Persisted: refused bad event", true)})
		c.passivate()
	})

	t.Run("forward twice fails the command", func(t *testing.T) {
		c := openES(t, conn)
		c.init(esModel, "es-22")
		c.command(1, "es-22", "Process", req("es-22", forward("a"), forward("b")))
		c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: failure(1,
			"forward to jetstate.sdk.testmodel.EventSourcedTwo/Call: the command already forwards to jetstate.sdk.testmodel.EventSourcedTwo/Call", false)})
		c.passivate()
	})
}

// TestEventSourcedSnapshotEvery checks the snapshot interval: default, custom, never, and a
// command whose events cross a multiple without ending on it.
func TestEventSourcedSnapshotEvery(t *testing.T) {
	events := func(n int, prefix string) ([]*tm.RequestAction, []string) {
		var actions []*tm.RequestAction
		var values []string
		for i := range n {
			v := fmt.Sprintf("%s%d,", prefix, i)
			actions = append(actions, emit(v))
			values = append(values, v)
		}
		return actions, values
	}
	for _, tc := range []struct {
		name  string
		every int
		// commands emits that many events per command; snapshots lists which commands carry
		// a snapshot.
		commands  []int
		snapshots []bool
	}{
		{name: "default 100", every: 0, commands: []int{99, 1, 99, 2}, snapshots: []bool{false, true, false, true}},
		{name: "every 3, crossing", every: 3, commands: []int{2, 2, 1, 1, 4}, snapshots: []bool{false, true, false, true, true}},
		{name: "never", every: -1, commands: []int{100, 100}, snapshots: []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := sdk.NewEventSourced(sdk.EventSourcedConfig{ServiceName: esModel, SnapshotEvery: tc.every}, func(string) *esState { return &esState{} })
			sdk.HandleCommand(e, "Process", (*esState).process)
			sdk.HandleEvent(e, (*esState).persisted)
			sdk.HandleSnapshot(e, (*esState).snapshot, (*esState).restore)
			conn := serve(t, sdk.Config{}, e)
			c := openES(t, conn)
			c.init(esModel, "e")
			var state strings.Builder
			for i, n := range tc.commands {
				actions, values := events(n, fmt.Sprint(i))
				for _, v := range values {
					state.WriteString(v)
				}
				id := int64(i + 1)
				c.command(id, "e", "Process", req("e", actions...))
				want := &es.EventSourcedReply{CommandId: id, ClientAction: reply(state.String()), Events: ps(values...)}
				if tc.snapshots[i] {
					want.Snapshot = p(state.String())
				}
				c.expectReply(want)
			}
			c.passivate()
		})
	}
}

// TestEventSourcedWithoutSnapshotHandler: an entity without HandleSnapshot never snapshots and
// refuses an init that carries a snapshot.
func TestEventSourcedWithoutSnapshotHandler(t *testing.T) {
	e := sdk.NewEventSourced(sdk.EventSourcedConfig{ServiceName: esModel, SnapshotEvery: 1}, func(string) *esState { return &esState{} })
	sdk.HandleCommand(e, "Process", (*esState).process)
	sdk.HandleEvent(e, (*esState).persisted)
	conn := serve(t, sdk.Config{}, e)

	c := openES(t, conn)
	c.init(esModel, "e")
	c.command(1, "e", "Process", req("e", emit("A")))
	c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply("A"), Events: ps("A")})
	c.passivate()

	c = openES(t, conn)
	c.initSnapshot(esModel, "e", 1, &tm.Persisted{Value: "A"})
	c.expectFailure(0, `init carries a snapshot of type "type.googleapis.com/jetstate.sdk.testmodel.Persisted" but the entity has no snapshot handler`)
}

// TestEventSourcedBadInput: protocol-level problems get a stream Failure and end the stream;
// the server goes on serving.
func TestEventSourcedBadInput(t *testing.T) {
	conn := serve(t, sdk.Config{}, esModelEntity(sdk.EventSourcedConfig{}), esTwoEntity())

	t.Run("unknown command", func(t *testing.T) {
		c := openES(t, conn)
		c.init(esModel, "bad-1")
		c.command(1, "bad-1", "Nope", req("bad-1"))
		c.expectFailure(1, `unknown command "Nope" for jetstate.sdk.testmodel.EventSourcedModel`)
	})
	t.Run("payload of the wrong type", func(t *testing.T) {
		c := openES(t, conn)
		c.init(esModel, "bad-2")
		c.command(1, "bad-2", "Process", &tm.Other{Id: "bad-2"})
		c.expectFailure(1, "command Process: payload of type jetstate.sdk.testmodel.Other, want jetstate.sdk.testmodel.Request")
	})
	t.Run("payload of an unknown type", func(t *testing.T) {
		c := openES(t, conn)
		c.init(esModel, "bad-3")
		c.send(&es.EventSourcedStreamIn{Message: &es.EventSourcedStreamIn_Command{Command: &cloudstate.Command{
			EntityId: "bad-3", Id: 1, Name: "Process", Payload: anyOfURL("type.googleapis.com/no.such.Type", nil),
		}}})
		c.expectFailure(1, `command Process: unknown payload type "type.googleapis.com/no.such.Type": no Go type is registered for it`)
	})
	t.Run("undecodable payload", func(t *testing.T) {
		c := openES(t, conn)
		c.init(esModel, "bad-4")
		c.send(&es.EventSourcedStreamIn{Message: &es.EventSourcedStreamIn_Command{Command: &cloudstate.Command{
			EntityId: "bad-4", Id: 1, Name: "Process", Payload: anyOfURL("type.googleapis.com/jetstate.sdk.testmodel.Request", []byte{0xff}),
		}}})
		got, err := c.stream.Recv()
		if err != nil || got.GetFailure().GetCommandId() != 1 || !strings.HasPrefix(got.GetFailure().GetDescription(), `command Process: decode payload of type "type.googleapis.com/jetstate.sdk.testmodel.Request"`) {
			t.Fatalf("got %v, %v; want a failure of command 1 decoding the payload", got, err)
		}
		c.expectEnd()
	})
	t.Run("handler panics", func(t *testing.T) {
		c := abcStream(t, conn, "bad-5")
		c.command(2, "bad-5", "Process", req("bad-5", emit("D"), panicAction("boom")))
		c.expectFailure(2, "command Process: panic: boom")
	})
	t.Run("unknown event in the journal", func(t *testing.T) {
		c := openES(t, conn)
		c.init(esModel, "bad-6")
		c.event(1, &tm.Other{Id: "x"})
		c.expectFailure(0, "event 1: no event handler for jetstate.sdk.testmodel.Other")
	})
	t.Run("event handler fails on replay", func(t *testing.T) {
		c := openES(t, conn)
		c.init(esModel, "bad-7")
		c.event(1, &tm.Persisted{Value: "bad event"})
		c.expectFailure(0, "event 1: refused bad event")
	})
	t.Run("snapshot of the wrong type", func(t *testing.T) {
		c := openES(t, conn)
		c.initSnapshot(esModel, "bad-8", 3, &tm.Response{Message: "ABC"})
		c.expectFailure(0, "restore snapshot at sequence 3: payload of type jetstate.sdk.testmodel.Response, want jetstate.sdk.testmodel.Persisted")
	})
	t.Run("command before init", func(t *testing.T) {
		c := openES(t, conn)
		c.command(1, "bad-9", "Process", req("bad-9"))
		c.expectFailure(0, "protocol error: the first message of a stream must be init")
	})
	t.Run("unknown service", func(t *testing.T) {
		c := openES(t, conn)
		c.init("no.such.Service", "bad-10")
		c.expectFailure(0, `unknown event-sourced service "no.such.Service"`)
	})
	t.Run("second init", func(t *testing.T) {
		c := openES(t, conn)
		c.init(esModel, "bad-11")
		c.init(esModel, "bad-11")
		c.expectFailure(0, "protocol error: second init on the stream")
	})
	t.Run("server survives", func(t *testing.T) {
		c := abcStream(t, conn, "bad-12")
		c.command(2, "bad-12", "Process", req("bad-12"))
		c.expectReply(&es.EventSourcedReply{CommandId: 2, ClientAction: reply("ABC")})
		c.passivate()
	})
}

// abcStream opens a stream for id and brings its state to "ABC" with command 1.
func abcStream(t *testing.T, conn *grpc.ClientConn, id string) *esConn {
	t.Helper()
	c := openES(t, conn)
	c.init(esModel, id)
	c.command(1, id, "Process", req(id, emit("A"), emit("B"), emit("C")))
	c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply("ABC"), Events: ps("A", "B", "C")})
	return c
}
