package tck_test

//lint:file-ignore SA1019 the CloudState TCK requires the v1alpha reflection service.

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	esmodel "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/eventsourced"
	vemodel "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/valueentity"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	pmodel "github.com/jetstate/jetstate/proxy/model"
)

// --- message builders, in the TCK's notation ---

func replyOf(m proto.Message) *cloudstate.ClientAction {
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: &cloudstate.Reply{Payload: anyOf(m)}}}
}

func forwardTo(service string, m proto.Message) *cloudstate.ClientAction {
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Forward{Forward: &cloudstate.Forward{ServiceName: service, CommandName: "Call", Payload: anyOf(m)}}}
}

func effect(service string, m proto.Message, sync bool) *cloudstate.SideEffect {
	return &cloudstate.SideEffect{ServiceName: service, CommandName: "Call", Payload: anyOf(m), Synchronous: sync}
}

func command(id string, n int64, name string, m proto.Message) *cloudstate.Command {
	return &cloudstate.Command{EntityId: id, Id: n, Name: name, Payload: anyOf(m)}
}

func veInit(service, id string, value *vemodel.Persisted) *valueentity.ValueEntityStreamIn {
	state := &valueentity.ValueEntityInitState{}
	if value != nil {
		state.Value = anyOf(value)
	}
	return &valueentity.ValueEntityStreamIn{Message: &valueentity.ValueEntityStreamIn_Init{Init: &valueentity.ValueEntityInit{ServiceName: service, EntityId: id, State: state}}}
}

func veCmd(id string, n int64, name string, req proto.Message) *valueentity.ValueEntityStreamIn {
	return &valueentity.ValueEntityStreamIn{Message: &valueentity.ValueEntityStreamIn_Command{Command: command(id, n, name, req)}}
}

func veOut(n int64, action *cloudstate.ClientAction, state *valueentity.ValueEntityAction, effects ...*cloudstate.SideEffect) *valueentity.ValueEntityStreamOut {
	return &valueentity.ValueEntityStreamOut{Message: &valueentity.ValueEntityStreamOut_Reply{Reply: &valueentity.ValueEntityReply{
		CommandId: n, ClientAction: action, StateAction: state, SideEffects: effects}}}
}

func veUpdate(v string) *valueentity.ValueEntityAction {
	return &valueentity.ValueEntityAction{Action: &valueentity.ValueEntityAction_Update{Update: &valueentity.ValueEntityUpdate{Value: anyOf(&vemodel.Persisted{Value: v})}}}
}

func veDelete() *valueentity.ValueEntityAction {
	return &valueentity.ValueEntityAction{Action: &valueentity.ValueEntityAction_Delete{Delete: &valueentity.ValueEntityDelete{}}}
}

func veReq(id string, actions ...*vemodel.RequestAction) *vemodel.Request {
	return &vemodel.Request{Id: id, Actions: actions}
}

func veSet(v string) *vemodel.RequestAction {
	return &vemodel.RequestAction{Action: &vemodel.RequestAction_Update{Update: &vemodel.Update{Value: v}}}
}

func veDel() *vemodel.RequestAction {
	return &vemodel.RequestAction{Action: &vemodel.RequestAction_Delete{Delete: &vemodel.Delete{}}}
}

func esInit(service, id string) *eventsourced.EventSourcedStreamIn {
	return &eventsourced.EventSourcedStreamIn{Message: &eventsourced.EventSourcedStreamIn_Init{Init: &eventsourced.EventSourcedInit{ServiceName: service, EntityId: id}}}
}

func esEvent(seq int64, v string) *eventsourced.EventSourcedStreamIn {
	return &eventsourced.EventSourcedStreamIn{Message: &eventsourced.EventSourcedStreamIn_Event{Event: &eventsourced.EventSourcedEvent{Sequence: seq, Payload: anyOf(&esmodel.Persisted{Value: v})}}}
}

