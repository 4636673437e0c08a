package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the sidecar's Prometheus metrics, all labelled by the user
// service they concern.
type metrics struct {
	commands        *prometheus.CounterVec
	commandSeconds  *prometheus.HistogramVec
	activations     *prometheus.CounterVec
	passivations    *prometheus.CounterVec
	recoverySeconds *prometheus.HistogramVec
	recoveredEvents *prometheus.CounterVec
	persistedEvents *prometheus.CounterVec
	persistedBytes  *prometheus.CounterVec
	routedCommands  *prometheus.CounterVec
	routeRetries    *prometheus.CounterVec

	// load is what the sidecar reports to the autoscaler (load.go).
	load *loadStats
}

// newMetrics creates the metrics and registers them with reg (nil: not
// registered anywhere, for tests that do not look).
func newMetrics(reg prometheus.Registerer, active func() map[string]int) *metrics {
	m := &metrics{
		load: &loadStats{},
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_commands_total", Help: "Entity commands handled, by outcome (ok or error).",
		}, []string{"service", "outcome"}),
		commandSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "jetstate_proxy_command_duration_seconds", Help: "Time from sending a command to the user function to its reply being stored.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"service"}),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_entity_activations_total", Help: "Entities activated (recovered and init sent).",
		}, []string{"service"}),
		passivations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_entity_passivations_total", Help: "Entities passivated after being idle.",
		}, []string{"service"}),
		recoverySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "jetstate_proxy_recovery_duration_seconds", Help: "Time to load an entity's state (snapshot and journal, or value).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"service"}),
		recoveredEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_recovered_events_total", Help: "Journal events replayed to the user function during recovery.",
		}, []string{"service"}),
		persistedEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_persisted_events_total", Help: "Events appended to journals.",
		}, []string{"service"}),
		persistedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_persisted_event_bytes_total", Help: "Payload bytes of events appended to journals.",
		}, []string{"service"}),
		routedCommands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_routed_commands_total", Help: "Entity commands by where they ran: local (this sidecar owns the shard) or remote (sent to the owner over NATS), retries included.",
		}, []string{"service", "route"}),
		routeRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_route_retries_total", Help: "Entity commands tried again because their shard was moving or had no reachable owner.",
		}, []string{"service"}),
	}
	if reg != nil {
		reg.MustRegister(m.commands, m.commandSeconds, m.activations, m.passivations,
			m.recoverySeconds, m.recoveredEvents, m.persistedEvents, m.persistedBytes, m.routedCommands, m.routeRetries)
		reg.MustRegister(activeCollector{
			desc:   prometheus.NewDesc("jetstate_proxy_active_entities", "Entities with an open stream to the user function.", []string{"service"}, nil),
			active: active,
		})
	}
	return m
}

func (m *metrics) commandDone(service string, d time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.commands.WithLabelValues(service, outcome).Inc()
	m.commandSeconds.WithLabelValues(service).Observe(d.Seconds())
}

func (m *metrics) activated(service string) {
	m.activations.WithLabelValues(service).Inc()
}

func (m *metrics) passivated(service string) { m.passivations.WithLabelValues(service).Inc() }

func (m *metrics) recovered(service string, d time.Duration, events int) {
	m.recoverySeconds.WithLabelValues(service).Observe(d.Seconds())
	m.recoveredEvents.WithLabelValues(service).Add(float64(events))
}

func (m *metrics) persisted(service string, events, bytes int) {
	m.persistedEvents.WithLabelValues(service).Add(float64(events))
	m.persistedBytes.WithLabelValues(service).Add(float64(bytes))
}

// activeCollector reports the active entities per service when scraped.
type activeCollector struct {
	desc   *prometheus.Desc
	active func() map[string]int
}

func (c activeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c activeCollector) Collect(ch chan<- prometheus.Metric) {
	for svc, n := range c.active() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), svc)
	}
}

func (m *metrics) routed(service, where string) {
	m.routedCommands.WithLabelValues(service, where).Inc()
}

func (m *metrics) routeRetried(service string) { m.routeRetries.WithLabelValues(service).Inc() }
