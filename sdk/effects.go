package sdk

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
)

// effects collects what a command handler asked for besides its reply: a failure, a forward and
// side effects. It is shared by the contexts of every entity kind. The first failure wins;
// after it every further request is ignored, because a failed command has no effects, except
// side effects where keepSideEffects is set (actions keep them on failure).
type effects struct {
	keepSideEffects bool
	failed          bool
	description     string
	forward         *cloudstate.Forward
	sideEffects     []*cloudstate.SideEffect
}

func (e *effects) fail(description string) {
	if e.failed {
		return
	}
	e.failed = true
	e.description = description
}

func (e *effects) addForward(service, command string, payload proto.Message) {
	if e.failed {
		return
	}
	if e.forward != nil {
		e.fail(fmt.Sprintf("forward to %s/%s: the command already forwards to %s/%s", service, command, e.forward.GetServiceName(), e.forward.GetCommandName()))
		return
	}
	a, err := targetPayload(service, command, payload)
	if err != nil {
		e.fail(fmt.Sprintf("forward: %v", err))
		return
	}
	e.forward = &cloudstate.Forward{ServiceName: service, CommandName: command, Payload: a}
}

func (e *effects) addSideEffect(service, command string, payload proto.Message, synchronous bool) {
	if e.failed && !e.keepSideEffects {
		return
	}
	a, err := targetPayload(service, command, payload)
	if err != nil {
		e.fail(fmt.Sprintf("side effect: %v", err))
		return
	}
	e.sideEffects = append(e.sideEffects, &cloudstate.SideEffect{ServiceName: service, CommandName: command, Payload: a, Synchronous: synchronous})
}

// clientAction is the action for a command that did not fail: the forward if there is one,
// else a reply with the handler's result. A handler that forwards must not also reply.
func (e *effects) clientAction(reply proto.Message) (*cloudstate.ClientAction, error) {
	if e.forward != nil {
		if !isNil(reply) {
			return nil, fmt.Errorf("the handler returned a reply and forwarded to %s/%s; a forwarding handler returns nil", e.forward.GetServiceName(), e.forward.GetCommandName())
		}
		return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Forward{Forward: e.forward}}, nil
	}
	if reply == nil {
		return nil, fmt.Errorf("the handler returned neither a reply nor a forward")
	}
	a, err := marshalAny(reply)
	if err != nil {
		return nil, fmt.Errorf("reply: %w", err)
	}
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: &cloudstate.Reply{Payload: a}}}, nil
}

// failureAction is the client action of a failed command.
func failureAction(commandID int64, description string, restart bool) *cloudstate.ClientAction {
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: &cloudstate.Failure{
		CommandId: commandID, Description: description, Restart: restart,
	}}}
}

// targetPayload checks that service/command names a unary method known to this process and that
// payload is of its input type, and encodes the payload.
func targetPayload(service, command string, payload proto.Message) (*anypb.Any, error) {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return nil, fmt.Errorf("unknown service %q", service)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%q is not a service", service)
	}
	md := sd.Methods().ByName(protoreflect.Name(command))
	if md == nil {
		return nil, fmt.Errorf("service %s has no method %q", service, command)
	}
	if payload == nil {
		return nil, fmt.Errorf("%s/%s: nil payload", service, command)
	}
	if got, want := payload.ProtoReflect().Descriptor().FullName(), md.Input().FullName(); got != want {
		return nil, fmt.Errorf("%s/%s takes %s, not %s", service, command, want, got)
	}
	return marshalAny(payload)
}