func esCmd(id string, n int64, name string, req proto.Message) *eventsourced.EventSourcedStreamIn {
	return &eventsourced.EventSourcedStreamIn{Message: &eventsourced.EventSourcedStreamIn_Command{Command: command(id, n, name, req)}}
}

// esOut is a reply; events are the emitted values; snapshot "" means none.
func esOut(n int64, action *cloudstate.ClientAction, events []string, snapshot string, effects ...*cloudstate.SideEffect) *eventsourced.EventSourcedStreamOut {
	r := &eventsourced.EventSourcedReply{CommandId: n, ClientAction: action, SideEffects: effects}
	for _, e := range events {
		r.Events = append(r.Events, anyOf(&esmodel.Persisted{Value: e}))
	}
	if snapshot != "" {
		r.Snapshot = anyOf(&esmodel.Persisted{Value: snapshot})
	}
	return &eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Reply{Reply: r}}
}

func esReq(id string, actions ...*esmodel.RequestAction) *esmodel.Request {
	return &esmodel.Request{Id: id, Actions: actions}
}

func emit(vs ...string) []*esmodel.RequestAction {
	var out []*esmodel.RequestAction
	for _, v := range vs {
		out = append(out, &esmodel.RequestAction{Action: &esmodel.RequestAction_Emit{Emit: &esmodel.Emit{Value: v}}})
	}
	return out
}

func esFail(msg string) *esmodel.RequestAction {
	return &esmodel.RequestAction{Action: &esmodel.RequestAction_Fail{Fail: &esmodel.Fail{Message: msg}}}
}

// --- 1. Proxy info and discovery ---

func TestTCK01Discovery(t *testing.T) {
	x := startTCK(t)
	e := x.next(1)
	info, ok := e.msg.(*cloudstate.ProxyInfo)
	if !ok || !e.in {
		t.Fatalf("first call is %s, want discover", describe(e))
	}
	if info.GetProtocolMajorVersion() != 0 || info.GetProtocolMinorVersion() != 2 {
		t.Fatalf("protocol version %d.%d", info.GetProtocolMajorVersion(), info.GetProtocolMinorVersion())
	}
	// All four entity types, as the TCK asserts of the reference proxy
	// with its in-memory configuration.
	t.Run("supported entity types", func(t *testing.T) {
		types := slices.Sorted(slices.Values(info.GetSupportedEntityTypes()))
		if want := []string{pmodel.Action, pmodel.CRDT, pmodel.EventSourced, pmodel.ValueEntity}; !slices.Equal(types, want) {
			t.Fatalf("supported entity types %v, want %v", types, want)
		}
	})
	var spec *cloudstate.EntitySpec
	for spec == nil {
		e := x.next(1) // skips the end of the request direction
		if !e.closed {
			var ok bool
			if spec, ok = e.msg.(*cloudstate.EntitySpec); !ok {
				t.Fatalf("discover answered %s", describe(e))
			}
		}
	}
	for _, ent := range spec.GetEntities() {
		if x.p.Model().Services[ent.GetServiceName()] == nil {
			t.Fatalf("entity service %s not in the model", ent.GetServiceName())
		}
	}
	x.ic.mu.Lock()
	calls := x.ic.calls
	x.ic.mu.Unlock()
	if calls != 1 {
		t.Fatalf("%d calls to the function at start, want exactly one discover", calls)
	}
}

// --- E. Value entity, proxy tests ---

