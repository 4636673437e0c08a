package proxy

import (
	"context"
	"fmt"
	"io"
	"sync"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/proxy/entity"
	"github.com/jetstate/jetstate/proxy/model"
)

// The router as its parts see it. Each adapter is the one way a part calls
// back into the router, so that no part reaches into the Proxy.

// clientCalls serves the ingress (ingress.Caller): the calls of clients.
// Replies of methods with an out topic are published too, with fresh ids.
type clientCalls struct{ p *Proxy }

func (c clientCalls) Call(ctx context.Context, m *model.Method, request []byte, md *cloudstate.Metadata) (*cloudstate.Reply, error) {
	r, err := c.p.call(ctx, m, &anypb.Any{TypeUrl: m.InputURL, Value: request}, md, 0, m.Path)
	if err != nil {
		return nil, err
	}
	if err := c.p.eventing.Publisher().Publish(ctx, m, r, newOutID()); err != nil {
		return nil, err
	}
	return r, nil
}

func (c clientCalls) Stream(ctx context.Context, m *model.Method, md *cloudstate.Metadata, recv func() ([]byte, error), send func(*cloudstate.Reply) error) error {
	payloads := func() (*anypb.Any, error) {
		data, err := recv()
		if err != nil {
			return nil, err
		}
		if _, err := m.Decode(data); err != nil {
			return nil, err
		}
		return &anypb.Any{TypeUrl: m.InputURL, Value: data}, nil
	}
	publish := func(r *cloudstate.Reply) error {
		if err := c.p.eventing.Publisher().Publish(ctx, m, r, newOutID()); err != nil {
			return err
		}
		return send(r)
	}
	return c.p.stream(ctx, m, md, payloads, publish, m.Path)
}

// eventCalls serves eventing (eventing.Caller): one event for one method.
// Entity commands carry no metadata (as the reference proxy's); eventing
// publishes the replies itself, with ids stable over redeliveries.
type eventCalls struct{ p *Proxy }

func (c eventCalls) Deliver(ctx context.Context, m *model.Method, payload *anypb.Any, md *cloudstate.Metadata, reply func(*cloudstate.Reply) error) error {
	trace := m.Path + " (eventing)"
	if m.Service.EntityType != model.Action {
		md = nil
	}
	if !m.Desc.IsStreamingServer() {
		r, err := c.p.call(ctx, m, payload, md, 0, trace)
		if err != nil {
			return err
		}
		return reply(r)
	}
	sent := false
	once := func() (*anypb.Any, error) {
		if sent {
			return nil, io.EOF
		}
		sent = true
		return payload, nil
	}
	return c.p.stream(ctx, m, md, once, reply, trace)
}

// local serves sharding (shard.Local): the commands of the shards this
// sidecar serves run on its entity runtimes.
type local struct{ p *Proxy }

func (l local) Handle(ctx context.Context, svc *model.Service, key, name string, payload *anypb.Any) (entity.Result, error) {
	rt := l.p.runtimes[string(svc.Desc.FullName())]
	if rt == nil {
		return entity.Result{}, fmt.Errorf("%w: %s has no entities", model.ErrUnknownMethod, svc.Desc.FullName())
	}
	return rt.Handle(ctx, key, name, payload)
}

func (l local) PassivateShard(shard int) {
	var wg sync.WaitGroup
	for _, rt := range l.p.runtimes {
		wg.Go(func() { rt.PassivateShard(shard) })
	}
	wg.Wait()
}
