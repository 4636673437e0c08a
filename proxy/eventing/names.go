package eventing

import (
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/streams"
)

// Names of eventing's JetStream resources. Topics and dead letters live in
// one stream per prefix, shared by every service: a topic is how services
// talk to each other.
//
//	stream   <prefix>_eventing, subjects <prefix>_topic.> and <prefix>_deadletter.>
//	topic    <prefix>_topic.<topic>            (the name escaped by streams.EncodeToken)
//	dead     <prefix>_deadletter.<service>     (one per jetstate service)
//	consumer on the journal stream: eventing=_<group>=_<pid>
//	         on the eventing stream: <service>=_<group>=_<topic>
//
// Group, pid and topic are escaped by streams.EncodeToken, whose output
// never holds "=_", so the names are unambiguous.

func prefixOf(c streams.Config) string {
	if c.Prefix == "" {
		return streams.DefaultPrefix
	}
	return c.Prefix
}

// EventingStream is the stream holding every topic and eventing dead letter
// of the prefix's services.
func EventingStream(c streams.Config) string { return c.EventingStream() }

// TopicSubject is the NATS subject of a topic.
func TopicSubject(c streams.Config, topic string) string {
	return prefixOf(c) + "_topic." + streams.EncodeToken(topic)
}

// DeadLetterSubject is where a service's eventing consumers put the events
// they gave up on.
func DeadLetterSubject(c streams.Config) string {
	return prefixOf(c) + "_deadletter." + c.Service
}

// ConsumerName is the durable JetStream consumer of a subscription: on the
// service's journal stream for an event log, on the eventing stream for a
// topic. Every sidecar of the service uses the same one, so each event is
// handled once per consumer group.
func ConsumerName(c streams.Config, s *model.Subscription) string {
	if s.EventLog != "" {
		return "eventing=_" + streams.EncodeToken(s.Group) + "=_" + streams.EncodeToken(s.EventLog)
	}
	return c.Service + "=_" + streams.EncodeToken(s.Group) + "=_" + streams.EncodeToken(s.Topic)
}

// filterSubject is the subjects a subscription's consumer reads.
func filterSubject(c streams.Config, s *model.Subscription) string {
	if s.EventLog != "" {
		// Every entity of the type: "<prefix>.<service>.<pid>.>".
		head := c.Subject(streams.Entity{Type: s.EventLog, Key: "x"})
		return head[:len(head)-1] + ">"
	}
	return TopicSubject(c, s.Topic)
}
