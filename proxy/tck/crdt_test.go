package tck_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	crmodel "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/crdt"
)

// --- I. CRDT, proxy tests (items 178-183) ---

// crProcess calls Process and expects want.
func (x *tck) crProcess(req *crmodel.Request, want *crmodel.Response) {
	x.t.Helper()
	got, err := crmodel.NewCrdtTckModelClient(x.conn).Process(x.t.Context(), req)
	if err != nil {
		x.t.Fatalf("Process(%v): %v", req, err)
	}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		x.t.Fatalf("Process(%v) (-want +got):\n%s", req, d)
	}
}

func TestTCK178CRDTStateChanges(t *testing.T) {
	x := startTCK(t)
	id := "PNCounter-178"
	steps := []struct {
		req   *crmodel.Request
		want  *crmodel.Response
		state *crdt.CrdtStateAction
	}{
		{crReq(id), stPNCounter(0), nil},
		{crReq(id, changeBy(1, -2, 3)...), stPNCounter(2), crUpdate(dPNCounter(2))},
		{crReq(id, changeBy(4, -5, 6)...), stPNCounter(7), crUpdate(dPNCounter(5))},
		{crReq(id, crDel()), stPNCounter(7), crDeleted()},
	}
	for _, s := range steps {
		x.crProcess(s.req, s.want)
	}
	conn := x.callOf(crHandle, id)
	x.in(conn, crInit(crModel, id, nil))
	for i, s := range steps {
		n := int64(i + 1)
		x.in(conn, crCmd(id, n, "Process", s.req))
		x.out(conn, crOut(n, replyOf(s.want), s.state))
	}
	x.closed(conn) // a delete ends the entity's stream
	x.noMore()
}

func TestTCK179CRDTForwardsAndSideEffects(t *testing.T) {
	x := startTCK(t)
	id := "GSet-179"
	x.crProcess(crReq(id, gsetAdd("one")...), stGSet("one"))
	x.crProcess(crReq(id, crFwd(id)), &crmodel.Response{}) // CrdtTwo's answer
	x.crProcess(crReq(id, crEff(id, false)), stGSet("one"))
	x.crProcess(crReq(id, crDel()), stGSet("one"))

	main := x.callOf(crHandle, id)
	x.in(main, crInit(crModel, id, nil))
	x.in(main, crCmd(id, 1, "Process", crReq(id, gsetAdd("one")...)))
	x.out(main, crOut(1, replyOf(stGSet("one")), crUpdate(dGSet("one"))))
	x.in(main, crCmd(id, 2, "Process", crReq(id, crFwd(id))))
	x.out(main, crOut(2, forwardTo(crTwo, crReq(id)), nil))
	x.in(main, crCmd(id, 3, "Process", crReq(id, crEff(id, false))))
	x.out(main, crOut(3, replyOf(stGSet("one")), nil, effect(crTwo, crReq(id), false)))
	x.in(main, crCmd(id, 4, "Process", crReq(id, crDel())))
	x.out(main, crOut(4, replyOf(stGSet("one")), crDeleted()))
	x.closed(main)

	two := x.nthCall(crHandle, id, 2)
	x.in(two, crInit(crTwo, id, nil))
	x.in(two, crCmd(id, 1, "Call", crReq(id)))
	x.out(two, crOut(1, replyOf(&crmodel.Response{}), nil))
	x.in(two, crCmd(id, 2, "Call", crReq(id)))
	x.out(two, crOut(2, replyOf(&crmodel.Response{}), nil))

	resp, err := crmodel.NewCrdtTwoClient(x.conn).Call(t.Context(), crReq(id, crDel()))
	if err != nil || !proto.Equal(resp, &crmodel.Response{}) {
		t.Fatalf("CrdtTwo.Call(delete) = %v, %v; want an empty Response", resp, err)
	}
	x.in(two, crCmd(id, 3, "Call", crReq(id, crDel())))
	x.out(two, crOut(3, replyOf(&crmodel.Response{}), crDeleted()))
	x.closed(two)
	x.noMore()
}

