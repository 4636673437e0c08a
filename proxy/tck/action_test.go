package tck_test

import (
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/action"
	acmodel "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/action"
)

const (
	acUnary       = action.ActionProtocol_HandleUnary_FullMethodName
	acStreamedIn  = action.ActionProtocol_HandleStreamedIn_FullMethodName
	acStreamedOut = action.ActionProtocol_HandleStreamedOut_FullMethodName
	acStreamed    = action.ActionProtocol_HandleStreamed_FullMethodName
)

// --- message builders, in the TCK's notation ---

// acGroups is a Request of several groups; acSingle one of a single group.
func acGroups(groups ...[]*acmodel.ProcessStep) *acmodel.Request {
	req := &acmodel.Request{}
	for _, g := range groups {
		req.Groups = append(req.Groups, &acmodel.ProcessGroup{Steps: g})
	}
	return req
}

func acSingle(steps ...*acmodel.ProcessStep) *acmodel.Request { return acGroups(steps) }

func acReplyStep(m string) *acmodel.ProcessStep {
	return &acmodel.ProcessStep{Step: &acmodel.ProcessStep_Reply{Reply: &acmodel.Reply{Message: m}}}
}

func acForwardStep(id string) *acmodel.ProcessStep {
	return &acmodel.ProcessStep{Step: &acmodel.ProcessStep_Forward{Forward: &acmodel.Forward{Id: id}}}
}

func acEffectStep(id string, sync bool) *acmodel.ProcessStep {
	return &acmodel.ProcessStep{Step: &acmodel.ProcessStep_Effect{Effect: &acmodel.SideEffect{Id: id, Synchronous: sync}}}
}

func acFailStep(m string) *acmodel.ProcessStep {
	return &acmodel.ProcessStep{Step: &acmodel.ProcessStep_Fail{Fail: &acmodel.Fail{Message: m}}}
}

// acCommand is a command to service/name; without payload it is the first
// message of a stream.
func acCommand(service, name string, payload proto.Message) *action.ActionCommand {
	cmd := &action.ActionCommand{ServiceName: service, Name: name}
	if payload != nil {
		cmd.Payload = anyOf(payload)
	}
	return cmd
}

// acPayload is a stream's message after the first: the payload alone.
func acPayload(req *acmodel.Request) *action.ActionCommand {
	return &action.ActionCommand{Payload: anyOf(req)}
}

// acTwoCall is the command of a forward or side effect to ActionTwo.
func acTwoCall(id string) *action.ActionCommand {
	return acCommand(acTwo, "Call", &acmodel.OtherRequest{Id: id})
}

func acEffect(id string, sync bool) *cloudstate.SideEffect {
	return effect(acTwo, &acmodel.OtherRequest{Id: id}, sync)
}

func acReply(m string, effects ...*cloudstate.SideEffect) *action.ActionResponse {
	return &action.ActionResponse{Response: &action.ActionResponse_Reply{Reply: &cloudstate.Reply{
		Payload: anyOf(&acmodel.Response{Message: m})}}, SideEffects: effects}
}

func acForwarded(id string, effects ...*cloudstate.SideEffect) *action.ActionResponse {
	return &action.ActionResponse{Response: &action.ActionResponse_Forward{Forward: &cloudstate.Forward{
		ServiceName: acTwo, CommandName: "Call", Payload: anyOf(&acmodel.OtherRequest{Id: id})}}, SideEffects: effects}
}

func acFailure(desc string, effects ...*cloudstate.SideEffect) *action.ActionResponse {
	return &action.ActionResponse{Response: &action.ActionResponse_Failure{Failure: &cloudstate.Failure{Description: desc}}, SideEffects: effects}
}

func acNoReply(effects ...*cloudstate.SideEffect) *action.ActionResponse {
	return &action.ActionResponse{SideEffects: effects}
}

// before fails the test unless event a was recorded before event b.
func before(t *testing.T, a, b int, what string) {
	t.Helper()
	if a >= b {
		t.Fatalf("%s: event %d is not before event %d", what, a, b)
	}
}

// expectTwoCall expects the next unary call to be ActionTwo/Call(id),
// answered with an empty Response; it returns the indexes of the command
// and of the answer.
func (x *tck) expectTwoCall(id string) (int, int) {
	x.t.Helper()
	call := x.nextCall(acUnary)
	cmd := x.in(call, acTwoCall(id))
	answer := x.out(call, acReply(""))
	x.closed(call)
	return cmd, answer
}

// --- C. Action, proxy tests (items 37-45) ---

