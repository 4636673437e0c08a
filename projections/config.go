package projections

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/jetstate/jetstate/streams"
)

// Defaults for Config fields left zero.
const (
	DefaultWorkers       = 32
	DefaultMaxAckPending = 4096
	DefaultAckWait       = time.Minute
	DefaultMaxTries      = 10
	DefaultRetryMin      = 100 * time.Millisecond
	DefaultRetryMax      = 30 * time.Second
	DefaultInfoInterval  = 5 * time.Second
	DefaultSendTimeout   = 30 * time.Second
)

// StartPolicy says where a projection's first consumer starts reading the
// journals. It applies only when the consumer is created: a projection that
// already ran resumes where it stopped, and a rebuild always starts at the
// beginning.
type StartPolicy int

const (
	// StartBeginning delivers every event the journals hold (default).
	StartBeginning StartPolicy = iota
	// StartNew delivers only events appended after the consumer exists.
	StartNew
	// StartTime delivers events appended at or after Config.StartTime.
	StartTime
)

// Config describes one projection. A zero field means its documented
// default.
type Config struct {
	// Storage names the service whose journals are projected (Prefix and
	// Service; its Logger is not used). Storage.Service is required.
	Storage streams.Config

	// Name identifies the projection: its consumers are named
	// "<Name>-g<generation>" on the service's journal stream. Letters,
	// digits, '-' and '_', at most 48 bytes; required.
	Name string

	// Types restricts the projection to these entity types (persistence
	// ids). Empty means every entity type of the service.
	Types []string

	// Sink receives the CloudEvents. Required by Run and Rebuild; Pause,
	// Resume and Status work without one.
	Sink Sink

	// Start says where a new projection begins (see StartPolicy); StartTime
	// is the time for the StartTime policy.
	Start     StartPolicy
	StartTime time.Time

	// Resolver, if set, turns event data into JSON (datacontenttype
	// application/json) for every event type it knows, found by the
	// event's type URL (protoregistry.GlobalTypes, or dynamicpb.NewTypes
	// over a descriptor set). Events of types it does not know, and every
	// event when Resolver is nil, carry their protobuf bytes
	// (application/protobuf).
	Resolver protoregistry.MessageTypeResolver

	// Source is the first part of every event's source attribute, which
	// is Source + "/" + the path-escaped entity type. Default
	// "/jetstate/<service>".
	Source string

	// Workers bounds how many entities are sent to the sink at the same
	// time. Default 32.
	Workers int

	// MaxAckPending bounds the events received but not yet accepted by the
	// sink (the consumer's max_ack_pending). Default 4096.
	MaxAckPending int

	// AckWait is how long the server waits for an acknowledgement before
	// redelivering (the consumer's ack_wait). Every message the projector
	// holds (being sent, retried, or waiting behind its entity's earlier
	// events) is marked in progress every third of it. Default 1 min.
	AckWait time.Duration

	// AckEach makes new generations acknowledge every journal message on
	// its own (a consumer with AckPolicy explicit). By default a
	// generation's consumer has AckPolicy all, where one acknowledgement
	// covers every message delivered before it: the projector sends one
	// for each run of delivered messages the sink has accepted (about one
	// per 128 under load) instead of one per message, which spares the
	// server a message per event. The price: a message the sink keeps
	// failing holds back the acknowledgement of all those delivered after
	// it, so once MaxAckPending of them are waiting every entity waits
	// for it (until it is accepted or dead-lettered); with AckEach only
	// its own entity waits. A consumer keeps the policy it was made with
	// (Rebuild or Reset make a new one).
	AckEach bool

	// MaxTries is how often one event is offered to the sink before it
	// goes to the dead-letter subject. Default 10.
	MaxTries int

	// RetryMin and RetryMax bound the exponential back-off (with jitter)
	// between tries. Defaults 100 ms and 30 s.
	RetryMin, RetryMax time.Duration

	// SendTimeout bounds one try of the sink. Default 30 s.
	SendTimeout time.Duration

	// DeadLetterSubject receives events the sink refused MaxTries times
	// (or rejected for good) and events that cannot be converted, with the
	// reason in the Jetstate-Dead-Letter-Reason header. If a stream
	// captures the subject, dead letters are stored there with an
	// acknowledgement. Default "<prefix>_deadletter.<service>.<name>".
	DeadLetterSubject string

	// InfoInterval is how often the consumer's state is read for the lag
	// metrics and to notice a newer generation. Default 5 s.
	InfoInterval time.Duration

	// OnActive, if set, is called when this projector's generation becomes
	// the one that serves: at once by Run, after catching up by Rebuild.
	OnActive func(generation int)

	// Logger receives lifecycle events and dead letters. Nil discards.
	Logger *slog.Logger

	// Registry receives the Prometheus metrics (jetstate_projection_*,
	// labelled by service and projection); nil registers nowhere. Several
	// projections may share one registry.
	Registry prometheus.Registerer

	// TracerProvider receives a span per journal message delivered
	// (SpanProject), a child of the trace stored with it; the HTTP sink then
	// sends that span's traceparent header. Nil: no spans. Either way, the
	// events of a message that stored a trace context carry it in the
	// distributed-tracing extension (traceparent, tracestate).
	TracerProvider trace.TracerProvider
}

