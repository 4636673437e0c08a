package proxy

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nuid"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/protocol/cloudstate"
	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/proxy/entity"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/streams"
)

// maxDepth bounds chains of forwards and side effects.
const maxDepth = 32

// asyncEffectTimeout bounds a fire-and-forget side effect.
const asyncEffectTimeout = time.Minute

// call dispatches one command to m's entity type (an entity command goes
// where its shard is served), then runs the reply's side effects in order
// and follows its client action. trace describes how we got here, for the
// function's error reports.
func (p *Proxy) call(ctx context.Context, m *model.Method, payload *anypb.Any, md *cloudstate.Metadata, depth int, trace string) (*cloudstate.Reply, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: %s", model.ErrForwardLoop, trace)
	}
	var res entity.Result
	switch m.Service.EntityType {
	case model.EventSourced, model.ValueEntity:
		key, err := p.entityKey(m, payload)
		if err != nil {
			return nil, err
		}
		if res, err = p.shards.Load().Route(ctx, m, key, payload); err != nil {
			return nil, err
		}
	case model.CRDT:
		// Not routed: every replica serves every CRDT entity.
		key, err := p.entityKey(m, payload)
		if err != nil {
			return nil, err
		}
		if res, err = p.crdts[string(m.Service.Desc.FullName())].Handle(ctx, key, string(m.Desc.Name()), payload); err != nil {
			return nil, err
		}
	case model.Action:
		// An event handed to a method taking google.protobuf.Any is its
		// payload as it is (eventing); anything else must decode.
		if !m.TakesAny() || payload.GetTypeUrl() == m.InputURL {
			if _, err := m.Decode(payload.GetValue()); err != nil {
				return nil, err
			}
		}
		actx, span := tracing.Start(ctx, SpanAction, oteltrace.SpanKindClient)
		if span.On() {
			span.String("rpc.service", string(m.Service.Desc.FullName()))
			span.String("rpc.method", string(m.Desc.Name()))
		}
		done := p.load.Function()
		resp, err := p.actions.HandleUnary(actx, &actionpb.ActionCommand{
			ServiceName: string(m.Service.Desc.FullName()),
			Name:        string(m.Desc.Name()),
			Payload:     payload,
			Metadata:    traceMetadata(actx, md),
		})
		done()
		span.Fail(err)
		span.End()
		if err != nil {
			return nil, fmt.Errorf("%w: action %s: %v", entity.ErrEntityFailed, m.Path, err)
		}
		res = actionResult(resp)
	default:
		return nil, fmt.Errorf("%w: %s (%s is not served yet)", model.ErrUnknownMethod, m.Path, m.Service.EntityType)
	}
	return p.complete(ctx, m, res, depth, trace)
}

// entityKey decodes an entity command's payload and returns its key,
// refused if the store cannot take it.
func (p *Proxy) entityKey(m *model.Method, payload *anypb.Any) (string, error) {
	msg, err := m.Decode(payload.GetValue())
	if err != nil {
		return "", err
	}
	key, err := m.KeyOf(msg)
	if err != nil {
		return "", err
	}
	if err := (streams.Entity{Type: m.Service.PersistenceID, Key: key}).Validate(); err != nil {
		return "", err
	}
	return key, nil
}

