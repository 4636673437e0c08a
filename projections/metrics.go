package projections

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetstate/jetstate/internal/prom"
)

// metrics are a projection's Prometheus metrics, labelled by service and
// projection name.
type metrics struct {
	pending     prometheus.Gauge
	ackPending  prometheus.Gauge
	paused      prometheus.Gauge
	generation  prometheus.Gauge
	delivered   prometheus.Counter
	failures    prometheus.Counter
	deadLetters *prometheus.CounterVec
	lag         prometheus.Observer
}

func newMetrics(reg prometheus.Registerer, service, name string) *metrics {
	labels := []string{"service", "projection"}
	pending := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "jetstate_projection_pending_messages",
		Help: "Journal messages not yet delivered to the projector (the consumer's num_pending): the lag.",
	}, labels)
	ackPending := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "jetstate_projection_ack_pending_messages",
		Help: "Journal messages delivered to the projector and not yet acknowledged (not yet accepted by the sink, or waiting for a cumulative acknowledgement).",
	}, labels)
	paused := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "jetstate_projection_paused",
		Help: "1 while the projection's consumer is paused.",
	}, labels)
	generation := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "jetstate_projection_generation",
		Help: "The consumer generation this projector delivers.",
	}, labels)
	delivered := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jetstate_projection_events_delivered_total",
		Help: "CloudEvents accepted by the sink.",
	}, labels)
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jetstate_projection_send_failures_total",
		Help: "Tries of the sink that failed (each is retried or dead-lettered).",
	}, labels)
	deadLetters := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jetstate_projection_events_dead_lettered_total",
		Help: "Events sent to the dead-letter subject, by cause (rejected, retries, bad_event).",
	}, append(labels, "cause"))
	lag := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "jetstate_projection_delivery_lag_seconds",
		Help:    "Time from an event's append to the sink accepting it.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 16),
	}, labels)
	if reg != nil {
		pending = prom.Register(reg, pending)
		ackPending = prom.Register(reg, ackPending)
		paused = prom.Register(reg, paused)
		generation = prom.Register(reg, generation)
		delivered = prom.Register(reg, delivered)
		failures = prom.Register(reg, failures)
		deadLetters = prom.Register(reg, deadLetters)
		lag = prom.Register(reg, lag)
	}
	return &metrics{
		pending:     pending.WithLabelValues(service, name),
		ackPending:  ackPending.WithLabelValues(service, name),
		paused:      paused.WithLabelValues(service, name),
		generation:  generation.WithLabelValues(service, name),
		delivered:   delivered.WithLabelValues(service, name),
		failures:    failures.WithLabelValues(service, name),
		deadLetters: deadLetters.MustCurryWith(prometheus.Labels{"service": service, "projection": name}),
		lag:         lag.WithLabelValues(service, name),
	}
}

func (m *metrics) accepted(appended time.Time) {
	m.delivered.Inc()
	m.lag.Observe(time.Since(appended).Seconds())
}
