package autoscaler

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetstate/jetstate/internal/prom"
)

// phases lists every phase, for the phase gauge.
var phases = []Phase{Stable, ScalingUp, ScalingDown, Upgrading}

// metrics are the Runner's Prometheus metrics, labelled by service.
type metrics struct {
	current   *prometheus.GaugeVec
	desired   *prometheus.GaugeVec
	ready     *prometheus.GaugeVec
	reporting *prometheus.GaugeVec
	phase     *prometheus.GaugeVec
	decisions *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		current: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetstate_autoscaler_current_replicas", Help: "Replicas the service is asked to run (its scale) at the last tick.",
		}, []string{"service"}),
		desired: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetstate_autoscaler_desired_replicas", Help: "Replicas the autoscaler last decided for the service (its current scale until it decides).",
		}, []string{"service"}),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetstate_autoscaler_ready_replicas", Help: "Ready replicas of the service at the last tick.",
		}, []string{"service"}),
		reporting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetstate_autoscaler_reporting_members", Help: "Sidecars of the service whose load reports are live.",
		}, []string{"service"}),
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jetstate_autoscaler_phase", Help: "1 for the autoscaler's current phase of the service (Stable, ScalingUp, ScalingDown, Upgrading), 0 for the others.",
		}, []string{"service", "phase"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_autoscaler_decisions_total", Help: "Scale changes decided, by direction (up or down).",
		}, []string{"service", "direction"}),
	}
	m.current = prom.Register(reg, m.current)
	m.desired = prom.Register(reg, m.desired)
	m.ready = prom.Register(reg, m.ready)
	m.reporting = prom.Register(reg, m.reporting)
	m.phase = prom.Register(reg, m.phase)
	m.decisions = prom.Register(reg, m.decisions)
	return m
}

// observe records a tick's view of svc.
func (m *metrics) observe(svc Service, sum Summary, st State) {
	m.current.WithLabelValues(svc.Name).Set(float64(svc.Replicas))
	m.ready.WithLabelValues(svc.Name).Set(float64(svc.Ready))
	m.reporting.WithLabelValues(svc.Name).Set(float64(sum.Members))
	desired := svc.Replicas
	if st.phase() != Stable && st.Desired > 0 {
		desired = st.Desired
	}
	m.desired.WithLabelValues(svc.Name).Set(float64(desired))
	for _, ph := range phases {
		v := 0.0
		if ph == st.phase() {
			v = 1
		}
		m.phase.WithLabelValues(svc.Name, string(ph)).Set(v)
	}
}

func (m *metrics) decided(service string, from, to int) {
	dir := "up"
	if to < from {
		dir = "down"
	}
	m.decisions.WithLabelValues(service, dir).Inc()
	m.desired.WithLabelValues(service).Set(float64(to))
}

// forget drops the series of a service no longer autoscaled.
func (m *metrics) forget(service string) {
	for _, v := range []*prometheus.GaugeVec{m.current, m.desired, m.ready, m.reporting, m.phase} {
		v.DeletePartialMatch(prometheus.Labels{"service": service})
	}
	m.decisions.DeletePartialMatch(prometheus.Labels{"service": service})
}
