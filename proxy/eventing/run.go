package eventing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/internal/backoff"
	"github.com/jetstate/jetstate/internal/deadletter"
	"github.com/jetstate/jetstate/internal/keyq"
	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/streams"
)

// maxConsumerName is the longest consumer name the server accepts.
const maxConsumerName = 255

// Caller hands an event to the user function (the command router,
// package proxy).
type Caller interface {
	// Deliver calls m with one event's payload and CloudEvent metadata
	// (entity methods get it as a routed command, without metadata) and
	// hands each reply, after its side effects and forwards, to reply: one
	// for unary methods, any number for server streams.
	Deliver(ctx context.Context, m *model.Method, payload *anypb.Any, md *cloudstate.Metadata, reply func(*cloudstate.Reply) error) error
}

// Eventing runs a model's subscriptions and publishes replies to topics.
type Eventing struct {
	cfg    Config
	js     jetstream.JetStream
	caller Caller
	m      *metrics
	pub    *Publisher
	dl     *deadletter.Publisher
	subs   []*subscriber
	// abort, once closed, cancels the calls in hand that Run cannot stop
	// (they outlive its context up to the command timeout). Set by Run.
	abort <-chan struct{}
}

// New binds the model's eventing: it creates the eventing stream (if the
// function uses topics or subscriptions and the stream does not exist yet)
// and every subscription's durable consumer, so that nothing published once
// the sidecar is ready is missed. An error wrapping ErrUnservable cannot
// be fixed by retrying; others (NATS not available yet) can.
func New(ctx context.Context, cfg Config, js jetstream.JetStream, ev *model.Eventing, caller Caller) (*Eventing, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnservable, err)
	}
	cfg = cfg.withDefaults()
	m := newMetrics(cfg.Registry)
	dl, err := deadletter.New(js, deadletter.Config{RetryMin: cfg.RetryMin, RetryMax: cfg.RetryMax, Logger: cfg.Log})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnservable, err)
	}
	e := &Eventing{cfg: cfg, js: js, caller: caller, m: m, pub: newPublisher(cfg.Storage, js, ev, m), dl: dl}
	if ev == nil || len(ev.Subscriptions) == 0 && len(ev.Out) == 0 {
		return e, nil
	}
	for _, sub := range ev.Subscriptions {
		if name := ConsumerName(cfg.Storage, sub); len(name) > maxConsumerName {
			return nil, fmt.Errorf("%w: %s: consumer name %s is %d bytes, over the server's %d: give the methods a shorter consumer_group",
				ErrUnservable, sub, name, len(name), maxConsumerName)
		}
	}
	if err := e.ensureStream(ctx); err != nil {
		return nil, err
	}
	for _, sub := range ev.Subscriptions {
		s, err := e.subscribe(ctx, sub)
		if err != nil {
			return nil, err
		}
		e.subs = append(e.subs, s)
	}
	return e, nil
}

// ensureStream creates the prefix's eventing stream unless it exists (see
// streams.EnsureEventingStream; Provision creates it too).
func (e *Eventing) ensureStream(ctx context.Context) error {
	return streams.EnsureEventingStream(ctx, e.js, e.cfg.Storage, e.cfg.Store, e.cfg.TopicMaxAge)
}

// Publisher publishes replies to out topics (for client calls too).
func (e *Eventing) Publisher() *Publisher { return e.pub }

// subscribe binds a subscription to its durable consumer.
func (e *Eventing) subscribe(ctx context.Context, sub *model.Subscription) (*subscriber, error) {
	st := e.cfg.Storage
	stream := st.EventingStream()
	if sub.EventLog != "" {
		stream = st.JournalStream()
	}
	cons, err := e.createConsumer(ctx, sub)
	if err != nil {
		return nil, err
	}
	name := ConsumerName(st, sub)
	s := &subscriber{
		e: e, sub: sub, cons: cons, stream: stream, name: name,
		service: string(sub.Service.Desc.FullName()), source: sub.Source(),
		log: e.cfg.Log.With("consumer", name, "source", sub.Source()),
	}
	return s, nil
}

