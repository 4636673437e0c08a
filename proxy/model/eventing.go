package model

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
)

// eventingOption is the number of the (cloudstate.eventing) method option.
const eventingOption = 1081

// anyName is the input type of a method that takes every event of its source.
var anyName = (&anypb.Any{}).ProtoReflect().Descriptor().FullName()

// Eventing is what a function's (cloudstate.eventing) method options ask
// for: the sources its methods consume and the topics their replies go to.
// It is part of the Model and immutable once built.
type Eventing struct {
	// Subscriptions are the consumers, one per (subscribing service,
	// consumer group, source), in a stable order.
	Subscriptions []*Subscription
	// Out maps a method's gRPC path to the topic its replies are published
	// to (out.topic), for methods called by clients and by eventing alike.
	Out map[string]string
}

// Subscription is one consumer group of one service on one source: a
// durable JetStream consumer shared by every sidecar of the service, whose
// events go to the group's methods by input type.
type Subscription struct {
	// Service is the subscribing user service.
	Service *Service
	// Group is the consumer group (default: the service's full name).
	Group string
	// EventLog is the persistence id of an event-sourced entity of this
	// function whose journal is consumed, or "".
	EventLog string
	// Topic is the topic consumed, or "".
	Topic string
	// ByType maps an input message's full name to the method taking it.
	ByType map[protoreflect.FullName]*Method
	// Any is the method taking google.protobuf.Any, the fallback; or nil.
	Any *Method
}

// Source names the subscription's source for logs and metrics:
// "event_log:<pid>" or "topic:<name>".
func (s *Subscription) Source() string {
	if s.EventLog != "" {
		return "event_log:" + s.EventLog
	}
	return "topic:" + s.Topic
}

// MethodFor picks the method for a payload type URL: the one whose input is
// the message the URL names, else the Any fallback; nil if none takes it.
// CloudState's JSON and primitive payloads (json.cloudstate.io/...,
// p.cloudstate.io/...) name no message and only reach the fallback.
func (s *Subscription) MethodFor(typeURL string) *Method {
	if name, ok := strings.CutPrefix(typeURL, TypeURLPrefix); ok {
		if m := s.ByType[protoreflect.FullName(name)]; m != nil {
			return m
		}
	}
	return s.Any
}

// methodEventing reads a method's (cloudstate.eventing) option from the
// options' wire form, so it works whether or not the extension was
// registered when the descriptors were parsed. It returns nil if the method
// has none.
func methodEventing(md protoreflect.MethodDescriptor) (*cloudstate.Eventing, error) {
	opts := md.Options()
	if opts == nil {
		return nil, nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(opts)
	if err != nil {
		return nil, err
	}
	var out *cloudstate.Eventing
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num == eventingOption && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			if out == nil {
				out = &cloudstate.Eventing{}
			}
			// Repeated occurrences of a message field merge, as protobuf says.
			if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(v, out); err != nil {
				return nil, err
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return out, nil
}

// buildEventing reads every method's eventing option and checks them
// against the model, calling fail for each problem: a source naming no
// event-sourced entity of this function, a method with in or out but no
// topic, two methods of one group taking the same input type, a method
// publishing to the topic it consumes, and methods that cannot take a
// single event (client-streaming) or whose entity key cannot be read from
// an Any.
func buildEventing(m *Model, fail func(format string, args ...any)) *Eventing {
	ev := &Eventing{Out: map[string]string{}}
	pids := map[string]bool{}
	for _, svc := range m.Services {
		if svc.EntityType == EventSourced {
			pids[svc.PersistenceID] = true
		}
	}
	type key struct{ service, group, eventLog, topic string }
	subs := map[key]*Subscription{}
	names := make([]string, 0, len(m.Services))
	for name := range m.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names { // in a stable order, for stable problem reports
		svc := m.Services[name]
		methods := svc.Desc.Methods()
		for i := range methods.Len() {
			meth := svc.Methods[string(methods.Get(i).Name())]
			opt, err := methodEventing(meth.Desc)
			if err != nil {
				fail("%s: (cloudstate.eventing) option does not parse: %v", meth.Path, err)
				continue
			}
			if opt == nil {
				continue
			}
			if out := opt.GetOut(); out != nil {
				if out.GetTopic() == "" {
					fail("%s: (cloudstate.eventing).out names no topic", meth.Path)
				} else {
					ev.Out[meth.Path] = out.GetTopic()
				}
			}
			in := opt.GetIn()
			if in == nil {
				continue
			}
			k := key{service: string(svc.Desc.FullName()), group: in.GetConsumerGroup(), eventLog: in.GetEventLog(), topic: in.GetTopic()}
			if k.group == "" {
				k.group = k.service
			}
			switch {
			case k.eventLog == "" && k.topic == "":
				fail("%s: (cloudstate.eventing).in names neither a topic nor an event_log", meth.Path)
				continue
			case k.eventLog != "" && !pids[k.eventLog]:
				known := make([]string, 0, len(pids))
				for pid := range pids {
					known = append(known, pid)
				}
				slices.Sort(known)
				fail("%s: (cloudstate.eventing).in.event_log %q is not the persistence id of an event-sourced entity of this function (known: %s)",
					meth.Path, k.eventLog, strings.Join(known, ", "))
				continue
			case k.topic != "" && ev.Out[meth.Path] == k.topic:
				fail("%s: consumes and publishes to the same topic %q", meth.Path, k.topic)
				continue
			case meth.Desc.IsStreamingClient():
				fail("%s: an eventing consumer must take single events, not a client stream", meth.Path)
				continue
			case svc.EntityType != Action && meth.Desc.Input().FullName() == anyName:
				fail("%s: an entity method taking google.protobuf.Any cannot consume events (no entity key)", meth.Path)
				continue
			case svc.EntityType != Action && svc.EntityType != EventSourced && svc.EntityType != ValueEntity:
				fail("%s: %s methods cannot consume events", meth.Path, shortType(svc.EntityType))
				continue
			}
			sub := subs[k]
			if sub == nil {
				sub = &Subscription{Service: svc, Group: k.group, EventLog: k.eventLog, Topic: k.topic, ByType: map[protoreflect.FullName]*Method{}}
				subs[k] = sub
			}
			input := meth.Desc.Input().FullName()
			if input == anyName {
				if sub.Any != nil {
					fail("%s and %s both take google.protobuf.Any from %s in consumer group %q (give them distinct consumer groups)",
						sub.Any.Path, meth.Path, sub.Source(), k.group)
					continue
				}
				sub.Any = meth
				continue
			}
			if other := sub.ByType[input]; other != nil {
				fail("%s and %s both take %s from %s in consumer group %q (give them distinct consumer groups)",
					other.Path, meth.Path, input, sub.Source(), k.group)
				continue
			}
			sub.ByType[input] = meth
		}
	}
	for _, sub := range subs {
		ev.Subscriptions = append(ev.Subscriptions, sub)
	}
	slices.SortFunc(ev.Subscriptions, func(a, b *Subscription) int {
		return cmp.Or(cmp.Compare(a.Service.Desc.FullName(), b.Service.Desc.FullName()),
			cmp.Compare(a.Group, b.Group), cmp.Compare(a.Source(), b.Source()))
	})
	return ev
}

// String describes the subscription for logs.
func (s *Subscription) String() string {
	return fmt.Sprintf("%s (group %s) <- %s", s.Service.Desc.FullName(), s.Group, s.Source())
}