// maxNameLen leaves room for "-g<generation>" in a consumer name.
const maxNameLen = 48

func (c Config) withDefaults() Config {
	if c.Storage.Prefix == "" {
		c.Storage.Prefix = streams.DefaultPrefix
	}
	if c.Source == "" {
		c.Source = "/jetstate/" + c.Storage.Service
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxTries <= 0 {
		c.MaxTries = DefaultMaxTries
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = DefaultSendTimeout
	}
	if c.InfoInterval <= 0 {
		c.InfoInterval = DefaultInfoInterval
	}
	if c.DeadLetterSubject == "" {
		c.DeadLetterSubject = c.Storage.Prefix + "_deadletter." + c.Storage.Service + "." + c.Name
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with the config at once. A missing Sink is
// not one: only Run and Rebuild need it.
func (c Config) Validate() error {
	c = c.withDefaults()
	errs := []error{c.Storage.Validate()}
	if c.Name == "" || len(c.Name) > maxNameLen || !plainName(c.Name) {
		errs = append(errs, fmt.Errorf("name %q must be 1 to %d letters, digits, '-' or '_'", c.Name, maxNameLen))
	}
	seen := map[string]bool{}
	for _, t := range c.Types {
		if err := (streams.Entity{Type: t}).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("types: %w", err))
		}
		if seen[t] {
			errs = append(errs, fmt.Errorf("types: %q twice (the consumer's filters may not overlap)", t))
		}
		seen[t] = true
	}
	switch c.Start {
	case StartBeginning, StartNew:
	case StartTime:
		if c.StartTime.IsZero() {
			errs = append(errs, errors.New("start policy StartTime needs a StartTime"))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown start policy %d", c.Start))
	}
	// Checked here: at send time every event would be a bad event.
	if _, err := url.Parse(c.Source + "/x"); err != nil {
		errs = append(errs, fmt.Errorf("source %q is not a URI reference: %w", c.Source, err))
	}
	if c.RetryMin > c.RetryMax {
		errs = append(errs, fmt.Errorf("retry min %v exceeds retry max %v", c.RetryMin, c.RetryMax))
	}
	if err := checkPublishSubject(c.DeadLetterSubject); err != nil {
		errs = append(errs, fmt.Errorf("dead-letter subject: %w", err))
	} else if c.Storage.Validate() == nil && strings.HasPrefix(c.DeadLetterSubject, c.Storage.Prefix+"."+c.Storage.Service+".") {
		errs = append(errs, fmt.Errorf("dead-letter subject %q is inside the service's journal subjects", c.DeadLetterSubject))
	}
	return errors.Join(errs...)
}

// filterSubjects are the consumer's filters: one per entity type, or the
// whole service.
func (c Config) filterSubjects() []string {
	if len(c.Types) == 0 {
		return []string{c.Storage.JournalSubjects()}
	}
	head := c.Storage.Prefix + "." + c.Storage.Service + "."
	out := make([]string, len(c.Types))
	for i, t := range c.Types {
		out[i] = head + streams.EncodeToken(t) + ".>"
	}
	return out
}

func plainName(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

// checkPublishSubject accepts a subject one can publish to: non-empty
// tokens, no wildcards, no white space.
func checkPublishSubject(s string) error {
	if s == "" {
		return errors.New("empty subject")
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return fmt.Errorf("subject %q is not a valid publish subject", s)
		}
	}
	return nil
}
