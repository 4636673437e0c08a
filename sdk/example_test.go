package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	pb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	crdtpb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	act "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/action"
	"github.com/jetstate/jetstate/sdk"
	tm "github.com/jetstate/jetstate/sdk/internal/testmodel"
)

// The examples serve their entities on a loopback port and play the proxy's part, printing what
// the user function answers.

// exampleServe serves entities and returns a connection to them and a function that stops the
// server.
func exampleServe(entities ...sdk.Entity) (*grpc.ClientConn, func()) {
	srv, err := sdk.New(sdk.Config{Logger: slog.New(slog.DiscardHandler)}, entities...)
	if err != nil {
		panic(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	return conn, func() {
		_ = conn.Close()
		cancel()
		<-done
	}
}

// payload prints the reply in a CRDT stream message or action response.
func payload(a *cloudstate.ClientAction) string {
	if a.GetReply() == nil {
		return "no element"
	}
	var r tm.Response
	if err := a.GetReply().GetPayload().UnmarshalTo(&r); err != nil {
		var ar act.Response
		_ = a.GetReply().GetPayload().UnmarshalTo(&ar)
		return fmt.Sprintf("%q", ar.GetMessage())
	}
	return fmt.Sprintf("%q", r.GetMessage())
}

// A CRDT entity with a streamed command, the way the chat sample's presence works: while a
// Connect stream is open the node votes for "online", and Monitor streams the tally on every
// change. Here both are ProcessStreamed of the test model: the request's initial_update votes,
// cancel_update withdraws the vote.
func ExampleHandleCrdtStreamed() {
	type presence struct{ connections int } // this node's own count, beside the CRDT
	c := sdk.NewCrdt(sdk.CrdtConfig{ServiceName: "jetstate.sdk.testmodel.CrdtModel"}, func(string) *presence { return &presence{} })
	online := func(ctx *sdk.CrdtContext) *tm.Response {
		v, _ := ctx.State().(*sdk.Vote)
		return &tm.Response{Message: fmt.Sprintf("online=%t", v != nil && v.AtLeastOne())}
	}
	sdk.HandleCrdtCommand(c, "Process", func(p *presence, ctx *sdk.CrdtContext, _ *tm.CrdtRequest) (*tm.Response, error) {
		return online(ctx), nil
	})
	sdk.HandleCrdtStreamed(c, "ProcessStreamed", func(p *presence, ctx *sdk.CrdtStreamContext[*tm.Response], in *tm.CrdtStreamedRequest) (*tm.Response, error) {
		vote, ok := sdk.GetOrSetState(ctx.CrdtContext, sdk.NewVote)
		if !ok {
			return nil, nil // GetOrSetState failed the command
		}
		if in.GetInitialUpdate() != nil { // Connect
			p.connections++
			vote.Vote(true)
			ctx.OnCancel(func(ctx *sdk.CrdtContext) error {
				if p.connections--; p.connections == 0 {
					ctx.State().(*sdk.Vote).Vote(false)
				}
				return nil
			})
			return nil, nil // no element: a connection only keeps the stream open
		}
		// Monitor: the status now, then on every change.
		ctx.OnChange(func(ctx *sdk.CrdtContext) (*tm.Response, bool, error) { return online(ctx), false, nil })
		return online(ctx.CrdtContext), nil
	})

	conn, stop := exampleServe(c)
	defer stop()
	stream, err := crdtpb.NewCrdtClient(conn).Handle(context.Background())
	if err != nil {
		panic(err)
	}
	send := func(in *crdtpb.CrdtStreamIn) {
		if err := stream.Send(in); err != nil {
			panic(err)
		}
	}
	command := func(id int64, in proto.Message) {
		p, _ := anypb.New(in)
		send(&crdtpb.CrdtStreamIn{Message: &crdtpb.CrdtStreamIn_Command{Command: &cloudstate.Command{EntityId: "alice", Id: id, Name: "ProcessStreamed", Payload: p, Streamed: true}}})
	}
	vote := func(a *crdtpb.CrdtStateAction) string {
		if a == nil {
			return "none"
		}
		return fmt.Sprintf("self vote %t", a.GetUpdate().GetVote().GetSelfVote())
	}
	print := func(n int) {
		for range n {
			out, err := stream.Recv()
			if err != nil {
				panic(err)
			}
			switch m := out.GetMessage().(type) {
			case *crdtpb.CrdtStreamOut_Reply:
				fmt.Printf("reply %d: %s, streamed=%t, state action %s\n", m.Reply.GetCommandId(), payload(m.Reply.GetClientAction()), m.Reply.GetStreamed(), vote(m.Reply.GetStateAction()))
			case *crdtpb.CrdtStreamOut_StreamedMessage:
				fmt.Printf("streamed %d: %s\n", m.StreamedMessage.GetCommandId(), payload(m.StreamedMessage.GetClientAction()))
			case *crdtpb.CrdtStreamOut_StreamCancelledResponse:
				fmt.Printf("cancelled %d: state action %s\n", m.StreamCancelledResponse.GetCommandId(), vote(m.StreamCancelledResponse.GetStateAction()))
			}
		}
	}

	send(&crdtpb.CrdtStreamIn{Message: &crdtpb.CrdtStreamIn_Init{Init: &crdtpb.CrdtInit{ServiceName: "jetstate.sdk.testmodel.CrdtModel", EntityId: "alice"}}})
	command(1, &tm.CrdtStreamedRequest{Id: "alice"}) // Monitor
	print(1)
	command(2, &tm.CrdtStreamedRequest{Id: "alice", InitialUpdate: &tm.CrdtUpdate{}}) // Connect
	print(2)
	send(&crdtpb.CrdtStreamIn{Message: &crdtpb.CrdtStreamIn_StreamCancelled{StreamCancelled: &cloudstate.StreamCancelled{EntityId: "alice", Id: 2}}})
	print(2)
	_ = stream.CloseSend() // passivation
	_, err = stream.Recv()
	fmt.Println("stream ended:", errors.Is(err, io.EOF))
	// Output:
	// reply 1: "online=false", streamed=true, state action none
	// reply 2: no element, streamed=true, state action self vote true
	// streamed 1: "online=true"
	// cancelled 2: state action self vote false
	// streamed 1: "online=false"
	// stream ended: true
}

// actionCall is a unary ActionCommand for ActionTckModel.
func actionCall(name string, in proto.Message) *pb.ActionCommand {
	p, _ := anypb.New(in)
	return &pb.ActionCommand{ServiceName: "cloudstate.tck.model.action.ActionTckModel", Name: name, Payload: p}
}

func printResponse(r *pb.ActionResponse) {
	switch x := r.GetResponse().(type) {
	case *pb.ActionResponse_Reply:
		var out act.Response
		_ = x.Reply.GetPayload().UnmarshalTo(&out)
		fmt.Printf("reply %q", out.GetMessage())
	case *pb.ActionResponse_Forward:
		fmt.Printf("forward to %s/%s", x.Forward.GetServiceName(), x.Forward.GetCommandName())
	case *pb.ActionResponse_Failure:
		fmt.Printf("failure %q", x.Failure.GetDescription())
	default:
		fmt.Print("no reply")
	}
	fmt.Printf(", %d side effects\n", len(r.GetSideEffects()))
}

// exampleAction is an action with the TCK model's service; the examples register the handler of
// one method each (New would want them all, so the others echo).
func exampleAction() *sdk.Action {
	return sdk.NewAction(sdk.ActionConfig{ServiceName: "cloudstate.tck.model.action.ActionTckModel"})
}

func otherHandlers(a *sdk.Action, except string) {
	if except != "ProcessUnary" {
		sdk.HandleUnary(a, "ProcessUnary", func(*sdk.ActionContext, *act.Request) (*act.Response, error) { return nil, nil })
	}
	if except != "ProcessStreamedIn" {
		sdk.HandleStreamedIn(a, "ProcessStreamedIn", func(*sdk.ActionContext, func() (*act.Request, error)) (*act.Response, error) { return nil, nil })
	}
	if except != "ProcessStreamedOut" {
		sdk.HandleStreamedOut(a, "ProcessStreamedOut", func(*sdk.ActionContext, *act.Request, func(*act.Response) error) error { return nil })
	}
	if except != "ProcessStreamed" {
		sdk.HandleStreamed(a, "ProcessStreamed", func(*sdk.ActionContext, func() (*act.Request, error), func(*act.Response) error) error { return nil })
	}
}

// A unary action replies, forwards or fails once; side effects go with any of them.
func ExampleHandleUnary() {
	a := exampleAction()
	sdk.HandleUnary(a, "ProcessUnary", func(ctx *sdk.ActionContext, in *act.Request) (*act.Response, error) {
		steps := in.GetGroups()[0].GetSteps()
		ctx.SideEffect("cloudstate.tck.model.action.ActionTwo", "Call", &act.OtherRequest{Id: "audit"}, false)
		if len(steps) == 0 {
			return nil, errors.New("nothing to do") // a failure; the side effect stays
		}
		return &act.Response{Message: strings.ToUpper(steps[0].GetReply().GetMessage())}, nil
	})
	otherHandlers(a, "ProcessUnary")
	conn, stop := exampleServe(a, actionTwoEntity())
	defer stop()
	client := pb.NewActionProtocolClient(conn)
	for _, in := range []*act.Request{areq(group(sReply("hello"))), areq(group())} {
		r, err := client.HandleUnary(context.Background(), actionCall("ProcessUnary", in))
		if err != nil {
			panic(err)
		}
		printResponse(r)
	}
	// Output:
	// reply "HELLO", 1 side effects
	// failure "nothing to do", 1 side effects
}

// A client-streaming action reads every message, then answers once.
func ExampleHandleStreamedIn() {
	a := exampleAction()
	sdk.HandleStreamedIn(a, "ProcessStreamedIn", func(ctx *sdk.ActionContext, recv func() (*act.Request, error)) (*act.Response, error) {
		var words []string
		for {
			in, err := recv()
			if errors.Is(err, io.EOF) {
				return &act.Response{Message: strings.Join(words, " ")}, nil
			}
			if err != nil {
				return nil, err
			}
			words = append(words, in.GetGroups()[0].GetSteps()[0].GetReply().GetMessage())
		}
	})
	otherHandlers(a, "ProcessStreamedIn")
	conn, stop := exampleServe(a, actionTwoEntity())
	defer stop()
	stream, err := pb.NewActionProtocolClient(conn).HandleStreamedIn(context.Background())
	if err != nil {
		panic(err)
	}
	// The first message names the command; the payloads follow.
	_ = stream.Send(&pb.ActionCommand{ServiceName: "cloudstate.tck.model.action.ActionTckModel", Name: "ProcessStreamedIn"})
	for _, w := range []string{"one", "two", "three"} {
		p, _ := anypb.New(areq(group(sReply(w))))
		_ = stream.Send(&pb.ActionCommand{Payload: p})
	}
	r, err := stream.CloseAndRecv()
	if err != nil {
		panic(err)
	}
	printResponse(r)
	// Output:
	// reply "one two three", 0 side effects
}

// A server-streaming action sends any number of responses; each carries the forward, failure
// and side effects asked for since the previous one.
func ExampleHandleStreamedOut() {
	a := exampleAction()
	sdk.HandleStreamedOut(a, "ProcessStreamedOut", func(ctx *sdk.ActionContext, in *act.Request, send func(*act.Response) error) error {
		for i, g := range in.GetGroups() {
			if i == 1 {
				ctx.Forward("cloudstate.tck.model.action.ActionTwo", "Call", &act.OtherRequest{Id: "two"})
				if err := send(nil); err != nil {
					return err
				}
				continue
			}
			if err := send(&act.Response{Message: g.GetSteps()[0].GetReply().GetMessage()}); err != nil {
				return err
			}
		}
		return nil
	})
	otherHandlers(a, "ProcessStreamedOut")
	conn, stop := exampleServe(a, actionTwoEntity())
	defer stop()
	stream, err := pb.NewActionProtocolClient(conn).HandleStreamedOut(context.Background(),
		actionCall("ProcessStreamedOut", areq(group(sReply("one")), group(), group(sReply("three")))))
	if err != nil {
		panic(err)
	}
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			panic(err)
		}
		printResponse(r)
	}
	// Output:
	// reply "one", 0 side effects
	// forward to cloudstate.tck.model.action.ActionTwo/Call, 0 side effects
	// reply "three", 0 side effects
}