func TestTCK65ValueEntityStateChanges(t *testing.T) {
	x := startTCK(t)
	client := vemodel.NewValueEntityTckModelClient(x.conn)
	id := "ve-state"
	steps := []struct {
		req   *vemodel.Request
		want  string
		state *valueentity.ValueEntityAction
	}{
		{veReq(id), "", nil},
		{veReq(id, veSet("one")), "one", veUpdate("one")},
		{veReq(id, veSet("two")), "two", veUpdate("two")},
		{veReq(id), "two", nil},
		{veReq(id, veDel()), "", veDelete()},
		{veReq(id), "", nil},
		{veReq(id, veSet("foo")), "foo", veUpdate("foo")},
		{veReq(id, veDel()), "", veDelete()},
	}
	for _, s := range steps {
		resp, err := client.Process(t.Context(), s.req)
		if err != nil || resp.GetMessage() != s.want {
			t.Fatalf("Process(%v) = %v, %v; want %q", s.req, resp, err, s.want)
		}
	}
	conn := x.callOf(veHandle, id)
	x.in(conn, veInit(veModel, id, nil))
	for i, s := range steps {
		n := int64(i + 1)
		x.in(conn, veCmd(id, n, "Process", s.req))
		x.out(conn, veOut(n, replyOf(&vemodel.Response{Message: s.want}), s.state))
	}
	x.noMore()
}

func TestTCK66ValueEntityForwardsAndSideEffects(t *testing.T) {
	x := startTCK(t)
	client := vemodel.NewValueEntityTckModelClient(x.conn)
	id := "ve-forward"
	fwd := &vemodel.RequestAction{Action: &vemodel.RequestAction_Forward{Forward: &vemodel.Forward{Id: id}}}
	eff := &vemodel.RequestAction{Action: &vemodel.RequestAction_Effect{Effect: &vemodel.Effect{Id: id}}}
	for _, s := range []struct {
		req  *vemodel.Request
		want string
	}{{veReq(id, veSet("one")), "one"}, {veReq(id, fwd), ""}, {veReq(id, eff), "one"}, {veReq(id), "one"}} {
		resp, err := client.Process(t.Context(), s.req)
		if err != nil || resp.GetMessage() != s.want {
			t.Fatalf("Process(%v) = %v, %v; want %q", s.req, resp, err, s.want)
		}
	}
	main := x.callOf(veHandle, id)
	x.in(main, veInit(veModel, id, nil))
	x.in(main, veCmd(id, 1, "Process", veReq(id, veSet("one"))))
	x.out(main, veOut(1, replyOf(&vemodel.Response{Message: "one"}), veUpdate("one")))
	x.in(main, veCmd(id, 2, "Process", veReq(id, fwd)))
	x.out(main, veOut(2, forwardTo(veTwo, veReq(id)), nil))
	x.in(main, veCmd(id, 3, "Process", veReq(id, eff)))
	x.out(main, veOut(3, replyOf(&vemodel.Response{Message: "one"}), nil, effect(veTwo, veReq(id), false)))
	x.in(main, veCmd(id, 4, "Process", veReq(id)))
	x.out(main, veOut(4, replyOf(&vemodel.Response{Message: "one"}), nil))

	calls := x.calls(veHandle, id)
	if len(calls) != 2 {
		t.Fatalf("%d value entity streams for %s, want the model's and Two's", len(calls), id)
	}
	two := calls[1]
	x.in(two, veInit(veTwo, id, nil))
	x.in(two, veCmd(id, 1, "Call", veReq(id)))
	x.out(two, veOut(1, replyOf(&vemodel.Response{}), nil))
	x.in(two, veCmd(id, 2, "Call", veReq(id)))
	x.out(two, veOut(2, replyOf(&vemodel.Response{}), nil))
	x.noMore()
}

func TestTCK67ValueEntityFailures(t *testing.T) {
	x := startTCK(t)
	client := vemodel.NewValueEntityTckModelClient(x.conn)
	id := "ve-failure"
	fail := &vemodel.RequestAction{Action: &vemodel.RequestAction_Fail{Fail: &vemodel.Fail{Message: "expected failure"}}}
	if _, err := client.Process(t.Context(), veReq(id, veSet("one"))); err != nil {
		t.Fatal(err)
	}
	_, err := client.Process(t.Context(), veReq(id, fail))
	if s := status.Convert(err); s.Code() != codes.Unknown || s.Message() != "expected failure" {
		t.Fatalf("failure = %v", err)
	}
	if resp, err := client.Process(t.Context(), veReq(id)); err != nil || resp.GetMessage() != "one" {
		t.Fatalf("after failure: %v, %v", resp, err)
	}
	conn := x.callOf(veHandle, id)
	x.in(conn, veInit(veModel, id, nil))
	x.in(conn, veCmd(id, 1, "Process", veReq(id, veSet("one"))))
	x.out(conn, veOut(1, replyOf(&vemodel.Response{Message: "one"}), veUpdate("one")))
	x.in(conn, veCmd(id, 2, "Process", veReq(id, fail)))
	x.out(conn, veOut(2, &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: &cloudstate.Failure{CommandId: 2, Description: "expected failure"}}}, nil))
	x.in(conn, veCmd(id, 3, "Process", veReq(id)))
	x.out(conn, veOut(3, replyOf(&vemodel.Response{Message: "one"}), nil))
	x.noMore()
}

