package eventing

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/internal/backoff"
	"github.com/jetstate/jetstate/internal/deadletter"
	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/streams"
)

// delivery is one event on its way to the function.
type delivery struct {
	payload *anypb.Any
	ev      *event.Event
	index   int // within the journal message; 0 for topics
	seq     uint64
}

// process hands every event of one message to the function (or to the
// dead-letter subject) and acknowledges it. It reports false if ctx ended
// first; the message is then not acknowledged.
func (s *subscriber) process(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata) bool {
	var (
		events []delivery
		err    error
	)
	if s.sub.EventLog != "" {
		events, err = s.journalEvents(msg, md)
	} else {
		events, err = s.topicEvents(msg, md)
	}
	if err != nil {
		if !s.deadLetter(ctx, msg, md, -1, nil, "", deadletter.CauseBadEvent, err, 0) {
			return false
		}
		return s.ack(ctx, msg)
	}
	for _, d := range events {
		if !s.handle(ctx, msg, md, d) {
			return false
		}
	}
	s.e.m.lag.WithLabelValues(s.service, s.source).Observe(time.Since(md.Timestamp).Seconds())
	return s.ack(ctx, msg)
}

func (s *subscriber) ack(ctx context.Context, msg jetstream.Msg) bool {
	if err := msg.Ack(); err != nil {
		// It comes again, with the same ids.
		s.log.WarnContext(ctx, "ack", "subject", msg.Subject(), "error", err)
	}
	return true
}

// journalEvents decodes a journal message into the events of one command.
func (s *subscriber) journalEvents(msg jetstream.Msg, md *jetstream.MsgMetadata) ([]delivery, error) {
	st := s.e.cfg.Storage
	ent, err := st.ParseSubject(msg.Subject())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", projections.ErrBadEvent, err)
	}
	recs, err := streams.DecodeEntry(md.Sequence.Stream, md.Timestamp, msg.Data())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", projections.ErrBadEvent, err)
	}
	key := ent.Key
	if !utf8.ValidString(key) {
		key = streams.EncodeToken(key) // CloudEvents strings are Unicode
	}
	out := make([]delivery, len(recs))
	for i, rec := range recs {
		id := projections.EventID(s.stream, md.Sequence.Stream, i)
		out[i] = delivery{
			payload: &anypb.Any{TypeUrl: rec.Type, Value: rec.Data},
			ev:      eventLogEvent(id, ent.Type, key, rec.Type, rec.Seq, rec.Time),
			index:   i,
			seq:     rec.Seq,
		}
	}
	return out, nil
}

// topicEvents decodes a topic message.
func (s *subscriber) topicEvents(msg jetstream.Msg, md *jetstream.MsgMetadata) ([]delivery, error) {
	nm := &nats.Msg{Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()}
	payload, ev, err := topicMessage(nm, s.sub.Topic, projections.EventID(s.stream, md.Sequence.Stream, 0), md.Timestamp)
	if err != nil {
		return nil, err
	}
	return []delivery{{payload: payload, ev: ev}}, nil
}

// handle offers one event to its method until the function accepts it,
// MaxTries are used up (then it is dead-lettered) or ctx ends (false).
func (s *subscriber) handle(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, d delivery) bool {
	m := s.sub.MethodFor(d.payload.GetTypeUrl())
	if m == nil {
		s.e.m.ignored.WithLabelValues(s.service, s.source).Inc()
		s.log.DebugContext(ctx, "no method takes the event", "type", d.payload.GetTypeUrl(), "id", d.ev.ID())
		return true
	}
	if !m.TakesAny() {
		if _, err := m.Decode(d.payload.GetValue()); err != nil {
			return s.deadLetter(ctx, msg, md, d.index, &d, m.Path, deadletter.CauseBadEvent, err, 0)
		}
	}
	// The event's trace (the traceparent its journal message or topic
	// message carries) continues into the call.
	ctx, span := s.e.cfg.Tracer.Remote(ctx, SpanDeliver, trace.SpanKindConsumer, tracing.Headers(msg.Headers()))
	defer span.End()
	if span.On() {
		span.String("messaging.system", "nats")
		span.String("messaging.destination.name", msg.Subject())
		span.String("messaging.consumer.group.name", s.name)
		span.String("cloudevents.event_id", d.ev.ID())
		span.String("rpc.method", m.Path)
	}
	tries, err := retry(ctx, s.e.cfg, func() error { return s.deliver(ctx, m, d) }, func(try int, err error) {
		s.e.m.failures.WithLabelValues(s.service, s.source).Inc()
		s.log.WarnContext(ctx, "eventing call failed", "method", m.Path, "id", d.ev.ID(), "try", try, "error", err)
		_ = msg.InProgress()
	})
	span.Fail(err)
	switch {
	case err == nil:
		s.e.m.delivered.WithLabelValues(s.service, s.source).Inc()
		return true
	case ctx.Err() != nil:
		return false
	case badEventError(err):
		return s.deadLetter(ctx, msg, md, d.index, &d, m.Path, deadletter.CauseBadEvent, err, tries)
	}
	return s.deadLetter(ctx, msg, md, d.index, &d, m.Path, deadletter.CauseRetries, err, tries)
}

