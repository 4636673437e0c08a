package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	pb "github.com/jetstate/jetstate/protocol/cloudstate/action"
)

// ActionConfig describes an action (a stateless function) to the proxy.
type ActionConfig struct {
	// ServiceName is the full name of the gRPC service the action implements. Required. The Go
	// package generated from its .proto file must be linked in (imported).
	ServiceName string
}

// Action is the definition of an action: a service without state whose methods may have any of
// the four gRPC shapes. Build it with NewAction, attach one handler per method with HandleUnary,
// HandleStreamedIn, HandleStreamedOut or HandleStreamed (New checks each against the method's
// streaming flags), then pass it to New. It must not be changed after New.
//
// Every call of the proxy is handled on its own goroutine; handlers run concurrently.
type Action struct {
	cfg      ActionConfig
	commands map[string]actionCommand
	errs     []error
}

// actionCommand is a handler, type-erased. in is the first payload for unary and
// server-streaming methods, nil otherwise; recv yields the payloads of client-streaming ones.
type actionCommand struct {
	types  commandTypes
	decode func(*anypb.Any) (proto.Message, error)
	run    func(ctx *ActionContext, in proto.Message, recv func() (proto.Message, error), send func(proto.Message) error) (proto.Message, error)
}

// NewAction starts the definition of an action.
func NewAction(cfg ActionConfig) *Action {
	return &Action{cfg: cfg, commands: map[string]actionCommand{}}
}

func actionTypes[In, Out proto.Message](sh shape) commandTypes {
	return commandTypes{in: messageDescriptor[In](), out: messageDescriptor[Out](), shape: sh}
}

// outMessage erases a typed result: a nil Out is no message.
func outMessage[Out proto.Message](out Out) proto.Message {
	if isNil(out) {
		return nil
	}
	return out
}

// typedRecv adapts recv to In.
func typedRecv[In proto.Message](recv func() (proto.Message, error)) func() (In, error) {
	return func() (In, error) {
		m, err := recv()
		if err != nil {
			var zero In
			return zero, err
		}
		return m.(In), nil
	}
}

// typedSend adapts send to Out.
func typedSend[Out proto.Message](send func(proto.Message) error) func(Out) error {
	return func(out Out) error { return send(outMessage(out)) }
}

// HandleUnary registers h as the handler of the unary method name. The response is h's failure
// (an error, or ctx.Fail), else its forward, else out as the reply; a nil out is no reply, which
// the protocol allows. Side effects are sent in every case, failure included.
func HandleUnary[In, Out proto.Message](a *Action, name string, h func(ctx *ActionContext, in In) (Out, error)) {
	a.addCommand(name, h == nil, actionCommand{
		types:  actionTypes[In, Out](unary),
		decode: func(p *anypb.Any) (proto.Message, error) { return decodeAs[In](p) },
		run: func(ctx *ActionContext, in proto.Message, _ func() (proto.Message, error), _ func(proto.Message) error) (proto.Message, error) {
			out, err := h(ctx, in.(In))
			return outMessage(out), err
		},
	})
}

// HandleStreamedIn registers h as the handler of the client-streaming method name. recv returns
// the client's messages in order, then io.EOF. The single response is made as for HandleUnary.
func HandleStreamedIn[In, Out proto.Message](a *Action, name string, h func(ctx *ActionContext, recv func() (In, error)) (Out, error)) {
	a.addCommand(name, h == nil, actionCommand{
		types:  actionTypes[In, Out](streamedIn),
		decode: func(p *anypb.Any) (proto.Message, error) { return decodeAs[In](p) },
		run: func(ctx *ActionContext, _ proto.Message, recv func() (proto.Message, error), _ func(proto.Message) error) (proto.Message, error) {
			out, err := h(ctx, typedRecv[In](recv))
			return outMessage(out), err
		},
	})
}

// HandleStreamedOut registers h as the handler of the server-streaming method name. Every call
// of send is one response: the failure of a ctx.Fail since the previous send (a failure does
// not end the stream), else the forward, else out as the reply (nil: no reply), with the side
// effects added since the previous send. Whatever is pending when h returns is sent as a last
// response; an error from h is sent as a last failure. Then the stream ends.
func HandleStreamedOut[In, Out proto.Message](a *Action, name string, h func(ctx *ActionContext, in In, send func(Out) error) error) {
	a.addCommand(name, h == nil, actionCommand{
		types:  actionTypes[In, Out](streamedOut),
		decode: func(p *anypb.Any) (proto.Message, error) { return decodeAs[In](p) },
		run: func(ctx *ActionContext, in proto.Message, _ func() (proto.Message, error), send func(proto.Message) error) (proto.Message, error) {
			return nil, h(ctx, in.(In), typedSend[Out](send))
		},
	})
}

// HandleStreamed registers h as the handler of the bidirectional-streaming method name: recv as
// for HandleStreamedIn, send as for HandleStreamedOut. recv may be called on another goroutine
// than send and ctx.
func HandleStreamed[In, Out proto.Message](a *Action, name string, h func(ctx *ActionContext, recv func() (In, error), send func(Out) error) error) {
	a.addCommand(name, h == nil, actionCommand{
		types:  actionTypes[In, Out](streamed),
		decode: func(p *anypb.Any) (proto.Message, error) { return decodeAs[In](p) },
		run: func(ctx *ActionContext, _ proto.Message, recv func() (proto.Message, error), send func(proto.Message) error) (proto.Message, error) {
			return nil, h(ctx, typedRecv[In](recv), typedSend[Out](send))
		},
	})
}