// httpPost posts JSON to the sidecar and returns status and body.
func (x *tck) httpPost(path, body string) (int, string) {
	x.t.Helper()
	resp, err := http.Post("http://"+x.p.Addr().String()+path, "application/json", strings.NewReader(body))
	if err != nil {
		x.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTCK68ValueEntityHTTP(t *testing.T) {
	x := startTCK(t)
	id := "ve-http"
	for _, s := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/tck/model/entity/" + id, `{}`, 200, `{"message":""}`},
		{"/cloudstate.tck.model.valueentity.ValueEntityTwo/Call", `{"id":"` + id + `"}`, 200, `{"message":""}`},
		{"/tck/model/entity/" + id, `{"actions":[{"update":{"value":"one"}}]}`, 200, `{"message":"one"}`},
		{"/tck/model/entity/" + id, `{"actions":[{"fail":{"message":"expected failure"}}]}`, 500, "expected failure"},
		{"/tck/model/entity/" + id, `{"actions":[{"update":{"value":"two"}}]}`, 200, `{"message":"two"}`},
		{"/tck/model/entity/" + id, `{}`, 200, `{"message":"two"}`},
	} {
		if code, body := x.httpPost(s.path, s.body); code != s.code || body != s.want {
			t.Fatalf("POST %s %s = %d %q, want %d %q", s.path, s.body, code, body, s.code, s.want)
		}
	}
	calls := x.calls(veHandle, id)
	if len(calls) != 2 {
		t.Fatalf("%d streams, want 2", len(calls))
	}
	main, two := calls[0], calls[1]
	x.in(main, veInit(veModel, id, nil))
	x.in(main, veCmd(id, 1, "Process", veReq(id)))
	x.out(main, veOut(1, replyOf(&vemodel.Response{}), nil))
	x.in(two, veInit(veTwo, id, nil))
	x.in(two, veCmd(id, 1, "Call", veReq(id)))
	x.out(two, veOut(1, replyOf(&vemodel.Response{}), nil))
	x.in(main, veCmd(id, 2, "Process", veReq(id, veSet("one"))))
	x.out(main, veOut(2, replyOf(&vemodel.Response{Message: "one"}), veUpdate("one")))
	fail := &vemodel.RequestAction{Action: &vemodel.RequestAction_Fail{Fail: &vemodel.Fail{Message: "expected failure"}}}
	x.in(main, veCmd(id, 3, "Process", veReq(id, fail)))
	x.out(main, veOut(3, &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: &cloudstate.Failure{CommandId: 3, Description: "expected failure"}}}, nil))
	x.in(main, veCmd(id, 4, "Process", veReq(id, veSet("two"))))
	x.out(main, veOut(4, replyOf(&vemodel.Response{Message: "two"}), veUpdate("two")))
	x.in(main, veCmd(id, 5, "Process", veReq(id)))
	x.out(main, veOut(5, replyOf(&vemodel.Response{Message: "two"}), nil))
	x.noMore()
}

