package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/internal/backoff"
	"github.com/jetstate/jetstate/internal/cebinding"
	"github.com/jetstate/jetstate/streams"
)

// Headers of a dead letter. projections re-exports them under the same
// names; users read them.
const (
	// HeaderReason says why the event is a dead letter.
	HeaderReason = "Jetstate-Dead-Letter-Reason"
	// HeaderCause is one of CauseRejected, CauseRetries or CauseBadEvent.
	HeaderCause = "Jetstate-Dead-Letter-Cause"
	// HeaderTries is how often the event was offered.
	HeaderTries = "Jetstate-Dead-Letter-Tries"
	// HeaderJournalSubject, HeaderStreamSeq and HeaderEventIndex locate the
	// event in its stream (the index is -1 when the whole message is bad).
	HeaderJournalSubject = "Jetstate-Journal-Subject"
	HeaderStreamSeq      = "Jetstate-Stream-Seq"
	HeaderEventIndex     = "Jetstate-Event-Index"
	// HeaderEventType is the journal's type URL of the event.
	HeaderEventType = "Jetstate-Event-Type"
	// HeaderDataOmitted is set, to the size of the data left out, on a dead
	// letter whose data would have made it too large for the server or the
	// stream; HeaderJournalSubject (or the caller's own headers) and
	// HeaderStreamSeq find the event.
	HeaderDataOmitted = "Jetstate-Dead-Letter-Data-Omitted"
)

// Causes, the values of HeaderCause.
const (
	CauseRejected = "rejected"  // the destination refused the event for good
	CauseRetries  = "retries"   // the destination failed every try
	CauseBadEvent = "bad_event" // the event cannot be converted or handled
)

// Defaults for Config fields left zero.
const (
	DefaultRetryMin = 100 * time.Millisecond
	DefaultRetryMax = 30 * time.Second
	DefaultTimeout  = 5 * time.Second
)

// Config tunes a Publisher. A zero field means its documented default.
type Config struct {
	// RetryMin and RetryMax bound the exponential back-off (jittered)
	// between tries. Defaults 100 ms and 30 s.
	RetryMin, RetryMax time.Duration
	// Timeout bounds one try. Default 5 s.
	Timeout time.Duration
	// Logger receives the retries and core NATS fallbacks. Nil discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with the config at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.RetryMin > c.RetryMax {
		errs = append(errs, fmt.Errorf("dead letters: retry min %v exceeds retry max %v", c.RetryMin, c.RetryMax))
	}
	return errors.Join(errs...)
}

// Publisher publishes dead letters through one JetStream client. It is safe
// for concurrent use.
type Publisher struct {
	js  jetstream.JetStream
	cfg Config
}

// New returns a publisher on js.
func New(js jetstream.JetStream, cfg Config) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Publisher{js: js, cfg: cfg.withDefaults()}, nil
}

// Letter is one dead letter.
type Letter struct {
	// Subject receives the dead letter. Required.
	Subject string

	// Event, if set, travels in binary mode: its attributes as ce-*
	// headers (percent-encoded) and content-type, its data as the body
	// unless Data is set.
	Event *event.Event
	// Data is the body: the bytes as stored when there is no Event, or
	// what replaces the event's data (nil: the event's own).
	Data []byte
	// Header holds more headers, set before jetstate's own (which win).
	// Names starting with "Nats-" are left out: the server acts on them.
	Header nats.Header

	// Cause (one of the Cause constants), Reason and Tries say why.
	Cause  string
	Reason error
	Tries  int
	// JournalSubject (set if not empty), StreamSeq and Index (-1: the whole
	// message) say where the event came from.
	JournalSubject string
	StreamSeq      uint64
	Index          int
	// EventType is the event's type URL (set if not empty).
	EventType string

	// MsgID, if not empty, is the dead letter's Nats-Msg-Id: give every
	// event its own, the same on every redelivery, and the stream keeps one
	// dead letter per event.
	MsgID string
}