func TestTCK180CRDTFailures(t *testing.T) {
	x := startTCK(t)
	id := "GCounter-180"
	x.crProcess(crReq(id, incrementBy(42)...), stGCounter(42))
	_, err := crmodel.NewCrdtTckModelClient(x.conn).Process(t.Context(), crReq(id, crFail("expected failure")))
	if s := status.Convert(err); s.Code() != codes.Unknown || s.Message() != "expected failure" {
		t.Fatalf("failure = %v, want UNKNOWN %q", err, "expected failure")
	}
	x.crProcess(crReq(id, crDel()), stGCounter(42))

	conn := x.callOf(crHandle, id)
	x.in(conn, crInit(crModel, id, nil))
	x.in(conn, crCmd(id, 1, "Process", crReq(id, incrementBy(42)...)))
	x.out(conn, crOut(1, replyOf(stGCounter(42)), crUpdate(dGCounter(42))))
	x.in(conn, crCmd(id, 2, "Process", crReq(id, crFail("expected failure"))))
	x.out(conn, crFailure(2, "expected failure"))
	x.in(conn, crCmd(id, 3, "Process", crReq(id, crDel())))
	x.out(conn, crOut(3, replyOf(stGCounter(42)), crDeleted()))
	x.closed(conn)
	x.noMore()
}

func TestTCK181CRDTStreamedConnectionTracking(t *testing.T) {
	x := startTCK(t)
	client := crmodel.NewCrdtTckModelClient(x.conn)
	id := "Vote-181"
	state0, state1 := stVote(false, 0, 1), stVote(true, 1, 1)
	next := func(s interface {
		Recv() (*crmodel.Response, error)
	}, want *crmodel.Response) {
		t.Helper()
		got, err := s.Recv()
		if err != nil {
			t.Fatalf("want %v: %v", want, err)
		}
		if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
			t.Fatalf("streamed (-want +got):\n%s", d)
		}
	}

	monitorCtx, cancelMonitor := context.WithCancel(t.Context())
	defer cancelMonitor()
	monitorReq := &crmodel.StreamedRequest{Id: id}
	monitor, err := client.ProcessStreamed(monitorCtx, monitorReq)
	if err != nil {
		t.Fatal(err)
	}
	next(monitor, state0)
	conn := x.callOf(crHandle, id)
	x.in(conn, crInit(crModel, id, nil))
	x.in(conn, crStreamedCmd(id, 1, monitorReq))
	x.out(conn, crStreamedOut(1, replyOf(state0), nil))

	// The connection votes while it is open and streams nothing.
	connectCtx, cancelConnect := context.WithCancel(t.Context())
	defer cancelConnect()
	connectReq := &crmodel.StreamedRequest{Id: id, InitialUpdate: uVote(true), CancelUpdate: uVote(false), Empty: true}
	connect, err := client.ProcessStreamed(connectCtx, connectReq)
	if err != nil {
		t.Fatal(err)
	}
	received := make(chan *crmodel.Response)
	go func() { // ends when the connection is cancelled
		defer close(received)
		for {
			r, err := connect.Recv()
			if err != nil {
				return
			}
			received <- r
		}
	}()
	select {
	case r := <-received:
		t.Fatalf("the empty stream received %v", r)
	case <-time.After(100 * time.Millisecond):
	}
	next(monitor, state1)
	x.in(conn, crStreamedCmd(id, 2, connectReq))
	x.out(conn, crStreamedOut(2, nil, crUpdate(dVote(true, 0, 0))))
	x.out(conn, crStreamed(1, state1, false))

	cancelConnect()
	for r := range received {
		t.Fatalf("the empty stream received %v", r)
	}
	next(monitor, state0)
	x.in(conn, crCancelled(id, 2))
	x.out(conn, crCancelledOut(2, crUpdate(dVote(false, 0, 0))))
	x.out(conn, crStreamed(1, state0, false))

	cancelMonitor()
	x.in(conn, crCancelled(id, 1))
	x.out(conn, crCancelledOut(1, nil))

	deleteReq := crReq(id, crDel())
	x.crProcess(deleteReq, state0)
	x.in(conn, crCmd(id, 3, "Process", deleteReq))
	x.out(conn, crOut(3, replyOf(state0), crDeleted()))
	x.closed(conn)
	x.noMore()
}

