package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/internal/prom"
	"github.com/jetstate/jetstate/protocol/jetstate/load"
	"github.com/jetstate/jetstate/streams"
)

// Defaults for AggregatorConfig fields left zero.
const (
	// DefaultSilentPeriods: a member that has not reported for this many
	// of its report intervals is no longer counted.
	DefaultSilentPeriods = 3
	// maxInterval bounds the interval of a report taken into account; a
	// longer one is not a sidecar's periodic report.
	maxInterval = time.Minute
)

// AggregatorConfig configures an Aggregator. A zero field means its
// documented default.
type AggregatorConfig struct {
	// Conn is the NATS connection to the store the services' sidecars use;
	// required by Run.
	Conn *nats.Conn
	// Prefix is the storage prefix of the services (streams.Config.Prefix,
	// default "jetstate"): reports are read from <prefix>_load.*.
	Prefix string
	// SilentPeriods: a member silent for more than this many of its report
	// intervals drops out (default 3).
	SilentPeriods int
	// Logger; nil discards.
	Logger *slog.Logger
	// Registry receives the aggregator's metrics; nil registers nowhere.
	Registry prometheus.Registerer
}

// Aggregator collects the load reports of every service's sidecars and
// summarises them per service over sliding windows. It is safe for
// concurrent use.
type Aggregator struct {
	cfg     AggregatorConfig
	log     *slog.Logger
	reports *prometheus.CounterVec

	mu       sync.Mutex
	services map[string]*serviceLoad
}

// serviceLoad is the retained samples of one service, by member.
type serviceLoad struct {
	members map[string]*memberLoad
	keep    time.Duration // how far back Summary looks (its longest window)
}

type memberLoad struct {
	samples []sample // by end time
	last    time.Time
	period  time.Duration // interval of its last report
}

// sample is one report: the interval (start, end] and, for each kind of
// work, the in-flight time inside it.
type sample struct {
	start, end                          time.Time
	requestArea, functionArea, jourArea float64 // seconds of in-flight time
	requests                            int64
}

// NewAggregator returns an aggregator; Run feeds it from NATS.
func NewAggregator(cfg AggregatorConfig) *Aggregator {
	if cfg.SilentPeriods <= 0 {
		cfg.SilentPeriods = DefaultSilentPeriods
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Aggregator{
		cfg: cfg, log: cfg.Logger, services: map[string]*serviceLoad{},
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_autoscaler_load_reports_total", Help: "Load reports received from sidecars, by outcome (ok or invalid).",
		}, []string{"outcome"}),
	}
	a.reports = prom.Register(cfg.Registry, a.reports)
	return a
}

