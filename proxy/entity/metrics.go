package entity

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetstate/jetstate/internal/prom"
)

// Metrics are the entity runtimes' Prometheus metrics, labelled by the user
// service they concern. One Metrics serves every runtime of a sidecar;
// sidecars (or runs) sharing a registry share one set (internal/prom).
type Metrics struct {
	commands        *prometheus.CounterVec
	commandSeconds  *prometheus.HistogramVec
	activations     *prometheus.CounterVec
	passivations    *prometheus.CounterVec
	evictions       *prometheus.CounterVec
	active          *prometheus.GaugeVec
	recoverySeconds *prometheus.HistogramVec
	recoveredEvents *prometheus.CounterVec
	persistedEvents *prometheus.CounterVec
	persistedBytes  *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered anywhere).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{
		commands: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_commands_total", Help: "Entity commands handled, by outcome (ok or error).",
		}, []string{"service", "outcome"})),
		commandSeconds: prom.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "jetstate_proxy_command_duration_seconds", Help: "Time from sending a command to the user function to its reply being stored.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"service"})),
		activations: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_entity_activations_total", Help: "Entities activated (recovered and init sent).",
		}, []string{"service"})),
		passivations: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_entity_passivations_total", Help: "Entities passivated after being idle.",
		}, []string{"service"})),
		evictions: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_entity_evictions_total", Help: "Idle entities passivated to make room for another under the limit on active entities.",
		}, []string{"service"})),
		active: prom.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetstate_proxy_active_entities", Help: "Entities with an open stream to the user function.",
		}, []string{"service"})),
		recoverySeconds: prom.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "jetstate_proxy_recovery_duration_seconds", Help: "Time to load an entity's state (snapshot and journal, or value).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"service"})),
		recoveredEvents: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_recovered_events_total", Help: "Journal events replayed to the user function during recovery.",
		}, []string{"service"})),
		persistedEvents: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_persisted_events_total", Help: "Events appended to journals.",
		}, []string{"service"})),
		persistedBytes: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_persisted_event_bytes_total", Help: "Payload bytes of events appended to journals.",
		}, []string{"service"})),
	}
}

func (m *Metrics) commandDone(service string, d time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.commands.WithLabelValues(service, outcome).Inc()
	m.commandSeconds.WithLabelValues(service).Observe(d.Seconds())
}

func (m *Metrics) activated(service string) { m.activations.WithLabelValues(service).Inc() }

func (m *Metrics) passivated(service string) { m.passivations.WithLabelValues(service).Inc() }

func (m *Metrics) evicted(service string) { m.evictions.WithLabelValues(service).Inc() }

// activeDelta moves the service's active entity count by n.
func (m *Metrics) activeDelta(service string, n int) {
	m.active.WithLabelValues(service).Add(float64(n))
}

func (m *Metrics) recovered(service string, d time.Duration, events int) {
	m.recoverySeconds.WithLabelValues(service).Observe(d.Seconds())
	m.recoveredEvents.WithLabelValues(service).Add(float64(events))
}

func (m *Metrics) persisted(service string, events, bytes int) {
	m.persistedEvents.WithLabelValues(service).Add(float64(events))
	m.persistedBytes.WithLabelValues(service).Add(float64(bytes))
}
