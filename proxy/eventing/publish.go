package eventing

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/streams"
)

// ErrPublish reports a reply that could not be published to its out topic
// (NATS unavailable): the call may be retried.
var ErrPublish = errors.New("publish to topic failed")

// Publisher publishes the replies of methods with (cloudstate.eventing).out
// to their topics. It is safe for concurrent use.
type Publisher struct {
	storage streams.Config
	js      jetstream.JetStream
	out     map[string]string // method path -> topic
	m       *metrics
}

func newPublisher(storage streams.Config, js jetstream.JetStream, ev *model.Eventing, m *metrics) *Publisher {
	p := &Publisher{storage: storage, js: js, m: m}
	if ev != nil {
		p.out = ev.Out
	}
	return p
}

// Publish publishes a reply of m to m's out topic, if it has one, as a
// CloudEvent in binary mode with id (unless the reply's metadata sets
// ce-id) as its Nats-Msg-Id, so a retried publish is stored once. A call
// that gave no reply publishes nothing.
func (p *Publisher) Publish(ctx context.Context, m *model.Method, r *cloudstate.Reply, id string) error {
	topic := p.out[m.Path]
	if topic == "" || r.GetPayload() == nil {
		return nil
	}
	ev, err := outEvent(r.GetPayload(), r.GetMetadata(), string(m.Service.Desc.FullName()), id)
	if err != nil {
		return fmt.Errorf("publish to topic %s: %w", topic, err)
	}
	msg, err := projections.NATSMsg(TopicSubject(p.storage, topic), ev, false)
	if err != nil {
		return fmt.Errorf("publish to topic %s: %w", topic, err)
	}
	msg.Header.Set(jetstream.MsgIDHeader, ev.ID())
	if _, err := p.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrPublish, topic, err)
	}
	p.m.published.WithLabelValues(string(m.Service.Desc.FullName()), topic).Inc()
	return nil
}
