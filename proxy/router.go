package proxy

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/streams"
)

// maxDepth bounds chains of forwards and side effects.
const maxDepth = 32

// asyncEffectTimeout bounds a fire-and-forget side effect.
const asyncEffectTimeout = time.Minute

// Response is what a call returns to the client.
type Response struct {
	// Payload is the reply message (its type URL names its type).
	Payload *anypb.Any
	// Metadata becomes response headers.
	Metadata *cloudstate.Metadata
}

// Call runs one client request on method path ("/<service>/<method>") with
// the serialized request message, and returns the reply after all state
// changes are stored, synchronous side effects have run and forwards have
// been followed.
func (p *Proxy) Call(ctx context.Context, path string, request []byte, md *cloudstate.Metadata) (Response, error) {
	m := p.model.Methods[path]
	if m == nil {
		return Response{}, fmt.Errorf("%w: %s", ErrUnknownMethod, path)
	}
	resp, err := p.call(ctx, m, &anypb.Any{TypeUrl: m.InputURL, Value: request}, md, 0, path)
	if err != nil {
		return Response{}, err
	}
	// A method with (cloudstate.eventing).out publishes its reply too.
	if err := p.publishReply(ctx, m, resp, newOutID()); err != nil {
		return Response{}, err
	}
	return resp, nil
}

// call dispatches to the method's entity type, then runs side effects in
// order and follows the client action. trace describes how we got here, for
// the function's error reports.
func (p *Proxy) call(ctx context.Context, m *Method, payload *anypb.Any, md *cloudstate.Metadata, depth int, trace string) (Response, error) {
	if depth > maxDepth {
		return Response{}, fmt.Errorf("%w: %s", ErrForwardLoop, trace)
	}
	var (
		action  *cloudstate.ClientAction
		effects []*cloudstate.SideEffect
	)
	msg, err := m.decode(payload.GetValue())
	if err != nil {
		return Response{}, err
	}
	switch m.Service.EntityType {
	case EventSourced, ValueEntity:
		key, err := m.entityKey(msg)
		if err != nil {
			return Response{}, err
		}
		if err := (streams.Entity{Type: m.Service.PersistenceID, Key: key}).Validate(); err != nil {
			return Response{}, fmt.Errorf("%w: %v", ErrInvalidEntityKey, err)
		}
		res, err := p.route(ctx, m, key, payload)
		if err != nil {
			return Response{}, err
		}
		action, effects = res.action, res.effects
	case Action:
		p.metrics.load.function.begin()
		resp, err := p.actions.HandleUnary(ctx, &actionpb.ActionCommand{
			ServiceName: string(m.Service.Desc.FullName()),
			Name:        string(m.Desc.Name()),
			Payload:     payload,
			Metadata:    md,
		})
		p.metrics.load.function.end()
		if err != nil {
			return Response{}, fmt.Errorf("%w: action %s: %v", ErrEntityFailed, m.Path, err)
		}
		action, effects = actionToClientAction(resp), resp.GetSideEffects()
	default:
		return Response{}, fmt.Errorf("%w: %s (%s is not served yet)", ErrUnknownMethod, m.Path, m.Service.EntityType)
	}

	return p.complete(ctx, m, action, effects, depth, trace)
}

// complete runs a reply's side effects in order (synchronous ones awaited,
// the others started in the background) and then follows its client
// action: a reply is returned, a forward is called and its reply returned,
// a failure is returned as *UserFailure. No client action gives a Response
// with a nil Payload.
func (p *Proxy) complete(ctx context.Context, m *Method, action *cloudstate.ClientAction, effects []*cloudstate.SideEffect, depth int, trace string) (Response, error) {
	for _, se := range effects {
		target, err := p.target(ctx, se.GetServiceName(), se.GetCommandName(), "side effect of "+trace)
		if err != nil {
			return Response{}, err
		}
		next := fmt.Sprintf("%s (side effect of %s)", target.Path, trace)
		if se.GetSynchronous() {
			if _, err := p.call(ctx, target, se.GetPayload(), se.GetMetadata(), depth+1, next); err != nil {
				return Response{}, err
			}
			continue
		}
		p.async.Go(func() {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), asyncEffectTimeout)
			defer cancel()
			if _, err := p.call(actx, target, se.GetPayload(), se.GetMetadata(), depth+1, next); err != nil {
				p.log.Warn("asynchronous side effect failed", "target", target.Path, "trace", trace, "error", err)
			}
		})
	}

	switch a := action.GetAction().(type) {
	case *cloudstate.ClientAction_Reply:
		if got := a.Reply.GetPayload().GetTypeUrl(); got != m.OutputURL && got != "" {
			p.reportError(ctx, fmt.Sprintf("%s replied with %s, expected %s", trace, got, m.OutputURL))
		}
		payload := a.Reply.GetPayload()
		if payload == nil {
			payload = &anypb.Any{TypeUrl: m.OutputURL}
		}
		return Response{Payload: payload, Metadata: a.Reply.GetMetadata()}, nil
	case *cloudstate.ClientAction_Forward:
		target, err := p.target(ctx, a.Forward.GetServiceName(), a.Forward.GetCommandName(), "forward from "+trace)
		if err != nil {
			return Response{}, err
		}
		return p.call(ctx, target, a.Forward.GetPayload(), a.Forward.GetMetadata(), depth+1,
			fmt.Sprintf("%s (forwarded from %s)", target.Path, trace))
	case *cloudstate.ClientAction_Failure:
		return Response{}, &UserFailure{Description: a.Failure.GetDescription()}
	}
	return Response{}, nil
}

// target finds the method a forward or side effect names; an unknown one is
// reported to the user function and fails the request.
func (p *Proxy) target(ctx context.Context, service, command, trace string) (*Method, error) {
	if svc := p.model.Services[service]; svc != nil {
		if m := svc.Methods[command]; m != nil {
			return m, nil
		}
	}
	msg := fmt.Sprintf("unknown service or command %s/%s in %s", service, command, trace)
	p.reportError(ctx, msg)
	return nil, fmt.Errorf("%w: %s", ErrUnknownMethod, msg)
}

// reportError tells the user function about its own mistake (best effort).
func (p *Proxy) reportError(ctx context.Context, msg string) {
	p.log.Warn("user function error", "message", msg)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := p.discovery.ReportError(rctx, &cloudstate.UserFunctionError{Message: msg}); err != nil {
		p.log.Warn("reportError failed", "error", err)
	}
}

// actionToClientAction turns an action's response into the common shape.
func actionToClientAction(r *actionpb.ActionResponse) *cloudstate.ClientAction {
	switch x := r.GetResponse().(type) {
	case *actionpb.ActionResponse_Reply:
		return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: x.Reply}}
	case *actionpb.ActionResponse_Forward:
		return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Forward{Forward: x.Forward}}
	case *actionpb.ActionResponse_Failure:
		return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: x.Failure}}
	}
	return nil
}