// createConsumer creates or updates a subscription's durable consumer. An
// event log is read from its beginning; a topic from the consumer's
// creation on, as a new subscription to a topic would.
func (e *Eventing) createConsumer(ctx context.Context, sub *model.Subscription) (jetstream.Consumer, error) {
	st := e.cfg.Storage
	stream, policy := st.EventingStream(), jetstream.DeliverNewPolicy
	if sub.EventLog != "" {
		stream, policy = st.JournalStream(), jetstream.DeliverAllPolicy
	}
	name := ConsumerName(st, sub)
	cc := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "jetstate eventing: " + sub.String(),
		FilterSubject: filterSubject(st, sub),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       e.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: e.cfg.MaxAckPending,
		DeliverPolicy: policy,
	}
	if !e.cfg.Shared {
		cc.PriorityPolicy = jetstream.PriorityPolicyPinned
		cc.PriorityGroups = []string{priorityGroup}
		cc.PinnedTTL = PinnedTTL
	}
	cons, err := e.js.CreateOrUpdateConsumer(ctx, stream, cc)
	if err != nil {
		return nil, fmt.Errorf("eventing consumer %s on %s: %w", name, stream, err)
	}
	return cons, nil
}

// Run consumes every subscription until ctx ends, then lets the events in
// hand finish (each bounded by the command timeout, or cancelled when abort
// is closed: the sidecar closes it when its drain time is over, so that
// the shard handoff after is not held up) and hands the messages not
// started back to the server for redelivery. A nil abort never closes.
func (e *Eventing) Run(ctx context.Context, abort <-chan struct{}) error {
	e.abort = abort
	var wg sync.WaitGroup
	errs := make([]error, len(e.subs))
	for i, s := range e.subs {
		wg.Go(func() { errs[i] = s.run(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// subscriber is one subscription's consumer in this sidecar: its messages
// go through a keyed queue (internal/keyq) per ordering key (an entity's
// journal subject; a topic message's CloudEvent subject) to Workers
// workers, so one key's messages are handled one after the other in
// delivery order and different keys in parallel.
type subscriber struct {
	e               *Eventing
	sub             *model.Subscription
	cons            jetstream.Consumer // replaced by run's loop only
	stream, name    string
	service, source string // metric labels
	log             *slog.Logger
	pin             string // the pin id on the messages received (not Shared); consume's
}

// run consumes until ctx ends, re-creating the consumer (and the eventing
// stream) if they are deleted meanwhile; then the events in hand finish,
// what was received but not finished is handed back (Nak'ed, in stream
// order) and an ordered subscription is unpinned, so another sidecar takes
// over at once.
func (s *subscriber) run(ctx context.Context) error {
	s.log.InfoContext(ctx, "eventing consumer started")
	q, err := keyq.New(keyq.Config{
		Consumer: s.cons,
		Workers:  s.e.cfg.Workers,
		Key: func(msg jetstream.Msg, md *jetstream.MsgMetadata) string {
			if s.sub.EventLog != "" {
				return msg.Subject()
			}
			return topicKey(msg.Headers(), msg.Data(), md.Sequence.Stream)
		},
		Process: s.process,
		// A long retry or a slow call must not let the ack wait run out:
		// the server would hand the message (and so the entity's later
		// events) to another sidecar while this one still works on it.
		KeepAlive: s.e.cfg.AckWait / 3,
		Remember:  2 * s.e.cfg.MaxAckPending,
		Logger:    s.log,
	})
	if err != nil {
		return err
	}
	err = q.Run(ctx, func(ctx context.Context) error {
		bo := backoff.Backoff{Min: s.e.cfg.RetryMin, Max: s.e.cfg.RetryMax}
		for ctx.Err() == nil {
			err := s.consume(ctx, q)
			if err == nil || ctx.Err() != nil {
				return nil
			}
			// The consumer was deleted (by an operator, or with its
			// stream): make it again and go on, the sidecar stays ready.
			wait := bo.Next()
			s.log.WarnContext(ctx, "eventing consumer lost, re-creating", "error", err, "in", wait)
			if backoff.Sleep(ctx, wait) != nil {
				return nil
			}
			cons, err := s.e.createConsumer(ctx, s.sub)
			if errors.Is(err, jetstream.ErrStreamNotFound) && s.sub.EventLog == "" {
				// The eventing stream was deleted: make it again, as at start.
				if err = s.e.ensureStream(ctx); err == nil {
					cons, err = s.e.createConsumer(ctx, s.sub)
				}
			}
			if err != nil {
				s.log.WarnContext(ctx, "eventing consumer not re-created", "error", err)
			} else {
				s.cons = cons
			}
		}
		return nil
	})
	s.unpin()
	s.log.Info("eventing consumer stopped")
	return err
}

// unpin hands an ordered subscription to another sidecar at once, if this
// one holds the pin (the id the server stamped on the messages it sent
// here), instead of after PinnedTTL. Best effort.
func (s *subscriber) unpin() {
	if s.e.cfg.Shared || s.pin == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := s.cons.Info(ctx)
	if err != nil {
		s.log.Warn("unpin: consumer info", "error", err)
		return
	}
	for _, g := range info.PriorityGroups {
		if g.Group != priorityGroup || g.PinnedClientID != s.pin {
			continue
		}
		st, err := s.e.js.Stream(ctx, s.stream)
		if err == nil {
			err = st.UnpinConsumer(ctx, s.name, priorityGroup)
		}
		if err != nil {
			s.log.Warn("unpin", "error", err)
		}
	}
}

// consume dispatches the consumer's messages to q until ctx ends (nil,
// once its iterator is drained, so that q's Naks cannot come back to it)
// or the consumer is gone (an error).
func (s *subscriber) consume(ctx context.Context, q *keyq.Queue) error {
	opts := []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(min(s.e.cfg.MaxAckPending, 256))}
	if !s.e.cfg.Shared {
		opts = append(opts, jetstream.PullPriorityGroup(priorityGroup), jetstream.PullExpiry(pullExpiry))
	}
	it, err := s.cons.Messages(opts...)
	if err != nil {
		return fmt.Errorf("eventing %s: consume: %w", s.name, err)
	}
	// Drain, not Stop: Next returns the buffered messages and then
	// ErrMsgIteratorClosed once the server has dropped our interest, so the
	// Naks at the end of run cannot be redelivered to a pull of this
	// iterator (where they would wait out the ack wait).
	drain := context.AfterFunc(ctx, it.Drain)
	defer drain()
	pending := s.e.m.pending.WithLabelValues(s.service, s.source)
	for {
		msg, err := it.Next()
		switch {
		case err == nil:
			if pin := msg.Headers().Get("Nats-Pin-Id"); pin != "" {
				s.pin = pin
			}
			md, err := msg.Metadata()
			if err != nil {
				q.Dispatch(msg) // it logs and drops what has no metadata
				continue
			}
			// Received in order: the newest message's count of those behind it is
			// the backlog not yet delivered to the consumer group.
			pending.Set(float64(md.NumPending))
			q.DispatchMeta(msg, md)
		case errors.Is(err, jetstream.ErrMsgIteratorClosed), errors.Is(err, nats.ErrConnectionClosed):
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("eventing %s: %w", s.name, err)
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound):
			it.Stop()
			return fmt.Errorf("eventing %s: %w", s.name, err)
		default:
			s.log.DebugContext(ctx, "consume", "error", err) // heartbeats, leader changes: it carries on
		}
	}
}

// topicKey is the ordering key of a topic message: topic messages keep
// their order per CloudEvent subject, in binary mode (the ce-subject
// header, percent-decoded) and in structured mode (the JSON body's
// subject) alike; those without one are independent.
func topicKey(h nats.Header, data []byte, seq uint64) string {
	subj := headerValue(h, "ce-subject")
	if subj != "" {
		if v, err := url.PathUnescape(subj); err == nil {
			subj = v
		}
	} else if headerValue(h, "ce-specversion") == "" &&
		strings.HasPrefix(headerValue(h, "content-type"), projections.ContentTypeCloudEventsJSON) {
		var ev struct {
			Subject string `json:"subject"`
		}
		if json.Unmarshal(data, &ev) == nil {
			subj = ev.Subject
		}
	}
	if subj == "" {
		return "#" + strconv.FormatUint(seq, 10)
	}
	return "s:" + subj
}
