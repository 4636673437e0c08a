package tck_test

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/action"
	acmodel "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/action"
)

const (
	acModel = "cloudstate.tck.model.action.ActionTckModel"
	acTwo   = "cloudstate.tck.model.action.ActionTwo"
)

// actionModel is the action TCK model, speaking the action protocol
// directly. Each group of steps becomes one response: a reply, forward or
// failure step replaces the response so far, an effect step adds a side
// effect to ActionTwo/Call (kept whatever the response). ProcessUnary and
// ProcessStreamedIn answer once with the steps of all their groups;
// ProcessStreamedOut and ProcessStreamed answer once per group. ActionTwo's
// Call replies with an empty Response.
type actionModel struct {
	action.UnimplementedActionProtocolServer
}

// respond turns steps into one response.
func respond(steps []*acmodel.ProcessStep) *action.ActionResponse {
	r := &action.ActionResponse{}
	for _, s := range steps {
		switch step := s.GetStep().(type) {
		case *acmodel.ProcessStep_Reply:
			r.Response = &action.ActionResponse_Reply{Reply: &cloudstate.Reply{
				Payload: anyOf(&acmodel.Response{Message: step.Reply.GetMessage()})}}
		case *acmodel.ProcessStep_Forward:
			r.Response = &action.ActionResponse_Forward{Forward: &cloudstate.Forward{ServiceName: acTwo, CommandName: "Call",
				Payload: anyOf(&acmodel.OtherRequest{Id: step.Forward.GetId()})}}
		case *acmodel.ProcessStep_Fail:
			r.Response = &action.ActionResponse_Failure{Failure: &cloudstate.Failure{Description: step.Fail.GetMessage()}}
		case *acmodel.ProcessStep_Effect:
			r.SideEffects = append(r.SideEffects, &cloudstate.SideEffect{ServiceName: acTwo, CommandName: "Call",
				Payload: anyOf(&acmodel.OtherRequest{Id: step.Effect.GetId()}), Synchronous: step.Effect.GetSynchronous()})
		}
	}
	return r
}

// request decodes a command's payload; its type URL must be the Request's.
func request(cmd *action.ActionCommand) (*acmodel.Request, error) {
	var req acmodel.Request
	if err := cmd.GetPayload().UnmarshalTo(&req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "payload of %s: %v", cmd.GetName(), err)
	}
	return &req, nil
}

// allSteps is the steps of all groups, in order.
func allSteps(req *acmodel.Request) []*acmodel.ProcessStep {
	var out []*acmodel.ProcessStep
	for _, g := range req.GetGroups() {
		out = append(out, g.GetSteps()...)
	}
	return out
}

// expectCommand checks that a command (or a stream's first message) names
// the method, and that a stream's first message carries no payload.
func expectCommand(cmd *action.ActionCommand, service, name string, header bool) error {
	if cmd.GetServiceName() != service || cmd.GetName() != name {
		return status.Errorf(codes.Unimplemented, "%s/%s is not a method of this shape", cmd.GetServiceName(), cmd.GetName())
	}
	if header && cmd.GetPayload() != nil {
		return status.Error(codes.InvalidArgument, "the first message of a stream carries a payload")
	}
	return nil
}

func (actionModel) HandleUnary(_ context.Context, cmd *action.ActionCommand) (*action.ActionResponse, error) {
	if cmd.GetServiceName() == acTwo && cmd.GetName() == "Call" {
		var req acmodel.OtherRequest
		if err := cmd.GetPayload().UnmarshalTo(&req); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "payload of Call: %v", err)
		}
		return &action.ActionResponse{Response: &action.ActionResponse_Reply{Reply: &cloudstate.Reply{Payload: anyOf(&acmodel.Response{})}}}, nil
	}
	if err := expectCommand(cmd, acModel, "ProcessUnary", false); err != nil {
		return nil, err
	}
	req, err := request(cmd)
	if err != nil {
		return nil, err
	}
	return respond(allSteps(req)), nil
}

func (actionModel) HandleStreamedIn(stream grpc.ClientStreamingServer[action.ActionCommand, action.ActionResponse]) error {
	header, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := expectCommand(header, acModel, "ProcessStreamedIn", true); err != nil {
		return err
	}
	var steps []*acmodel.ProcessStep
	for {
		cmd, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(respond(steps))
		}
		if err != nil {
			return err
		}
		req, err := request(cmd)
		if err != nil {
			return err
		}
		steps = append(steps, allSteps(req)...)
	}
}

func (actionModel) HandleStreamedOut(cmd *action.ActionCommand, stream grpc.ServerStreamingServer[action.ActionResponse]) error {
	if err := expectCommand(cmd, acModel, "ProcessStreamedOut", false); err != nil {
		return err
	}
	req, err := request(cmd)
	if err != nil {
		return err
	}
	for _, g := range req.GetGroups() {
		if err := stream.Send(respond(g.GetSteps())); err != nil {
			return err
		}
	}
	return nil
}

func (actionModel) HandleStreamed(stream grpc.BidiStreamingServer[action.ActionCommand, action.ActionResponse]) error {
	header, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := expectCommand(header, acModel, "ProcessStreamed", true); err != nil {
		return err
	}
	for {
		cmd, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		req, err := request(cmd)
		if err != nil {
			return err
		}
		for _, g := range req.GetGroups() {
			if err := stream.Send(respond(g.GetSteps())); err != nil {
				return fmt.Errorf("send: %w", err)
			}
		}
	}
}