// complete runs a reply's side effects in order (synchronous ones awaited,
// the others started in the background) and then follows its client
// action: a reply is returned, a forward is called and its reply returned,
// a failure is returned as *model.UserFailure. No client action gives a
// reply with a nil payload.
func (p *Proxy) complete(ctx context.Context, m *model.Method, res entity.Result, depth int, trace string) (*cloudstate.Reply, error) {
	for _, se := range res.Effects {
		target, err := p.target(ctx, se.GetServiceName(), se.GetCommandName(), "side effect of "+trace)
		if err != nil {
			return nil, err
		}
		next := fmt.Sprintf("%s (side effect of %s)", target.Path, trace)
		if se.GetSynchronous() {
			sctx, span := effectSpan(ctx, SpanSideEffect, target, true)
			_, err := p.call(sctx, target, se.GetPayload(), se.GetMetadata(), depth+1, next)
			span.Fail(err)
			span.End()
			if err != nil {
				return nil, err
			}
			continue
		}
		p.async.Go(func() {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), asyncEffectTimeout)
			defer cancel()
			actx, stop := p.untilAbort(actx)
			defer stop()
			actx, span := effectSpan(actx, SpanSideEffect, target, false)
			defer span.End()
			if _, err := p.call(actx, target, se.GetPayload(), se.GetMetadata(), depth+1, next); err != nil {
				span.Fail(err)
				p.log.Warn("asynchronous side effect failed", "target", target.Path, "trace", trace, "error", err)
			}
		})
	}

	switch a := res.Action.GetAction().(type) {
	case *cloudstate.ClientAction_Reply:
		if got := a.Reply.GetPayload().GetTypeUrl(); got != m.OutputURL && got != "" {
			p.reportError(ctx, fmt.Sprintf("%s replied with %s, expected %s", trace, got, m.OutputURL))
		}
		payload := a.Reply.GetPayload()
		if payload == nil {
			payload = &anypb.Any{TypeUrl: m.OutputURL}
		}
		return &cloudstate.Reply{Payload: payload, Metadata: a.Reply.GetMetadata()}, nil
	case *cloudstate.ClientAction_Forward:
		target, err := p.target(ctx, a.Forward.GetServiceName(), a.Forward.GetCommandName(), "forward from "+trace)
		if err != nil {
			return nil, err
		}
		fctx, span := effectSpan(ctx, SpanForward, target, true)
		defer span.End()
		reply, err := p.call(fctx, target, a.Forward.GetPayload(), a.Forward.GetMetadata(), depth+1,
			fmt.Sprintf("%s (forwarded from %s)", target.Path, trace))
		span.Fail(err)
		return reply, err
	case *cloudstate.ClientAction_Failure:
		return nil, &model.UserFailure{Description: a.Failure.GetDescription()}
	}
	return &cloudstate.Reply{}, nil
}

// effectSpan starts the span of a side effect or forward to target, when
// ctx is traced.
func effectSpan(ctx context.Context, name string, target *model.Method, synchronous bool) (context.Context, tracing.Span) {
	ctx, span := tracing.Start(ctx, name, oteltrace.SpanKindInternal)
	if span.On() {
		span.String("rpc.service", string(target.Service.Desc.FullName()))
		span.String("rpc.method", string(target.Desc.Name()))
		span.Bool("jetstate.synchronous", synchronous)
	}
	return ctx, span
}

// target finds the method a forward or side effect names; an unknown one is
// reported to the user function and fails the request.
func (p *Proxy) target(ctx context.Context, service, command, trace string) (*model.Method, error) {
	if svc := p.model.Services[service]; svc != nil {
		if m := svc.Methods[command]; m != nil {
			return m, nil
		}
	}
	msg := fmt.Sprintf("unknown service or command %s/%s in %s", service, command, trace)
	p.reportError(ctx, msg)
	return nil, fmt.Errorf("%w: %s", model.ErrUnknownMethod, msg)
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

// actionResult turns an action's response into the shape entity replies
// have.
func actionResult(r *actionpb.ActionResponse) entity.Result {
	res := entity.Result{Effects: r.GetSideEffects()}
	switch x := r.GetResponse().(type) {
	case *actionpb.ActionResponse_Reply:
		res.Action = &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: x.Reply}}
	case *actionpb.ActionResponse_Forward:
		res.Action = &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Forward{Forward: x.Forward}}
	case *actionpb.ActionResponse_Failure:
		res.Action = &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: x.Failure}}
	}
	return res
}

// newOutID is the id of a reply a client call publishes.
func newOutID() string { return nuid.Next() }
