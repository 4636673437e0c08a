package sdk_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	pb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	act "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/action"
	"github.com/jetstate/jetstate/sdk"
)

// The TCK's action model (spec section 4.2 B), implemented with the sdk.

const (
	actionModel = "cloudstate.tck.model.action.ActionTckModel"
	actionTwo   = "cloudstate.tck.model.action.ActionTwo"
)

func actionModelEntity() *sdk.Action {
	a := sdk.NewAction(sdk.ActionConfig{ServiceName: actionModel})
	sdk.HandleUnary(a, "ProcessUnary", func(ctx *sdk.ActionContext, in *act.Request) (*act.Response, error) {
		var out *act.Response
		for _, g := range in.GetGroups() {
			if r := processGroup(ctx, g); r != nil {
				out = r
			}
		}
		return out, nil
	})
	sdk.HandleStreamedIn(a, "ProcessStreamedIn", func(ctx *sdk.ActionContext, recv func() (*act.Request, error)) (*act.Response, error) {
		var out *act.Response
		for {
			in, err := recv()
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if err != nil {
				return nil, err
			}
			for _, g := range in.GetGroups() {
				if r := processGroup(ctx, g); r != nil {
					out = r
				}
			}
		}
	})
	sdk.HandleStreamedOut(a, "ProcessStreamedOut", func(ctx *sdk.ActionContext, in *act.Request, send func(*act.Response) error) error {
		for _, g := range in.GetGroups() {
			if err := send(processGroup(ctx, g)); err != nil {
				return err
			}
		}
		return nil
	})
	sdk.HandleStreamed(a, "ProcessStreamed", func(ctx *sdk.ActionContext, recv func() (*act.Request, error), send func(*act.Response) error) error {
		for {
			in, err := recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			for _, g := range in.GetGroups() {
				if err := send(processGroup(ctx, g)); err != nil {
					return err
				}
			}
		}
	})
	return a
}

// processGroup carries out a group's steps and returns its reply, nil for none.
func processGroup(ctx *sdk.ActionContext, g *act.ProcessGroup) *act.Response {
	var out *act.Response
	for _, s := range g.GetSteps() {
		switch s := s.GetStep().(type) {
		case *act.ProcessStep_Reply:
			out = &act.Response{Message: s.Reply.GetMessage()}
		case *act.ProcessStep_Forward:
			ctx.Forward(actionTwo, "Call", &act.OtherRequest{Id: s.Forward.GetId()})
		case *act.ProcessStep_Fail:
			ctx.Fail(s.Fail.GetMessage())
		case *act.ProcessStep_Effect:
			ctx.SideEffect(actionTwo, "Call", &act.OtherRequest{Id: s.Effect.GetId()}, s.Effect.GetSynchronous())
		}
	}
	return out
}

func actionTwoEntity() *sdk.Action {
	a := sdk.NewAction(sdk.ActionConfig{ServiceName: actionTwo})
	sdk.HandleUnary(a, "Call", func(*sdk.ActionContext, *act.OtherRequest) (*act.Response, error) { return &act.Response{}, nil })
	return a
}

// Steps and responses in the TCK's notation.

func group(steps ...*act.ProcessStep) *act.ProcessGroup { return &act.ProcessGroup{Steps: steps} }

func areq(groups ...*act.ProcessGroup) *act.Request { return &act.Request{Groups: groups} }

func sReply(m string) *act.ProcessStep {
	return &act.ProcessStep{Step: &act.ProcessStep_Reply{Reply: &act.Reply{Message: m}}}
}

func sForward(id string) *act.ProcessStep {
	return &act.ProcessStep{Step: &act.ProcessStep_Forward{Forward: &act.Forward{Id: id}}}
}

func sFail(m string) *act.ProcessStep {
	return &act.ProcessStep{Step: &act.ProcessStep_Fail{Fail: &act.Fail{Message: m}}}
}

func sEffect(id string, synchronous bool) *act.ProcessStep {
	return &act.ProcessStep{Step: &act.ProcessStep_Effect{Effect: &act.SideEffect{Id: id, Synchronous: synchronous}}}
}

func aEffect(id string, synchronous bool) *cloudstate.SideEffect {
	return &cloudstate.SideEffect{ServiceName: actionTwo, CommandName: "Call", Payload: anyOf(&act.OtherRequest{Id: id}), Synchronous: synchronous}
}

func aReply(m string, effects ...*cloudstate.SideEffect) *pb.ActionResponse {
	return &pb.ActionResponse{Response: &pb.ActionResponse_Reply{Reply: &cloudstate.Reply{Payload: anyOf(&act.Response{Message: m})}}, SideEffects: effects}
}

