package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/jetstate/jetstate/protocol/cloudstate/action"
)

// actionService serves cloudstate.action.ActionProtocol: one gRPC call per action call, whose
// rpc the proxy picks from the method's streaming flags.
//
// Protocol-level problems are gRPC errors, not failure responses: an unknown service or command
// (NotFound), a call through the rpc of another shape, a stream without its first message or a
// payload that does not decode into the handler's input type (InvalidArgument), a handler that
// panics (Internal; the panic is logged with its stack).
type actionService struct {
	pb.UnimplementedActionProtocolServer
	s *Server
}

// lookup finds the handler of service/name and checks that the proxy called the rpc of its
// shape.
func (h actionService) lookup(service, name string, rpc shape) (actionCommand, error) {
	a, ok := h.s.actions[service]
	if !ok {
		return actionCommand{}, h.refuse(codes.NotFound, fmt.Sprintf("unknown action service %q", service))
	}
	c, ok := a.commands[name]
	if !ok {
		return actionCommand{}, h.refuse(codes.NotFound, fmt.Sprintf("unknown command %q for %s", name, service))
	}
	if c.types.shape != rpc {
		return actionCommand{}, h.refuse(codes.InvalidArgument, fmt.Sprintf("command %s of %s is %s; the proxy called it as %s", name, service, c.types.shape, rpc))
	}
	return c, nil
}

func (h actionService) refuse(code codes.Code, msg string) error {
	h.s.log.Error("action call refused", slog.String(keyErr, msg))
	return status.Error(code, msg)
}

// runAction runs the handler; an error is a protocol-level one (a panic, bad input) as a gRPC
// status.
func (h actionService) runAction(ctx *ActionContext, c actionCommand, in proto.Message, recv func() (proto.Message, error), bad *atomic.Pointer[error], send func(proto.Message) error) (proto.Message, error) {
	var out proto.Message
	if err := protect(func() error {
		o, err := c.run(ctx, in, recv, send)
		if err != nil {
			ctx.Fail(err.Error())
		}
		out = o
		return nil
	}); err != nil {
		logPanic(h.s.log, err, "action failed", slog.String(keyCommand, ctx.commandName))
		return nil, status.Error(codes.Internal, fmt.Sprintf("command %s: %v", ctx.commandName, err))
	}
	if bad != nil {
		if err := bad.Load(); err != nil {
			return nil, h.refuse(codes.InvalidArgument, fmt.Sprintf("command %s: %v", ctx.commandName, *err))
		}
	}
	return out, nil
}

func (h actionService) HandleUnary(ctx context.Context, cmd *pb.ActionCommand) (*pb.ActionResponse, error) {
	c, err := h.lookup(cmd.GetServiceName(), cmd.GetName(), unary)
	if err != nil {
		return nil, err
	}
	in, err := c.decode(cmd.GetPayload())
	if err != nil {
		return nil, h.refuse(codes.InvalidArgument, fmt.Sprintf("command %s: %v", cmd.GetName(), err))
	}
	actx := newActionContext(ctx, cmd.GetName(), cmd.GetMetadata())
	out, err := h.runAction(actx, c, in, nil, nil, nil)
	if err != nil {
		return nil, err
	}
	return actx.response(out), nil
}

func (h actionService) HandleStreamedIn(stream pb.ActionProtocol_HandleStreamedInServer) error {
	first, err := h.first(stream.Recv)
	if err != nil {
		return err
	}
	c, err := h.lookup(first.GetServiceName(), first.GetName(), streamedIn)
	if err != nil {
		return err
	}
	var bad atomic.Pointer[error]
	actx := newActionContext(stream.Context(), first.GetName(), first.GetMetadata())
	out, err := h.runAction(actx, c, nil, payloads(first, stream.Recv, c.decode, &bad), &bad, nil)
	if err != nil {
		return err
	}
	return stream.SendAndClose(actx.response(out))
}

func (h actionService) HandleStreamedOut(cmd *pb.ActionCommand, stream pb.ActionProtocol_HandleStreamedOutServer) error {
	c, err := h.lookup(cmd.GetServiceName(), cmd.GetName(), streamedOut)
	if err != nil {
		return err
	}
	in, err := c.decode(cmd.GetPayload())
	if err != nil {
		return h.refuse(codes.InvalidArgument, fmt.Sprintf("command %s: %v", cmd.GetName(), err))
	}
	actx := newActionContext(stream.Context(), cmd.GetName(), cmd.GetMetadata())
	send := func(out proto.Message) error { return stream.Send(actx.response(out)) }
	if _, err := h.runAction(actx, c, in, nil, nil, send); err != nil {
		return err
	}
	if actx.pending() {
		return stream.Send(actx.response(nil))
	}
	return nil
}

func (h actionService) HandleStreamed(stream pb.ActionProtocol_HandleStreamedServer) error {
	first, err := h.first(stream.Recv)
	if err != nil {
		return err
	}
	c, err := h.lookup(first.GetServiceName(), first.GetName(), streamed)
	if err != nil {
		return err
	}
	var bad atomic.Pointer[error]
	actx := newActionContext(stream.Context(), first.GetName(), first.GetMetadata())
	send := func(out proto.Message) error { return stream.Send(actx.response(out)) }
	if _, err := h.runAction(actx, c, nil, payloads(first, stream.Recv, c.decode, &bad), &bad, send); err != nil {
		return err
	}
	if actx.pending() {
		return stream.Send(actx.response(nil))
	}
	return nil
}

// first receives the first message of a client stream, which names the service and command.
func (h actionService) first(recv func() (*pb.ActionCommand, error)) (*pb.ActionCommand, error) {
	m, err := recv()
	if errors.Is(err, io.EOF) {
		return nil, h.refuse(codes.InvalidArgument, "protocol error: the stream ended before its first message")
	}
	return m, err
}