func TestTCK69ValueEntityPassivation(t *testing.T) {
	x := startTCK(t)
	id := "ve-passivate"
	if _, err := vemodel.NewValueEntityConfiguredClient(x.conn).Call(t.Context(), veReq(id)); err != nil {
		t.Fatal(err)
	}
	conn := x.callOf(veHandle, id)
	x.in(conn, veInit(veConfigured, id, nil))
	x.in(conn, veCmd(id, 1, "Call", veReq(id)))
	x.out(conn, veOut(1, replyOf(&vemodel.Response{}), nil))
	x.closed(conn) // within expectTimeout (the TCK allows 2 s for 100 ms)
	x.noMore()
}

// --- G. Event sourced, proxy tests ---

func TestTCK91EventSourcedStateChanges(t *testing.T) {
	x := startTCK(t)
	client := esmodel.NewEventSourcedTckModelClient(x.conn)
	id := "es-state"
	steps := []struct {
		emit     []string
		want     string
		snapshot string
	}{
		{nil, "", ""},
		{[]string{"A"}, "A", ""},
		{[]string{"B", "C", "D"}, "ABCD", ""},
		{[]string{"E"}, "ABCDE", "ABCDE"},
		{[]string{"F", "G", "H", "I"}, "ABCDEFGHI", ""},
		{[]string{"J", "K"}, "ABCDEFGHIJK", "ABCDEFGHIJK"},
	}
	for _, s := range steps {
		resp, err := client.Process(t.Context(), esReq(id, emit(s.emit...)...))
		if err != nil || resp.GetMessage() != s.want {
			t.Fatalf("emit %v = %v, %v; want %q", s.emit, resp, err, s.want)
		}
	}
	conn := x.callOf(esHandle, id)
	x.in(conn, esInit(esModel, id))
	for i, s := range steps {
		n := int64(i + 1)
		x.in(conn, esCmd(id, n, "Process", esReq(id, emit(s.emit...)...)))
		x.out(conn, esOut(n, replyOf(&esmodel.Response{Message: s.want}), s.emit, s.snapshot))
	}
	x.noMore()
}

func TestTCK92EventSourcedForwardsAndSideEffects(t *testing.T) {
	x := startTCK(t)
	client := esmodel.NewEventSourcedTckModelClient(x.conn)
	id := "es-forward"
	fwd := &esmodel.RequestAction{Action: &esmodel.RequestAction_Forward{Forward: &esmodel.Forward{Id: id}}}
	eff := &esmodel.RequestAction{Action: &esmodel.RequestAction_Effect{Effect: &esmodel.Effect{Id: id}}}
	for _, s := range []struct {
		req  *esmodel.Request
		want string
	}{{esReq(id, emit("one")...), "one"}, {esReq(id, fwd), ""}, {esReq(id, eff), "one"}, {esReq(id), "one"}} {
		resp, err := client.Process(t.Context(), s.req)
		if err != nil || resp.GetMessage() != s.want {
			t.Fatalf("Process(%v) = %v, %v; want %q", s.req, resp, err, s.want)
		}
	}
	main := x.callOf(esHandle, id)
	x.in(main, esInit(esModel, id))
	x.in(main, esCmd(id, 1, "Process", esReq(id, emit("one")...)))
	x.out(main, esOut(1, replyOf(&esmodel.Response{Message: "one"}), []string{"one"}, ""))
	x.in(main, esCmd(id, 2, "Process", esReq(id, fwd)))
	x.out(main, esOut(2, forwardTo(esTwo, esReq(id)), nil, ""))
	x.in(main, esCmd(id, 3, "Process", esReq(id, eff)))
	x.out(main, esOut(3, replyOf(&esmodel.Response{Message: "one"}), nil, "", effect(esTwo, esReq(id), false)))
	x.in(main, esCmd(id, 4, "Process", esReq(id)))
	x.out(main, esOut(4, replyOf(&esmodel.Response{Message: "one"}), nil, ""))
	calls := x.calls(esHandle, id)
	if len(calls) != 2 {
		t.Fatalf("%d streams, want 2", len(calls))
	}
	two := calls[1]
	x.in(two, esInit(esTwo, id))
	x.in(two, esCmd(id, 1, "Call", esReq(id)))
	x.out(two, esOut(1, replyOf(&esmodel.Response{}), nil, ""))
	x.in(two, esCmd(id, 2, "Call", esReq(id)))
	x.out(two, esOut(2, replyOf(&esmodel.Response{}), nil, ""))
	x.noMore()
}

