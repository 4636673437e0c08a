package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultTick is how often the Runner decides (the reference's 2 s).
const DefaultTick = 2 * time.Second

// tickTimeout bounds one tick, in ticks (at least 30 s).
const tickTimeout = 10

// Service is one autoscaled service as the Target sees it now.
type Service struct {
	// Name is the jetstate service name (streams.Config.Service): its
	// sidecars report load under it, and its State is stored under it.
	// Unique among the Target's services.
	Name string
	// Policy is the service's autoscaling policy; zero fields are defaults.
	Policy Policy
	// Replicas is the current scale: the replica count the workload is
	// asked to run (spec.replicas of the scale subresource).
	Replicas int
	// Ready is how many replicas run and are ready.
	Ready int
	// RollingOut reports a rollout in progress (a new pod template being
	// rolled out, not a scale change): nothing is decided meanwhile.
	RollingOut bool
}

// Target is what the autoscaler scales: in Kubernetes, the StatefulServices
// with autoscaling enabled, through their scale subresource. Both methods
// are called from the Runner's goroutine only, one call at a time.
type Target interface {
	// Services lists the services to autoscale now, with their policy and
	// scale. A service missing from the list is left alone (and its state
	// in memory forgotten).
	Services(ctx context.Context) ([]Service, error)
	// Scale sets svc's replica count (svc is as Services returned it).
	// reason is a sentence saying why, for an event on the object. An
	// error is logged and the decision is taken again next tick.
	Scale(ctx context.Context, svc Service, replicas int, reason string) error
}

// Config configures a Runner. A zero field means its documented default.
type Config struct {
	// Target lists and scales the services; required.
	Target Target
	// Loads summarises the services' load; required. Its Run must be
	// running for reports to arrive.
	Loads *Aggregator
	// Store keeps the decision state across restarts; nil keeps it in
	// memory only.
	Store *Store
	// Tick is how often decisions are taken (default 2 s).
	Tick time.Duration
	// Logger receives one line per decision (with its reason) and errors;
	// nil discards.
	Logger *slog.Logger
	// Registry receives the autoscaler's metrics; nil registers nowhere.
	Registry prometheus.Registerer
}

// Validate reports every problem with the config at once.
func (c Config) Validate() error {
	var errs []error
	if c.Target == nil {
		errs = append(errs, errors.New("no target"))
	}
	if c.Loads == nil {
		errs = append(errs, errors.New("no load aggregator"))
	}
	return errors.Join(errs...)
}

// Runner takes the decisions: every tick, for every service of the Target,
// it summarises the load, runs Policy.Decide on the service's State, saves
// the new State and applies the decision.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	states  map[string]*tracked
}

// tracked is a service's State as last loaded or saved, and its revision
// in the Store.
type tracked struct {
	state State
	rev   uint64
}

// New returns a Runner.
func New(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{cfg: cfg, log: cfg.Logger, metrics: newMetrics(cfg.Registry), states: map[string]*tracked{}}, nil
}

// Run decides at once and then every tick until ctx is done; it returns nil then. Errors of
// one tick (the Target, the Store) are logged and the next tick tries
// again.
func (r *Runner) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Tick)
	defer t.Stop()
	now := time.Now()
	for {
		if err := r.tick(ctx, now); err != nil && ctx.Err() == nil {
			r.log.Warn("autoscaler tick", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case now = <-t.C:
		}
	}
}

// tick takes the decisions of one tick at now. A tick that hangs (the
// Target, the Store) is given up after tickTimeout ticks.
func (r *Runner) tick(ctx context.Context, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, max(tickTimeout*r.cfg.Tick, 30*time.Second))
	defer cancel()
	services, err := r.cfg.Target.Services(ctx)
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	seen := map[string]bool{}
	var errs []error
	for _, svc := range services {
		seen[svc.Name] = true
		if err := r.decide(ctx, svc, now); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", svc.Name, err))
		}
	}
	for name := range r.states {
		if !seen[name] {
			delete(r.states, name)
			r.cfg.Loads.Forget(name)
			r.metrics.forget(name)
		}
	}
	return errors.Join(errs...)
}

// decide takes one service's decision.
func (r *Runner) decide(ctx context.Context, svc Service, now time.Time) error {
	log := r.log.With("service", svc.Name)
	tr, err := r.state(ctx, svc.Name)
	if err != nil {
		return err
	}
	pol := svc.Policy.WithDefaults()
	if err := pol.Validate(); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	sum := r.cfg.Loads.Summary(svc.Name, now, tr.state.MetricsSince, pol.ConcurrencyWindow, pol.RequestRateWindow)
	next, dec := pol.Decide(tr.state, Observation{
		Now: now, Replicas: svc.Replicas, Ready: svc.Ready, RollingOut: svc.RollingOut, Load: sum,
	})
	r.metrics.observe(svc, sum, next)
	if next != tr.state {
		if err := r.save(ctx, svc.Name, tr, next); err != nil {
			return err // not applied: a restarted operator must know what was decided
		}
	}
	if dec.Reason != "" {
		log.Info("autoscaler", "phase", next.phase(), "replicas", svc.Replicas, "desired", dec.Replicas, "reason", dec.Reason)
	}
	if dec.Replicas == 0 || dec.Replicas == svc.Replicas {
		return nil
	}
	r.metrics.decided(svc.Name, svc.Replicas, dec.Replicas)
	if err := r.cfg.Target.Scale(ctx, svc, dec.Replicas, dec.Reason); err != nil {
		return fmt.Errorf("scale to %d: %w", dec.Replicas, err)
	}
	return nil
}

// state returns the tracked state of service, loading it from the Store
// the first time.
func (r *Runner) state(ctx context.Context, service string) (*tracked, error) {
	if tr := r.states[service]; tr != nil {
		return tr, nil
	}
	tr := &tracked{}
	if r.cfg.Store != nil {
		st, rev, err := r.cfg.Store.Load(ctx, service)
		if err != nil {
			return nil, err
		}
		tr.state, tr.rev = st, rev
		if rev != 0 {
			r.log.Info("autoscaler state resumed", "service", service, "phase", st.phase(), "desired", st.Desired, "deadline", st.Deadline)
		}
	}
	r.states[service] = tr
	return tr, nil
}

// save stores next as service's state. On a lost race the state is
// re-read (someone else decided) and the decision dropped.
func (r *Runner) save(ctx context.Context, service string, tr *tracked, next State) error {
	if r.cfg.Store == nil {
		tr.state = next
		return nil
	}
	rev, err := r.cfg.Store.Save(ctx, service, next, tr.rev)
	if err == nil {
		tr.state, tr.rev = next, rev
		return nil
	}
	delete(r.states, service) // reload next tick
	return err
}