// Run subscribes to the load reports of every service under the prefix
// and records them until ctx is done. It returns nil then, or the error
// that prevented subscribing.
func (a *Aggregator) Run(ctx context.Context) error {
	if a.cfg.Conn == nil {
		return errors.New("aggregator: no NATS connection")
	}
	subject := streams.Config{Prefix: a.cfg.Prefix}.LoadSubjects()
	head := strings.TrimSuffix(subject, "*")
	sub, err := a.cfg.Conn.Subscribe(subject, func(m *nats.Msg) {
		if err := a.handle(strings.TrimPrefix(m.Subject, head), m.Data, time.Now()); err != nil {
			a.log.Debug("load report dropped", "subject", m.Subject, "error", err)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	// Slow handling must not cost the connection: reports are cheap to lose.
	_ = sub.SetPendingLimits(64<<10, 64<<20)
	<-ctx.Done()
	return sub.Unsubscribe()
}

// handle decodes and records one report for service received at now.
func (a *Aggregator) handle(service string, data []byte, now time.Time) error {
	var r load.Report
	err := proto.Unmarshal(data, &r)
	if err == nil {
		err = a.record(service, &r, now)
	}
	outcome := "ok"
	if err != nil {
		outcome = "invalid"
	}
	a.reports.WithLabelValues(outcome).Inc()
	return err
}

// record adds a report of service, received at now (the receiver's clock:
// sidecars' clocks are not trusted to agree).
func (a *Aggregator) record(service string, r *load.Report, now time.Time) error {
	iv := time.Duration(r.GetIntervalNanos())
	switch {
	case service == "" || strings.ContainsAny(service, ".*> "):
		return fmt.Errorf("bad service %q", service)
	case r.GetMember() == "":
		return errors.New("no member")
	case iv <= 0 || iv > maxInterval:
		return fmt.Errorf("interval %v out of range", iv)
	case r.GetRequestCount() < 0:
		return errors.New("negative request count")
	}
	s := sample{start: now.Add(-iv), end: now, requests: r.GetRequestCount()}
	for _, f := range []struct {
		c    float64
		area *float64
	}{{r.GetRequestConcurrency(), &s.requestArea}, {r.GetFunctionConcurrency(), &s.functionArea}, {r.GetJournalConcurrency(), &s.jourArea}} {
		if math.IsNaN(f.c) || math.IsInf(f.c, 0) || f.c < 0 || f.c > 1e9 {
			return fmt.Errorf("concurrency %v out of range", f.c)
		}
		*f.area = f.c * iv.Seconds()
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	sl := a.services[service]
	if sl == nil {
		sl = &serviceLoad{members: map[string]*memberLoad{}, keep: DefaultConcurrencyWindow}
		a.services[service] = sl
	}
	m := sl.members[r.GetMember()]
	if m == nil {
		m = &memberLoad{}
		sl.members[r.GetMember()] = m
	}
	m.samples = append(m.samples, s)
	m.last, m.period = now, iv
	m.prune(now.Add(-sl.keep))
	return nil
}

// prune drops the samples that ended before horizon.
func (m *memberLoad) prune(horizon time.Time) {
	i := 0
	for i < len(m.samples) && !m.samples[i].end.After(horizon) {
		i++
	}
	if i > 0 {
		m.samples = append(m.samples[:0], m.samples[i:]...)
	}
}

// prune drops samples older than the service's longest window and members
// silent for that long; a.mu is held.
func (a *Aggregator) prune(sl *serviceLoad, now time.Time) {
	for id, m := range sl.members {
		m.prune(now.Add(-sl.keep))
		if len(m.samples) == 0 {
			delete(sl.members, id)
		}
	}
}

// live reports whether m reported recently enough to count.
func (a *Aggregator) live(m *memberLoad, now time.Time) bool {
	return now.Sub(m.last) <= time.Duration(a.cfg.SilentPeriods)*m.period
}

// Summary summarises service's load at now over the live members' samples
// that end after since: concurrencies over the last window, the request
// rate over the last rateWindow. Samples older than window are forgotten
// afterwards (the longest window asked for is kept).
func (a *Aggregator) Summary(service string, now, since time.Time, window, rateWindow time.Duration) Summary {
	a.mu.Lock()
	defer a.mu.Unlock()
	sl := a.services[service]
	if sl == nil {
		return Summary{}
	}
	if window > sl.keep {
		sl.keep = window
	}
	from := now.Add(-window)
	if since.After(from) {
		from = since
	}
	rateFrom := now.Add(-rateWindow)
	if since.After(rateFrom) {
		rateFrom = since
	}
	var (
		sum        Summary
		seconds    float64 // sample time of all members together
		rq, fn, jr float64
		oldest     time.Time
		rateN      float64
	)
	for _, m := range sl.members {
		if !a.live(m, now) {
			continue
		}
		counted := false
		var mRequests, mSeconds float64
		for _, s := range m.samples {
			if !s.end.After(from) || s.end.After(now) {
				continue
			}
			counted = true
			d := s.end.Sub(s.start).Seconds()
			seconds += d
			rq, fn, jr = rq+s.requestArea, fn+s.functionArea, jr+s.jourArea
			if oldest.IsZero() || s.start.Before(oldest) {
				oldest = s.start
			}
			if s.end.After(rateFrom) {
				mRequests += float64(s.requests)
				mSeconds += d
			}
		}
		if counted {
			sum.Members++
		}
		if mSeconds > 0 {
			rateN += mRequests / mSeconds
		}
	}
	if seconds > 0 {
		sum.RequestConcurrency, sum.FunctionConcurrency, sum.JournalConcurrency = rq/seconds, fn/seconds, jr/seconds
		sum.Covered = min(now.Sub(oldest), window)
	}
	sum.RequestRate = rateN
	a.prune(sl, now)
	return sum
}

// Forget drops what is known of service (it is no longer autoscaled).
func (a *Aggregator) Forget(service string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.services, service)
}