// A bidirectional-streaming action answers as it reads.
func ExampleHandleStreamed() {
	a := exampleAction()
	sdk.HandleStreamed(a, "ProcessStreamed", func(ctx *sdk.ActionContext, recv func() (*act.Request, error), send func(*act.Response) error) error {
		for {
			in, err := recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			msg := in.GetGroups()[0].GetSteps()[0].GetReply().GetMessage()
			if msg == "" {
				ctx.Fail("empty message") // this response fails; the stream goes on
			}
			if err := send(&act.Response{Message: strings.Repeat(msg, 2)}); err != nil {
				return err
			}
		}
	})
	otherHandlers(a, "ProcessStreamed")
	conn, stop := exampleServe(a, actionTwoEntity())
	defer stop()
	stream, err := pb.NewActionProtocolClient(conn).HandleStreamed(context.Background())
	if err != nil {
		panic(err)
	}
	_ = stream.Send(&pb.ActionCommand{ServiceName: "cloudstate.tck.model.action.ActionTckModel", Name: "ProcessStreamed"})
	for _, w := range []string{"ab", "", "c"} {
		p, _ := anypb.New(areq(group(sReply(w))))
		_ = stream.Send(&pb.ActionCommand{Payload: p})
		r, err := stream.Recv()
		if err != nil {
			panic(err)
		}
		printResponse(r)
	}
	_ = stream.CloseSend()
	// Output:
	// reply "abab", 0 side effects
	// failure "empty message", 0 side effects
	// reply "cc", 0 side effects
}