func TestTCK93EventSourcedFailures(t *testing.T) {
	x := startTCK(t)
	client := esmodel.NewEventSourcedTckModelClient(x.conn)
	id := "es-failure"
	mustProcess := func(req *esmodel.Request, want string) {
		t.Helper()
		resp, err := client.Process(t.Context(), req)
		if err != nil || resp.GetMessage() != want {
			t.Fatalf("Process(%v) = %v, %v; want %q", req, resp, err, want)
		}
	}
	mustFail := func(req *esmodel.Request, want string) {
		t.Helper()
		_, err := client.Process(t.Context(), req)
		if s := status.Convert(err); s.Code() != codes.Unknown || s.Message() != want {
			t.Fatalf("Process(%v) = %v, want UNKNOWN %q", req, err, want)
		}
	}
	mustProcess(esReq(id, emit("1", "2", "3")...), "123")
	mustFail(esReq(id, esFail("expected failure")), "expected failure")
	mustProcess(esReq(id), "123")
	mustFail(esReq(id, append(emit("4"), esFail("another failure"), emit("5")[0])...), "another failure")

	conn := x.callOf(esHandle, id)
	x.in(conn, esInit(esModel, id))
	x.in(conn, esCmd(id, 1, "Process", esReq(id, emit("1", "2", "3")...)))
	x.out(conn, esOut(1, replyOf(&esmodel.Response{Message: "123"}), []string{"1", "2", "3"}, ""))
	x.in(conn, esCmd(id, 2, "Process", esReq(id, esFail("expected failure"))))
	x.out(conn, esOut(2, &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: &cloudstate.Failure{CommandId: 2, Description: "expected failure"}}}, nil, ""))
	x.in(conn, esCmd(id, 3, "Process", esReq(id)))
	x.out(conn, esOut(3, replyOf(&esmodel.Response{Message: "123"}), nil, ""))
	x.in(conn, esCmd(id, 4, "Process", esReq(id, append(emit("4"), esFail("another failure"), emit("5")[0])...)))
	x.out(conn, esOut(4, &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: &cloudstate.Failure{CommandId: 4, Description: "another failure", Restart: true}}}, nil, ""))
	// restart=true: the stream is closed and a new one replays at once,
	// before any further request.
	x.closed(conn)
	again := x.nthCall(esHandle, id, 2)
	x.in(again, esInit(esModel, id))
	x.in(again, esEvent(1, "1"))
	x.in(again, esEvent(2, "2"))
	x.in(again, esEvent(3, "3"))
	mustProcess(esReq(id, emit("4", "5")...), "12345")
	x.in(again, esCmd(id, 1, "Process", esReq(id, emit("4", "5")...)))
	x.out(again, esOut(1, replyOf(&esmodel.Response{Message: "12345"}), []string{"4", "5"}, "12345"))
	x.noMore()
}