// Publish sends l to its subject and returns nil once a stream stored it
// (or, if no stream captures the subject, once the server has it). It
// retries anything else with back-off, calling keepAlive (if not nil)
// after each failed try, until ctx ends: then it returns ctx's error.
func (p *Publisher) Publish(ctx context.Context, l Letter, keepAlive func()) error {
	out := p.message(l)
	log := p.cfg.Logger.With("dead_letter_subject", l.Subject, "stream_seq", l.StreamSeq, "index", l.Index)
	bo := backoff.Backoff{Min: p.cfg.RetryMin, Max: p.cfg.RetryMax}
	for {
		err := p.publish(ctx, out, log)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("dead letter to %s: %w", l.Subject, ctx.Err())
		}
		if len(out.Data) > 0 && streams.TooLarge(err) {
			// The event filled the limit and the headers push it over:
			// the dead letter says where the event is instead.
			out.Header.Set(HeaderDataOmitted, strconv.Itoa(len(out.Data)))
			out.Data = nil
			continue
		}
		log.WarnContext(ctx, "dead letter not published, retrying", "error", err)
		if keepAlive != nil {
			keepAlive()
		}
		if err := bo.Wait(ctx); err != nil {
			return fmt.Errorf("dead letter to %s: %w", l.Subject, err)
		}
	}
}

// message renders l.
func (p *Publisher) message(l Letter) *nats.Msg {
	out := nats.NewMsg(l.Subject)
	for k, vs := range l.Header {
		if len(k) >= len("Nats-") && strings.EqualFold(k[:len("Nats-")], "Nats-") {
			// Nats-Expected-*, Nats-Rollup, Nats-TTL, Nats-Msg-Id, ...:
			// on the dead letter they would get it refused for ever or
			// purge other dead letters.
			continue
		}
		out.Header[k] = append([]string(nil), vs...)
	}
	out.Data = l.Data
	if l.Event != nil {
		err := cebinding.BinaryHeaders(l.Event,
			func(name, value string) { out.Header[name] = []string{value} },
			func(ct string) {
				out.Header["content-type"] = []string{ct}
				out.Header["ce-datacontenttype"] = []string{ct}
			})
		if err != nil {
			// Attributes that do not format (never for events jetstate
			// makes): the headers below still find the event.
			p.cfg.Logger.Warn("dead letter without the event's attributes", "error", err)
		}
		if l.Data == nil {
			out.Data = l.Event.Data()
		}
	}
	if l.EventType != "" {
		out.Header.Set(HeaderEventType, HeaderSafe(l.EventType))
	}
	reason := "unknown"
	if l.Reason != nil {
		reason = l.Reason.Error()
	}
	out.Header.Set(HeaderReason, HeaderSafe(reason))
	out.Header.Set(HeaderCause, HeaderSafe(l.Cause))
	out.Header.Set(HeaderTries, strconv.Itoa(l.Tries))
	if l.JournalSubject != "" {
		out.Header.Set(HeaderJournalSubject, HeaderSafe(l.JournalSubject))
	}
	out.Header.Set(HeaderStreamSeq, strconv.FormatUint(l.StreamSeq, 10))
	out.Header.Set(HeaderEventIndex, strconv.Itoa(l.Index))
	if l.MsgID != "" {
		out.Header.Set(jetstream.MsgIDHeader, HeaderSafe(l.MsgID))
	}
	return out
}

// publish makes one try. It asks first whether a stream captures the
// subject: a subscriber listening on it would otherwise receive the
// JetStream publish as a request that nobody answers, every try until the
// timeout, and a missing stream could not be told from one electing a
// leader (both answer "no responders"). Only when there is no stream does
// the dead letter go out on core NATS.
func (p *Publisher) publish(ctx context.Context, out *nats.Msg, log *slog.Logger) error {
	pctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	_, err := p.js.StreamNameBySubject(pctx, out.Subject)
	switch {
	case err == nil:
		_, err = p.js.PublishMsg(pctx, out)
		return err
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("stream of %s: %w", out.Subject, err)
	}
	nc := p.js.Conn()
	if err := nc.PublishMsg(&nats.Msg{Subject: out.Subject, Header: out.Header, Data: out.Data}); err != nil {
		return err
	}
	if err := nc.FlushWithContext(pctx); err != nil {
		return err
	}
	log.WarnContext(ctx, "no stream captures the dead-letter subject: dead letter published but not stored")
	return nil
}

// HeaderSafe keeps a header value on one line: control characters
// (line breaks included) become spaces. Valid UTF-8 is kept as it is;
// invalid bytes become U+FFFD.
func HeaderSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7F {
			return ' '
		}
		return r
	}, s)
}
