package eventing

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/streams"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxTries       = 10
	DefaultRetryMin       = 100 * time.Millisecond
	DefaultRetryMax       = 10 * time.Second
	DefaultAckWait        = 30 * time.Second
	DefaultMaxAckPending  = 1000
	DefaultWorkers        = 16
	DefaultTopicMaxAge    = streams.DefaultTopicMaxAge
	DefaultCommandTimeout = time.Minute
)

// Dead-letter headers of eventing beyond those projections define
// (projections.HeaderReason, HeaderCause, HeaderTries, HeaderJournalSubject,
// HeaderStreamSeq, HeaderEventIndex, HeaderEventType).
const (
	// HeaderConsumer names the eventing consumer that gave up.
	HeaderConsumer = "Jetstate-Eventing-Consumer"
	// HeaderMethod is the method the event was for, if one was found.
	HeaderMethod = "Jetstate-Eventing-Method"
	// HeaderTopicSubject is the subject a dead topic message was on.
	HeaderTopicSubject = "Jetstate-Topic-Subject"
)

// Config tunes the eventing consumers and topics. A zero field
// means its documented default.
type Config struct {
	// Storage names the service's journal, the prefix's eventing stream and
	// the subjects; set by the sidecar from its own.
	Storage streams.Config
	// Store sets the replicas and storage of the eventing stream when it
	// has to be created (the operator's provisioning creates it otherwise).
	Store streams.StoreConfig
	// CommandTimeout bounds one call of the function with an event.
	// Default 1 min (the sidecar passes its own).
	CommandTimeout time.Duration
	// Registry receives the metrics; nil: nowhere.
	Registry prometheus.Registerer
	// Tracer continues, into the calls, the trace an event or message
	// carries (its traceparent header); nil: off.
	Tracer *tracing.Tracer
	// Log; nil discards.
	Log *slog.Logger

	// MaxTries is how often one event is offered to the function before it
	// goes to the dead-letter subject. Default 10.
	MaxTries int
	// RetryMin and RetryMax bound the back-off between tries (doubling,
	// jittered). Defaults 100 ms and 10 s; RetryMax must stay below AckWait.
	RetryMin, RetryMax time.Duration
	// AckWait is how long a delivered message may stay unacknowledged
	// before the server gives it to another sidecar (each failed try
	// restarts it). Default 30 s.
	AckWait time.Duration
	// MaxAckPending bounds the messages of one consumer delivered and not
	// yet acknowledged, across all sidecars. Default 1000.
	MaxAckPending int
	// Workers is the number of events one sidecar handles at once per
	// subscription (one entity at a time each). Default 16.
	Workers int
	// TopicMaxAge is how long the eventing stream keeps topic messages and
	// dead letters, when the sidecar creates it. Default 7 days.
	TopicMaxAge time.Duration
	// Shared makes every sidecar of the service consume each subscription
	// together (one consumer group; JetStream hands each message to one of
	// them), for throughput: an entity's events are then handled in order
	// within one sidecar only, and two replicas may handle one entity's
	// events out of order or concurrently. Default false, ordered: one
	// sidecar at a time consumes (the pinned client of a JetStream priority
	// group, ADR-42), so an entity's events are handled in order across
	// replicas too, and the others stand by. A sidecar that stops hands over
	// at once; one that dies, after PinnedTTL. Around a failover two
	// sidecars may briefly both deliver (a pin is not exclusive).
	Shared bool
}

// Ordered mode (not Shared): the priority group, how long a silent pinned sidecar keeps
// the pin, and how often a sidecar renews its pull requests (well within).
const (
	priorityGroup = "eventing"
	PinnedTTL     = 10 * time.Second
	pullExpiry    = PinnedTTL / 3
)

func (c Config) withDefaults() Config {
	if c.MaxTries <= 0 {
		c.MaxTries = DefaultMaxTries
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.TopicMaxAge <= 0 {
		c.TopicMaxAge = DefaultTopicMaxAge
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with the config at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.RetryMin > c.RetryMax {
		errs = append(errs, fmt.Errorf("eventing: retry min %v exceeds retry max %v", c.RetryMin, c.RetryMax))
	}
	if c.RetryMax >= c.AckWait {
		errs = append(errs, fmt.Errorf("eventing: retry max %v must be below ack wait %v", c.RetryMax, c.AckWait))
	}
	return errors.Join(errs...)
}