func TestTCK94EventSourcedHTTP(t *testing.T) {
	x := startTCK(t)
	id := "es-http"
	for _, s := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/tck/model/eventsourced/" + id, `{}`, 200, `{"message":""}`},
		{"/cloudstate.tck.model.EventSourcedTwo/Call", `{"id":"` + id + `"}`, 200, `{"message":""}`},
		{"/tck/model/eventsourced/" + id, `{"actions":[{"emit":{"value":"x"}}]}`, 200, `{"message":"x"}`},
		{"/tck/model/eventsourced/" + id, `{"actions":[{"fail":{"message":"expected failure"}}]}`, 500, "expected failure"},
		{"/tck/model/eventsourced/" + id, `{"actions":[{"emit":{"value":"y"}}]}`, 200, `{"message":"xy"}`},
		{"/tck/model/eventsourced/" + id, `{"actions":[{"emit":{"value":"z"}},{"fail":{"message":"emit then fail"}}]}`, 500, "emit then fail"},
		{"/tck/model/eventsourced/" + id, `{"actions":[{"emit":{"value":"z"}}]}`, 200, `{"message":"xyz"}`},
	} {
		if code, body := x.httpPost(s.path, s.body); code != s.code || body != s.want {
			t.Fatalf("POST %s %s = %d %q, want %d %q", s.path, s.body, code, body, s.code, s.want)
		}
	}
	calls := x.calls(esHandle, id)
	if len(calls) != 3 {
		t.Fatalf("%d streams, want the model's, Two's and the model's after the restart", len(calls))
	}
	main, two, again := calls[0], calls[1], calls[2]
	x.in(main, esInit(esModel, id))
	x.in(main, esCmd(id, 1, "Process", esReq(id)))
	x.out(main, esOut(1, replyOf(&esmodel.Response{}), nil, ""))
	x.in(two, esInit(esTwo, id))
	x.in(two, esCmd(id, 1, "Call", esReq(id)))
	x.out(two, esOut(1, replyOf(&esmodel.Response{}), nil, ""))
	x.in(main, esCmd(id, 2, "Process", esReq(id, emit("x")...)))
	x.out(main, esOut(2, replyOf(&esmodel.Response{Message: "x"}), []string{"x"}, ""))
	x.in(main, esCmd(id, 3, "Process", esReq(id, esFail("expected failure"))))
	x.out(main, esOut(3, &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: &cloudstate.Failure{CommandId: 3, Description: "expected failure"}}}, nil, ""))
	x.in(main, esCmd(id, 4, "Process", esReq(id, emit("y")...)))
	x.out(main, esOut(4, replyOf(&esmodel.Response{Message: "xy"}), []string{"y"}, ""))
	x.in(main, esCmd(id, 5, "Process", esReq(id, append(emit("z"), esFail("emit then fail"))...)))
	x.out(main, esOut(5, &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: &cloudstate.Failure{CommandId: 5, Description: "emit then fail", Restart: true}}}, nil, ""))
	x.closed(main)
	x.in(again, esInit(esModel, id))
	x.in(again, esEvent(1, "x"))
	x.in(again, esEvent(2, "y"))
	x.in(again, esCmd(id, 1, "Process", esReq(id, emit("z")...)))
	x.out(again, esOut(1, replyOf(&esmodel.Response{Message: "xyz"}), []string{"z"}, ""))
	x.noMore()
}

func TestTCK95EventSourcedPassivation(t *testing.T) {
	x := startTCK(t)
	id := "es-passivate"
	if _, err := esmodel.NewEventSourcedConfiguredClient(x.conn).Call(t.Context(), esReq(id)); err != nil {
		t.Fatal(err)
	}
	conn := x.callOf(esHandle, id)
	x.in(conn, esInit(esConfigured, id))
	x.in(conn, esCmd(id, 1, "Call", esReq(id)))
	x.out(conn, esOut(1, replyOf(&esmodel.Response{}), nil, ""))
	x.closed(conn)
	x.noMore()
}

// --- 2. Server reflection ---

func TestTCK02Reflection(t *testing.T) {
	x := startTCK(t)
	stream, err := rpb.NewServerReflectionClient(x.conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"grpc.reflection.v1alpha.ServerReflection", esConfigured, esModel, esTwo, acModel, acTwo, crConfigured, crModel, crTwo, veConfigured, veModel, veTwo}
	for _, filter := range []string{"", "nonsense.blabla."} {
		if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{ListServices: filter}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			got = append(got, s.GetName())
		}
		if !slices.Equal(got, want) {
			t.Fatalf("ListServices(%q) = %v, want %v", filter, got, want)
		}
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "nonsense.blabla.Void"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || resp.GetFileDescriptorResponse() == nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) != 0 {
		t.Fatalf("unknown symbol = %v, %v; want an empty file list", resp, err)
	}
	x.noMore() // reflection never reaches the function
}