func TestTCK182CRDTHTTP(t *testing.T) {
	x := startTCK(t)
	id := "PNCounter-182"
	for _, s := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/tck/model/crdt/" + id, `{}`, 200, `{"state":{"pncounter":{"value":"0"}}}`},
		{"/cloudstate.tck.model.crdt.CrdtTwo/Call", `{"id":"` + id + `"}`, 200, `{}`},
		{"/tck/model/crdt/" + id, `{"actions":[{"update":{"pncounter":{"change":42}}}]}`, 200, `{"state":{"pncounter":{"value":"42"}}}`},
		{"/tck/model/crdt/" + id, `{"actions":[{"fail":{"message":"expected failure"}}]}`, 500, "expected failure"},
		{"/tck/model/crdt/" + id, `{"actions":[{"update":{"pncounter":{"change":-123}}}]}`, 200, `{"state":{"pncounter":{"value":"-81"}}}`},
		{"/tck/model/crdt/" + id, `{"actions":[{"delete":{}}]}`, 200, `{"state":{"pncounter":{"value":"-81"}}}`},
	} {
		if code, body := x.httpPost(s.path, s.body); code != s.code || body != s.want {
			t.Fatalf("POST %s %s = %d %q, want %d %q", s.path, s.body, code, body, s.code, s.want)
		}
	}
	calls := x.calls(crHandle, id)
	if len(calls) != 2 {
		t.Fatalf("%d streams, want the model's and Two's", len(calls))
	}
	main, two := calls[0], calls[1]
	x.in(main, crInit(crModel, id, nil))
	x.in(main, crCmd(id, 1, "Process", crReq(id)))
	x.out(main, crOut(1, replyOf(stPNCounter(0)), nil))
	x.in(two, crInit(crTwo, id, nil))
	x.in(two, crCmd(id, 1, "Call", crReq(id)))
	x.out(two, crOut(1, replyOf(&crmodel.Response{}), nil))
	x.in(main, crCmd(id, 2, "Process", crReq(id, changeBy(42)...)))
	x.out(main, crOut(2, replyOf(stPNCounter(42)), crUpdate(dPNCounter(42))))
	x.in(main, crCmd(id, 3, "Process", crReq(id, crFail("expected failure"))))
	x.out(main, crFailure(3, "expected failure"))
	x.in(main, crCmd(id, 4, "Process", crReq(id, changeBy(-123)...)))
	x.out(main, crOut(4, replyOf(stPNCounter(-81)), crUpdate(dPNCounter(-123))))
	x.in(main, crCmd(id, 5, "Process", crReq(id, crDel())))
	x.out(main, crOut(5, replyOf(stPNCounter(-81)), crDeleted()))
	x.closed(main)
	x.noMore()
}

func TestTCK183CRDTPassivation(t *testing.T) {
	x := startTCK(t)
	id := "Configured-183"
	if _, err := crmodel.NewCrdtConfiguredClient(x.conn).Call(t.Context(), crReq(id)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	conn := x.callOf(crHandle, id)
	x.in(conn, crInit(crConfigured, id, nil))
	x.in(conn, crCmd(id, 1, "Call", crReq(id)))
	x.out(conn, crOut(1, replyOf(&crmodel.Response{}), nil))
	x.closed(conn)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("passivated after %v, want within 2s of a 100 ms timeout", d)
	}
	x.noMore()
}
