package projections

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/internal/cebinding"
	"github.com/jetstate/jetstate/streams"
)

// NATSSinkConfig configures a NATSSink.
type NATSSinkConfig struct {
	// Subject receives the events. Required. It may be a template holding
	// {type}, {key} and {event} (SubjectType, SubjectKey, SubjectEvent):
	// the entity type and key, each escaped into one token with
	// streams.EncodeToken, and the event type's dot-separated parts, each
	// escaped likewise. "cart.{type}.{key}" gives every entity a subject of
	// its own, which a subscriber to one entity (or to "cart.>") uses.
	Subject string

	// Structured sends the JSON event format (content type
	// application/cloudevents+json) instead of binary mode (ce-* headers,
	// raw data).
	Structured bool

	// JetStream publishes to the stream that captures Subject and waits for
	// its acknowledgement, with the event id as Nats-Msg-Id so the stream
	// drops redeliveries within its duplicate window. Without it, an event
	// is accepted once the server has received it (core NATS: subscribers
	// that are not listening miss it).
	JetStream bool

	// FlushTimeout bounds the round trip that confirms core publishes.
	// Default 10 s.
	FlushTimeout time.Duration
}

// NATSSink publishes CloudEvents to a NATS subject (the CloudEvents NATS
// binding). It is safe for concurrent use; Close waits for its background
// work.
//
// Send confirms a core publish by a flush (a PING round trip) shared by
// every Send waiting at that moment. A Projection does better: since one
// connection keeps its publishes in order, it sends an entity's next event
// without waiting and acknowledges journal messages in batches after one
// flush covering them all. A flush answered after the connection
// reconnected proves nothing about the events written to the old one, so
// a reconnection makes the projection start over from its last
// acknowledgement instead.
//
// The binary-mode header mapping is jetstate's own (see NATSMsg), not that
// of sdk-go's NATS modules: protocol/nats/v2 sends structured mode only,
// and the binary writer of protocol/nats_jetstream/v2 (usable with the
// jetstream package) does not percent-encode header values, so an entity
// key with a line break or a non-ASCII letter would corrupt the headers;
// its sender and receiver are built on the legacy JetStream API besides.
type NATSSink struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	cfg     NATSSinkConfig
	subject subjectTemplate

	mu      sync.Mutex
	next    *flushRound // waiters for the flush after the running one
	running bool
	wg      sync.WaitGroup
}

// writers renders events for publishing: each message is done with once
// its publish returns, so its header map and values serve the next one.
var writers = sync.Pool{New: func() any { return new(cebinding.NATSWriter) }}

type flushRound struct {
	done chan struct{}
	err  error
}

// NewNATSSink returns a sink publishing on nc, which the caller keeps and
// closes.
func NewNATSSink(nc *nats.Conn, cfg NATSSinkConfig) (*NATSSink, error) {
	subject, err := parseSubject(cfg.Subject)
	if err != nil {
		return nil, fmt.Errorf("nats sink: %w", err)
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = 10 * time.Second
	}
	s := &NATSSink{nc: nc, cfg: cfg, subject: subject}
	if cfg.JetStream {
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, fmt.Errorf("nats sink: %w", err)
		}
		s.js = js
	}
	return s, nil
}

// Send publishes ev and returns once it was accepted (see NATSSinkConfig).
// An event too large for the server or the stream (streams.TooLarge) is
// refused with ErrRejected: no retry can help.
func (s *NATSSink) Send(ctx context.Context, ev *event.Event) error {
	return s.send(ctx, ev, true, s.epoch())
}

// epoch names the connection's current incarnation: it changes whenever the
// connection reconnects.
func (s *NATSSink) epoch() uint64 { return s.nc.Stats().Reconnects }

// send publishes ev, and with confirm waits for a flush covering it. A core
// publish is refused with errLost if the connection is not the incarnation
// epoch names, or not connected: the events written before it may have
// been lost with the old connection, and this one must not overtake them.
// A confirmation answered by another incarnation fails likewise.
func (s *NATSSink) send(ctx context.Context, ev *event.Event, confirm bool, epoch uint64) error {
	subject, err := s.subject.expand(ev)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	w := writers.Get().(*cebinding.NATSWriter)
	defer writers.Put(w)
	msg, err := w.Msg(subject, ev, s.cfg.Structured)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	if s.js != nil {
		if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID())); err != nil {
			if streams.TooLarge(err) {
				return fmt.Errorf("publish %s: %w: %v", subject, ErrRejected, err)
			}
			return fmt.Errorf("publish %s: %w", subject, err)
		}
		return nil
	}
	if !s.nc.IsConnected() || s.epoch() != epoch {
		return fmt.Errorf("publish %s: %w: the connection was interrupted", subject, errLost)
	}
	if err := s.nc.PublishMsg(msg); err != nil {
		if streams.TooLarge(err) {
			return fmt.Errorf("publish %s: %w: %v", subject, ErrRejected, err)
		}
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	if !confirm {
		return nil
	}
	if err := s.flush(ctx); err != nil {
		return err
	}
	if s.epoch() != epoch {
		return fmt.Errorf("publish %s: %w: the connection reconnected", subject, errLost)
	}
	return nil
}

// confirmer returns a function that confirms the core publishes made
// through s in epoch before it is called: a flush, which fails with
// errLost if the connection reconnected in between (events written to the
// old connection may be lost) or was interrupted.
func (s *NATSSink) confirmer(epoch uint64) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		err := s.flush(ctx)
		switch {
		case s.epoch() != epoch:
			return fmt.Errorf("%w: the sink's connection reconnected", errLost)
		case err != nil && ctx.Err() == nil && !s.nc.IsClosed():
			return fmt.Errorf("%w: %w", errLost, err)
		}
		return err
	}
}

// flush waits for a flush that started after the caller's publish. At most
// one flush runs at a time; the callers arriving meanwhile share the next.
func (s *NATSSink) flush(ctx context.Context) error {
	s.mu.Lock()
	r := s.next
	if r == nil {
		r = &flushRound{done: make(chan struct{})}
		s.next = r
	}
	if !s.running {
		s.running = true
		s.next = nil
		s.wg.Add(1)
		go s.flushLoop(r)
	}
	s.mu.Unlock()
	select {
	case <-r.done:
		if r.err != nil {
			return fmt.Errorf("publish %s: flush: %w", s.cfg.Subject, r.err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flushLoop runs flush rounds while callers wait for them.
func (s *NATSSink) flushLoop(r *flushRound) {
	defer s.wg.Done()
	for r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.FlushTimeout)
		r.err = s.nc.FlushWithContext(ctx)
		cancel()
		close(r.done)
		s.mu.Lock()
		r, s.next = s.next, nil
		if r == nil {
			s.running = false
		}
		s.mu.Unlock()
	}
}

// Close waits for a running flush. It does not close the connection.
func (s *NATSSink) Close() error {
	s.wg.Wait()
	return nil
}