// SpanDeliver names the span of one event's delivery to its method (with
// its retries), a child of the trace the event carries.
const SpanDeliver = "jetstate.eventing.deliver"

// badEventError reports a failure that the event itself causes, so no
// retry can help: its entity key names no entity.
func badEventError(err error) bool {
	return errors.Is(err, streams.ErrInvalidKey)
}

// retry calls try until it succeeds (nil), MaxTries calls have failed or
// one failed for a reason of the event's own (badEventError; the last
// error) or ctx ends (ctx's error), waiting between tries with
// exponential back-off from RetryMin to RetryMax, each wait jittered to
// [w/2, w]. failed is called after each failed try. It returns the number
// of tries made.
func retry(ctx context.Context, cfg Config, try func() error, failed func(n int, err error)) (int, error) {
	bo := backoff.Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax}
	for n := 1; ; n++ {
		err := try()
		if err == nil {
			return n, nil
		}
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		failed(n, err)
		if n >= cfg.MaxTries || badEventError(err) {
			return n, err
		}
		if err := bo.Wait(ctx); err != nil {
			return n, err
		}
	}
}

// deliver makes one call of m with the event and publishes the replies if
// m has an out topic. The call may run past ctx's end up to the command
// timeout, so an event in hand at shutdown is finished, not abandoned,
// unless the sidecar's drain time runs out first (abort: the event is then
// handed back and delivered again).
func (s *subscriber) deliver(ctx context.Context, m *model.Method, d delivery) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.e.cfg.CommandTimeout)
	defer cancel()
	if abort := s.e.abort; abort != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			select {
			case <-abort:
				cancel()
			case <-stop:
			}
		}()
	}
	out := outIDs{base: d.ev.ID() + ":" + m.Path}
	return s.e.caller.Deliver(cctx, m, d.payload, eventMetadata(d.ev), func(r *cloudstate.Reply) error {
		return s.e.pub.Publish(cctx, m, r, out.next())
	})
}

// outIDs numbers the replies of one eventing call: their ids (and
// Nats-Msg-Ids) are the same on every redelivery of the event, so the topic
// stream drops the copies.
type outIDs struct {
	base string
	n    int
}

func (o *outIDs) next() string {
	o.n++
	return o.base + ":" + strconv.Itoa(o.n)
}

// deadLetter publishes an event (or a whole message, index -1) the
// subscription gives up on to the service's dead-letter subject through the
// shared publisher (internal/deadletter), retrying until it is out or ctx
// ends (false): the consumer moves past an event only once its dead letter
// is out. An event-log event travels as its CloudEvent in binary mode (the
// ce-* attributes percent-encoded, as the binding says) with the journal's
// Any as the body; a topic message keeps its own headers and body. A body
// that would make the dead letter too large is left out (HeaderDataOmitted).
// Redeliveries of one event make one dead letter (Nats-Msg-Id).
func (s *subscriber) deadLetter(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, index int, d *delivery, method, cause string, reason error, tries int) bool {
	l := deadletter.Letter{
		Subject:   DeadLetterSubject(s.e.cfg.Storage),
		Header:    nats.Header{},
		Cause:     cause,
		Reason:    reason,
		Tries:     tries,
		StreamSeq: md.Sequence.Stream,
		Index:     index,
		MsgID:     "dead:" + s.name + ":" + projections.EventID(s.stream, md.Sequence.Stream, index),
	}
	if s.sub.EventLog == "" {
		for k, vs := range msg.Headers() {
			l.Header[k] = append([]string(nil), vs...) // Nats-* ones are left out by the publisher
		}
		l.Header.Set(HeaderTopicSubject, msg.Subject())
		l.Data = msg.Data()
	} else {
		l.JournalSubject = msg.Subject()
		l.Data = msg.Data()
		if d != nil {
			// The journal's Any, as the function would have received it.
			if b, err := proto.Marshal(d.payload); err == nil {
				l.Data = b
			}
			l.Event = d.ev
			l.EventType = d.payload.GetTypeUrl()
		}
	}
	l.Header.Set(HeaderConsumer, s.name)
	if method != "" {
		l.Header.Set(HeaderMethod, method)
	}
	if err := s.e.dl.Publish(ctx, l, func() { _ = msg.InProgress() }); err != nil {
		return false // ctx ended
	}
	s.e.m.deadLetters.WithLabelValues(s.service, s.source, cause).Inc()
	s.log.WarnContext(ctx, "event dead-lettered", "dead_letter_subject", l.Subject, "cause", cause, "reason", reason,
		"tries", tries, "method", method, "subject", msg.Subject(), "stream_seq", md.Sequence.Stream, "index", index)
	return true
}
