package eventing

import (
	"github.com/jetstate/jetstate/internal/prom"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the eventing consumers' and publishers' metrics,
// labelled by the subscribing user service and the source
// ("event_log:<pid>" or "topic:<name>").
type metrics struct {
	delivered   *prometheus.CounterVec
	failures    *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	ignored     *prometheus.CounterVec
	pending     *prometheus.GaugeVec
	lag         *prometheus.HistogramVec
	published   *prometheus.CounterVec
}

// newMetrics creates the metrics and registers them with reg (nil:
// nowhere).
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		delivered: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_eventing_delivered_total", Help: "Events the function accepted from an eventing source.",
		}, []string{"service", "source"})),
		failures: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_eventing_failures_total", Help: "Failed tries to hand an event to the function (it is retried).",
		}, []string{"service", "source"})),
		deadLetters: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_eventing_dead_letters_total", Help: "Events given up on and published to the dead-letter subject, by cause (retries or bad_event).",
		}, []string{"service", "source", "cause"})),
		ignored: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_eventing_ignored_total", Help: "Events no method of the consumer group takes (acknowledged and skipped).",
		}, []string{"service", "source"})),
		pending: prom.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetstate_proxy_eventing_pending_messages", Help: "Messages of the source not yet delivered to the consumer group, as of the last delivery (lag).",
		}, []string{"service", "source"})),
		lag: prom.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "jetstate_proxy_eventing_lag_seconds", Help: "Time from an event being stored to its message being handled.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
		}, []string{"service", "source"})),
		published: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_eventing_published_total", Help: "Replies published to out topics.",
		}, []string{"service", "topic"})),
	}
	return m
}