func TestTCKActionProxy(t *testing.T) {
	t.Run("37 unary", func(t *testing.T) {
		x := startTCK(t)
		req := acSingle(acReplyStep("one"))
		resp, err := acmodel.NewActionTckModelClient(x.conn).ProcessUnary(t.Context(), req)
		if err != nil || resp.GetMessage() != "one" {
			t.Fatalf("ProcessUnary = %v, %v; want one", resp, err)
		}
		call := x.nextCall(acUnary)
		x.in(call, acCommand(acModel, "ProcessUnary", req))
		x.out(call, acReply("one"))
		x.closed(call)
		x.noMore()
	})

	t.Run("38 streamed in", func(t *testing.T) {
		x := startTCK(t)
		stream, err := acmodel.NewActionTckModelClient(x.conn).ProcessStreamedIn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		req := acSingle(acReplyStep("two"))
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.CloseAndRecv()
		if err != nil || resp.GetMessage() != "two" {
			t.Fatalf("ProcessStreamedIn = %v, %v; want two", resp, err)
		}
		call := x.nextCall(acStreamedIn)
		x.in(call, acCommand(acModel, "ProcessStreamedIn", nil))
		x.in(call, acPayload(req))
		x.ended(call, true) // the function answers only after the end of the input
		x.out(call, acReply("two"))
		x.ended(call, false)
		x.noMore()
	})

	t.Run("39 streamed out", func(t *testing.T) {
		x := startTCK(t)
		req := acGroups([]*acmodel.ProcessStep{acReplyStep("A")}, []*acmodel.ProcessStep{acReplyStep("B")}, []*acmodel.ProcessStep{acReplyStep("C")})
		stream, err := acmodel.NewActionTckModelClient(x.conn).ProcessStreamedOut(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"A", "B", "C"} {
			if resp, err := stream.Recv(); err != nil || resp.GetMessage() != want {
				t.Fatalf("ProcessStreamedOut: got %v, %v; want %s", resp, err, want)
			}
		}
		if resp, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("ProcessStreamedOut after C: %v, %v; want the end", resp, err)
		}
		call := x.nextCall(acStreamedOut)
		x.in(call, acCommand(acModel, "ProcessStreamedOut", req))
		x.out(call, acReply("A"))
		x.out(call, acReply("B"))
		x.out(call, acReply("C"))
		x.closed(call)
		x.noMore()
	})

	t.Run("40 streamed", func(t *testing.T) {
		x := startTCK(t)
		stream, err := acmodel.NewActionTckModelClient(x.conn).ProcessStreamed(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		// One request at a time, so that the recorded order is exact (the
		// TCK sends all three; its interleaving is the same).
		msgs := []string{"X", "Y", "Z"}
		for _, m := range msgs {
			if err := stream.Send(acSingle(acReplyStep(m))); err != nil {
				t.Fatal(err)
			}
			if resp, err := stream.Recv(); err != nil || resp.GetMessage() != m {
				t.Fatalf("ProcessStreamed: got %v, %v; want %s", resp, err, m)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if resp, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("ProcessStreamed after Z: %v, %v; want the end", resp, err)
		}
		call := x.nextCall(acStreamed)
		x.in(call, acCommand(acModel, "ProcessStreamed", nil))
		for _, m := range msgs {
			x.in(call, acPayload(acSingle(acReplyStep(m))))
			x.out(call, acReply(m))
		}
		x.closed(call)
		x.noMore()
	})

	t.Run("41 unary forwards and side effects", func(t *testing.T) {
		x := startTCK(t)
		client := acmodel.NewActionTckModelClient(x.conn)
		process := func(req *acmodel.Request, want string) {
			t.Helper()
			if resp, err := client.ProcessUnary(t.Context(), req); err != nil || resp.GetMessage() != want {
				t.Fatalf("ProcessUnary(%v) = %v, %v; want %q", req, resp, err, want)
			}
		}

		// A forward: the client gets ActionTwo's reply.
		fwd := acSingle(acForwardStep("other"))
		process(fwd, "")
		main := x.nextCall(acUnary)
		x.in(main, acCommand(acModel, "ProcessUnary", fwd))
		forwarded := x.out(main, acForwarded("other"))
		x.closed(main)
		cmd, _ := x.expectTwoCall("other")
		before(t, forwarded, cmd, "the forward is called after the function answered")

		// An asynchronous side effect: started after the function's answer.
		async := acSingle(acReplyStep(""), acEffectStep("another", false))
		process(async, "")
		main = x.nextCall(acUnary)
		x.in(main, acCommand(acModel, "ProcessUnary", async))
		replied := x.out(main, acReply("", acEffect("another", false)))
		x.closed(main)
		cmd, _ = x.expectTwoCall("another")
		before(t, replied, cmd, "the side effect is called after the function answered")

		// A synchronous side effect (beyond the TCK's item): done before the
		// client has its reply.
		sync := acSingle(acReplyStep("three"), acEffectStep("sync", true))
		process(sync, "three")
		clientReplied := x.mark()
		main = x.nextCall(acUnary)
		x.in(main, acCommand(acModel, "ProcessUnary", sync))
		replied = x.out(main, acReply("three", acEffect("sync", true)))
		x.closed(main)
		cmd, answer := x.expectTwoCall("sync")
		before(t, replied, cmd, "the side effect is called after the function answered")
		before(t, answer, clientReplied, "the synchronous side effect is done before the client's reply")
		x.noMore()
	})

	t.Run("42 streamed forwards and side effects", func(t *testing.T) {
		x := startTCK(t)
		stream, err := acmodel.NewActionTckModelClient(x.conn).ProcessStreamed(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		fwd := acSingle(acForwardStep("one"))
		if err := stream.Send(fwd); err != nil {
			t.Fatal(err)
		}
		if resp, err := stream.Recv(); err != nil || resp.GetMessage() != "" {
			t.Fatalf("forward: got %v, %v; want an empty Response", resp, err)
		}
		main := x.nextCall(acStreamed)
		x.in(main, acCommand(acModel, "ProcessStreamed", nil))
		x.in(main, acPayload(fwd))
		forwarded := x.out(main, acForwarded("one"))
		cmd, _ := x.expectTwoCall("one")
		before(t, forwarded, cmd, "the forward is called after the function answered")

		// A side effect without a reply: nothing reaches the client.
		eff := acSingle(acEffectStep("two", false))
		if err := stream.Send(eff); err != nil {
			t.Fatal(err)
		}
		x.in(main, acPayload(eff))
		answered := x.out(main, acNoReply(acEffect("two", false)))
		cmd, _ = x.expectTwoCall("two")
		before(t, answered, cmd, "the side effect is called after the function answered")

		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if resp, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the side effect: %v, %v; want the end (no reply)", resp, err)
		}
		x.closed(main)
		x.noMore()
	})

	t.Run("43 unary failure", func(t *testing.T) {
		x := startTCK(t)
		req := acSingle(acFailStep("expected failure"))
		_, err := acmodel.NewActionTckModelClient(x.conn).ProcessUnary(t.Context(), req)
		if s := status.Convert(err); s.Code() != codes.Unknown || s.Message() != "expected failure" {
			t.Fatalf("ProcessUnary = %v, want UNKNOWN expected failure", err)
		}
		call := x.nextCall(acUnary)
		x.in(call, acCommand(acModel, "ProcessUnary", req))
		x.out(call, acFailure("expected failure"))
		x.closed(call)
		x.noMore()
	})

	t.Run("44 streamed failure", func(t *testing.T) {
		x := startTCK(t)
		stream, err := acmodel.NewActionTckModelClient(x.conn).ProcessStreamed(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		// The function's stream opens with the client's, before any request.
		main := x.nextCall(acStreamed)
		x.in(main, acCommand(acModel, "ProcessStreamed", nil))

		req := acSingle(acFailStep("expected failure"))
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if s := status.Convert(err); s.Code() != codes.Unknown || s.Message() != "expected failure" {
			t.Fatalf("ProcessStreamed = %v, %v; want UNKNOWN expected failure", resp, err)
		}
		// The client's requests are cancelled: the call is over.
		if err := stream.Send(acSingle(acReplyStep("late"))); !errors.Is(err, io.EOF) {
			t.Fatalf("a request after the failure: %v, want io.EOF (the call has ended)", err)
		}
		x.in(main, acPayload(req))
		x.out(main, acFailure("expected failure"))
		x.closed(main) // the sidecar ends the function's stream too
		x.noMore()
	})

	t.Run("45 unary HTTP", func(t *testing.T) {
		x := startTCK(t)
		for _, s := range []struct {
			body   string
			req    *acmodel.Request
			code   int
			want   string
			answer *action.ActionResponse
		}{
			{`{"groups": [{"steps": [{"reply": {"message": "foo"}}]}]}`, acSingle(acReplyStep("foo")), 200, `{"message":"foo"}`, acReply("foo")},
			{`{"groups": [{"steps": [{"fail": {"message": "boom"}}]}]}`, acSingle(acFailStep("boom")), 500, "boom", acFailure("boom")},
		} {
			if code, body := x.httpPost("/tck/model/action/unary", s.body); code != s.code || body != s.want {
				t.Fatalf("POST %s = %d %q, want %d %q", s.body, code, body, s.code, s.want)
			}
			call := x.nextCall(acUnary)
			x.in(call, acCommand(acModel, "ProcessUnary", s.req))
			x.out(call, s.answer)
			x.closed(call)
		}
		x.noMore()
	})
}