func aForward(id string, effects ...*cloudstate.SideEffect) *pb.ActionResponse {
	return &pb.ActionResponse{Response: &pb.ActionResponse_Forward{Forward: &cloudstate.Forward{
		ServiceName: actionTwo, CommandName: "Call", Payload: anyOf(&act.OtherRequest{Id: id}),
	}}, SideEffects: effects}
}

func aFailure(d string, effects ...*cloudstate.SideEffect) *pb.ActionResponse {
	return &pb.ActionResponse{Response: &pb.ActionResponse_Failure{Failure: &cloudstate.Failure{Description: d}}, SideEffects: effects}
}

func aNone(effects ...*cloudstate.SideEffect) *pb.ActionResponse {
	return &pb.ActionResponse{SideEffects: effects}
}

func unaryCmd(r *act.Request) *pb.ActionCommand {
	return &pb.ActionCommand{ServiceName: actionModel, Name: "ProcessUnary", Payload: anyOf(r)}
}

func expectResponse(t *testing.T, want, got *pb.ActionResponse) {
	t.Helper()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("unexpected response (-want +got):\n%s", diff)
	}
}

func expectCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if s, _ := status.FromError(err); s.Code() != code || s.Message() != msg {
		t.Fatalf("error %v, want %v %q", err, code, msg)
	}
}

// TestAction follows the TCK's action model tests (spec section 4.2, items 4-36).
func TestAction(t *testing.T) {
	conn := serve(t, sdk.Config{}, actionModelEntity(), actionTwoEntity())
	client := pb.NewActionProtocolClient(conn)

	t.Run("unary", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			req  *act.Request
			want *pb.ActionResponse
		}{
			{"reply", areq(group(sReply("one"))), aReply("one")},                                                                   // 4
			{"reply and side effect", areq(group(sReply("one"), sEffect("other", false))), aReply("one", aEffect("other", false))}, // 5
			{"reply and synchronous side effect", areq(group(sReply("one"), sEffect("another", true))), aReply("one", aEffect("another", true))},
			{"reply and side effects", areq(group(sReply("one"), sEffect("a", false), sEffect("b", false), sEffect("c", false))),
				aReply("one", aEffect("a", false), aEffect("b", false), aEffect("c", false))},
			{"no reply", areq(), aNone()}, // 8
			{"no reply and side effect", areq(group(sEffect("other", false))), aNone(aEffect("other", false))},
			{"forward", areq(group(sForward("one"))), aForward("one")}, // 12
			{"forward and side effect", areq(group(sForward("one"), sEffect("other", false))), aForward("one", aEffect("other", false))},
			{"failure", areq(group(sFail("one"))), aFailure("one")}, // 16
			{"failure keeps side effects", areq(group(sEffect("a", false), sFail("one"), sEffect("b", true))), aFailure("one", aEffect("a", false), aEffect("b", true))},
			{"failure wins over reply and forward", areq(group(sReply("r"), sForward("f"), sFail("one"))), aFailure("one")},
			{"reply and forward", areq(group(sReply("r"), sForward("f"))), aFailure("ProcessUnary: the handler replied and forwarded to cloudstate.tck.model.action.ActionTwo/Call; a forwarding handler replies nil")},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := client.HandleUnary(streamCtx(t), unaryCmd(tc.req))
				if err != nil {
					t.Fatal(err)
				}
				expectResponse(t, tc.want, got)
			})
		}
	})

	t.Run("streamed in", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			reqs []*act.Request
			want *pb.ActionResponse
		}{
			{"reply", []*act.Request{areq(group(sReply("one")))}, aReply("one")}, // 20
			{"reply and side effects", []*act.Request{ // 21
				areq(group(sReply("one"), sEffect("a", false))),
				areq(group(sEffect("b", true))),
				areq(group(sReply("two"), sEffect("c", false), sEffect("d", false))),
			}, aReply("two", aEffect("a", false), aEffect("b", true), aEffect("c", false), aEffect("d", false))},
			{"no messages", nil, aNone()},                                              // 22
			{"one empty request", []*act.Request{areq()}, aNone()},                     // 23
			{"forward", []*act.Request{areq(group(sForward("one")))}, aForward("one")}, // 25
			{"failure", []*act.Request{areq(group(sEffect("a", false))), areq(group(sFail("one")))}, aFailure("one", aEffect("a", false))}, // 27, 28
		} {
			t.Run(tc.name, func(t *testing.T) {
				stream, err := client.HandleStreamedIn(streamCtx(t))
				if err != nil {
					t.Fatal(err)
				}
				md := &cloudstate.Metadata{Entries: []*cloudstate.MetadataEntry{{Key: "k", Value: &cloudstate.MetadataEntry_StringValue{StringValue: "v"}}}}
				if err := stream.Send(&pb.ActionCommand{ServiceName: actionModel, Name: "ProcessStreamedIn", Metadata: md}); err != nil {
					t.Fatal(err)
				}
				for _, r := range tc.reqs {
					if err := stream.Send(&pb.ActionCommand{Payload: anyOf(r)}); err != nil {
						t.Fatal(err)
					}
				}
				got, err := stream.CloseAndRecv()
				if err != nil {
					t.Fatal(err)
				}
				expectResponse(t, tc.want, got)
			})
		}
	})

	t.Run("streamed out", func(t *testing.T) { // 29-32
		stream, err := client.HandleStreamedOut(streamCtx(t), &pb.ActionCommand{ServiceName: actionModel, Name: "ProcessStreamedOut", Payload: anyOf(areq(
			group(sReply("one")),
			group(sReply("two"), sEffect("other", false)),
			group(sEffect("a", false)),
			group(sForward("f"), sEffect("b", true)),
			group(sFail("boom"), sEffect("c", false)),
			group(sReply("after failure")),
		))})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []*pb.ActionResponse{
			aReply("one"), aReply("two", aEffect("other", false)), aNone(aEffect("a", false)),
			aForward("f", aEffect("b", true)), aFailure("boom", aEffect("c", false)), aReply("after failure"),
		} {
			got, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			expectResponse(t, want, got)
		}
		if m, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("recv = %v, %v; want the end of the stream", m, err)
		}
	})

	t.Run("streamed", func(t *testing.T) { // 33-36
		stream, err := client.HandleStreamed(streamCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		send := func(m *pb.ActionCommand) {
			t.Helper()
			if err := stream.Send(m); err != nil {
				t.Fatal(err)
			}
		}
		recv := func(want *pb.ActionResponse) {
			t.Helper()
			got, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			expectResponse(t, want, got)
		}
		send(&pb.ActionCommand{ServiceName: actionModel, Name: "ProcessStreamed"})
		send(&pb.ActionCommand{Payload: anyOf(areq(group(sReply("X"))))})
		recv(aReply("X"))
		send(&pb.ActionCommand{Payload: anyOf(areq(group(sForward("one"))))})
		recv(aForward("one"))
		send(&pb.ActionCommand{Payload: anyOf(areq(group(sEffect("two", false))))})
		recv(aNone(aEffect("two", false)))
		send(&pb.ActionCommand{Payload: anyOf(areq(group(sFail("expected failure")), group(sReply("Z"))))})
		recv(aFailure("expected failure"))
		recv(aReply("Z"))
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if m, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("recv = %v, %v; want the end of the stream", m, err)
		}
	})
}