func (a *Action) addCommand(name string, nilHandler bool, cmd actionCommand) {
	if _, dup := a.commands[name]; dup {
		a.errs = append(a.errs, fmt.Errorf("command handler %q registered twice", name))
		return
	}
	if nilHandler {
		a.errs = append(a.errs, fmt.Errorf("command handler %q is nil", name))
		return
	}
	a.commands[name] = cmd
}

func (a *Action) definition() *entityDef {
	d := &entityDef{
		entityType:  entityTypeAction,
		serviceName: a.cfg.ServiceName,
		commands:    map[string]commandTypes{},
		shapes:      []shape{unary, streamedIn, streamedOut, streamed},
		errs:        a.errs,
		action:      a,
	}
	for name, c := range a.commands {
		d.commands[name] = c.types
	}
	return d
}

// ActionContext is what an action handler may do besides replying: see the call's context and
// metadata, fail, forward, add side effects. It is valid only during the handler's call and must
// not be used from several goroutines at once.
type ActionContext struct {
	ctx         context.Context
	commandName string
	metadata    *cloudstate.Metadata
	effects     effects
}

func newActionContext(ctx context.Context, name string, md *cloudstate.Metadata) *ActionContext {
	return &ActionContext{ctx: ctx, commandName: name, metadata: md, effects: effects{keepSideEffects: true}}
}

// Context is the call's context, cancelled when the proxy cancels the call.
func (c *ActionContext) Context() context.Context { return c.ctx }

// Metadata is the metadata of the call (for streams, of its first message): transport headers or
// CloudEvent attributes. It may be nil, and must not be modified.
func (c *ActionContext) Metadata() *cloudstate.Metadata { return c.metadata }

// CommandName is the name of the service method being handled.
func (c *ActionContext) CommandName() string { return c.commandName }

// Fail makes the (next) response a failure with description; its side effects are still sent.
// Only the first failure of a response counts.
func (c *ActionContext) Fail(description string) { c.effects.fail(description) }

// Forward makes the (next) response a forward to service/command (a unary method of a service of
// this user function) with payload as its input; that command's reply is the client's. The
// handler then returns, or sends, a nil reply.
func (c *ActionContext) Forward(service, command string, payload proto.Message) {
	c.effects.addForward(service, command, payload)
}

// SideEffect adds a call of service/command with payload to the (next) response; the proxy makes
// it after the response, awaiting it if synchronous.
func (c *ActionContext) SideEffect(service, command string, payload proto.Message, synchronous bool) {
	c.effects.addSideEffect(service, command, payload, synchronous)
}

// pending reports whether a response has been asked for since the last one.
func (c *ActionContext) pending() bool {
	return c.effects.failed || c.effects.forward != nil || len(c.effects.sideEffects) > 0
}

// response takes the pending effects and out into a response, and starts the next one afresh.
func (c *ActionContext) response(out proto.Message) *pb.ActionResponse {
	e := c.effects
	c.effects = effects{keepSideEffects: true}
	r := &pb.ActionResponse{SideEffects: e.sideEffects}
	switch {
	case e.failed:
		r.Response = &pb.ActionResponse_Failure{Failure: &cloudstate.Failure{Description: e.description}}
	case e.forward != nil && out != nil:
		r.Response = &pb.ActionResponse_Failure{Failure: &cloudstate.Failure{Description: fmt.Sprintf(
			"%s: the handler replied and forwarded to %s/%s; a forwarding handler replies nil", c.commandName, e.forward.GetServiceName(), e.forward.GetCommandName())}}
	case e.forward != nil:
		r.Response = &pb.ActionResponse_Forward{Forward: e.forward}
	case out != nil:
		p, err := marshalAny(out)
		if err != nil {
			r.Response = &pb.ActionResponse_Failure{Failure: &cloudstate.Failure{Description: fmt.Sprintf("%s: reply: %v", c.commandName, err)}}
			break
		}
		r.Response = &pb.ActionResponse_Reply{Reply: &cloudstate.Reply{Payload: p}}
	}
	return r
}

// errBadInput marks a payload the handler's input type cannot hold: a protocol-level problem,
// answered with a gRPC error rather than a failure response.
var errBadInput = errors.New("bad input")

// payloads returns recv for the payload messages of a client stream: first's payload (if any)
// and then those of next, each decoded; io.EOF at the end. A payload that does not decode is
// returned wrapped in errBadInput and remembered in bad (recv may run on another goroutine).
func payloads(first *pb.ActionCommand, next func() (*pb.ActionCommand, error), decode func(*anypb.Any) (proto.Message, error), bad *atomic.Pointer[error]) func() (proto.Message, error) {
	pendingFirst := first.GetPayload() != nil
	return func() (proto.Message, error) {
		var p *anypb.Any
		if pendingFirst {
			p, pendingFirst = first.GetPayload(), false
		} else {
			m, err := next()
			if err != nil {
				return nil, err // io.EOF at the end
			}
			p = m.GetPayload()
		}
		in, err := decode(p)
		if err != nil {
			err = fmt.Errorf("%w: %w", errBadInput, err)
			bad.Store(&err)
			return nil, err
		}
		return in, nil
	}
}