// TestActionBadInput: protocol-level problems are gRPC errors; handler errors are failures.
func TestActionBadInput(t *testing.T) {
	a := sdk.NewAction(sdk.ActionConfig{ServiceName: actionModel})
	sdk.HandleUnary(a, "ProcessUnary", func(ctx *sdk.ActionContext, in *act.Request) (*act.Response, error) {
		switch in.GetGroups()[0].GetSteps()[0].GetReply().GetMessage() {
		case "error":
			ctx.SideEffect(actionTwo, "Call", &act.OtherRequest{Id: "kept"}, false)
			return nil, errors.New("handler said no")
		case "panic":
			panic("boom")
		case "metadata":
			return &act.Response{Message: ctx.Metadata().GetEntries()[0].GetStringValue() + " " + ctx.CommandName()}, nil
		}
		return &act.Response{}, nil
	})
	sdk.HandleStreamedIn(a, "ProcessStreamedIn", func(ctx *sdk.ActionContext, recv func() (*act.Request, error)) (*act.Response, error) {
		_, err := recv()
		return nil, err
	})
	sdk.HandleStreamedOut(a, "ProcessStreamedOut", func(ctx *sdk.ActionContext, in *act.Request, send func(*act.Response) error) error {
		if err := send(&act.Response{Message: "first"}); err != nil {
			return err
		}
		ctx.SideEffect(actionTwo, "Call", &act.OtherRequest{Id: "pending"}, false)
		return errors.New("then failed")
	})
	sdk.HandleStreamed(a, "ProcessStreamed", func(*sdk.ActionContext, func() (*act.Request, error), func(*act.Response) error) error {
		return nil
	})
	conn := serve(t, sdk.Config{}, a, actionTwoEntity())
	client := pb.NewActionProtocolClient(conn)
	one := func(m string) *act.Request { return areq(group(sReply(m))) }

	t.Run("unknown service", func(t *testing.T) {
		_, err := client.HandleUnary(streamCtx(t), &pb.ActionCommand{ServiceName: "no.Such", Name: "X", Payload: anyOf(one(""))})
		expectCode(t, err, codes.NotFound, `unknown action service "no.Such"`)
	})
	t.Run("unknown command", func(t *testing.T) {
		_, err := client.HandleUnary(streamCtx(t), &pb.ActionCommand{ServiceName: actionModel, Name: "Nope", Payload: anyOf(one(""))})
		expectCode(t, err, codes.NotFound, `unknown command "Nope" for cloudstate.tck.model.action.ActionTckModel`)
	})
	t.Run("wrong rpc", func(t *testing.T) {
		_, err := client.HandleUnary(streamCtx(t), &pb.ActionCommand{ServiceName: actionModel, Name: "ProcessStreamedOut", Payload: anyOf(one(""))})
		expectCode(t, err, codes.InvalidArgument, "command ProcessStreamedOut of cloudstate.tck.model.action.ActionTckModel is server-streaming; the proxy called it as unary")
	})
	t.Run("payload of the wrong type", func(t *testing.T) {
		_, err := client.HandleUnary(streamCtx(t), &pb.ActionCommand{ServiceName: actionModel, Name: "ProcessUnary", Payload: anyOf(&act.OtherRequest{})})
		expectCode(t, err, codes.InvalidArgument, "command ProcessUnary: payload of type cloudstate.tck.model.action.OtherRequest, want cloudstate.tck.model.action.Request")
	})
	t.Run("undecodable payload in a stream", func(t *testing.T) {
		stream, err := client.HandleStreamedIn(streamCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.Send(&pb.ActionCommand{ServiceName: actionModel, Name: "ProcessStreamedIn"})
		_ = stream.Send(&pb.ActionCommand{Payload: anyOfURL("type.googleapis.com/cloudstate.tck.model.action.Request", []byte{0xff})})
		_, err = stream.CloseAndRecv()
		want := `command ProcessStreamedIn: bad input: decode payload of type "type.googleapis.com/cloudstate.tck.model.action.Request": proto:`
		if s, _ := status.FromError(err); s.Code() != codes.InvalidArgument || !strings.HasPrefix(s.Message(), want) {
			t.Fatalf("error %v, want InvalidArgument %q...", err, want)
		}
	})
	t.Run("empty stream", func(t *testing.T) {
		stream, err := client.HandleStreamed(streamCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.CloseSend()
		_, err = stream.Recv()
		expectCode(t, err, codes.InvalidArgument, "protocol error: the stream ended before its first message")
	})
	t.Run("handler error", func(t *testing.T) {
		got, err := client.HandleUnary(streamCtx(t), unaryCmd(one("error")))
		if err != nil {
			t.Fatal(err)
		}
		expectResponse(t, aFailure("handler said no", aEffect("kept", false)), got)
	})
	t.Run("handler panics", func(t *testing.T) {
		_, err := client.HandleUnary(streamCtx(t), unaryCmd(one("panic")))
		expectCode(t, err, codes.Internal, "command ProcessUnary: panic: boom")
	})
	t.Run("metadata", func(t *testing.T) {
		cmd := unaryCmd(one("metadata"))
		cmd.Metadata = &cloudstate.Metadata{Entries: []*cloudstate.MetadataEntry{{Key: "k", Value: &cloudstate.MetadataEntry_StringValue{StringValue: "v"}}}}
		got, err := client.HandleUnary(streamCtx(t), cmd)
		if err != nil {
			t.Fatal(err)
		}
		expectResponse(t, aReply("v ProcessUnary"), got)
	})
	t.Run("streamed out error after a response", func(t *testing.T) {
		stream, err := client.HandleStreamedOut(streamCtx(t), &pb.ActionCommand{ServiceName: actionModel, Name: "ProcessStreamedOut", Payload: anyOf(one(""))})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []*pb.ActionResponse{aReply("first"), aFailure("then failed", aEffect("pending", false))} {
			got, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			expectResponse(t, want, got)
		}
		if m, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("recv = %v, %v; want the end of the stream", m, err)
		}
	})
}
