package autoscaler

import (
	"fmt"
	"math"
	"time"
)

// Phase is where a service is in the autoscaler's state machine.
type Phase string

// The phases (the reference autoscaler's states). The zero Phase is Stable.
const (
	// Stable: decisions are taken from the load.
	Stable Phase = "Stable"
	// ScalingUp: after a scale-up, until State.Deadline; only a request
	// rate jump scales further.
	ScalingUp Phase = "ScalingUp"
	// ScalingDown: after a scale-down, until State.Deadline; nothing is
	// decided.
	ScalingDown Phase = "ScalingDown"
	// Upgrading: while the service rolls out; nothing is decided.
	Upgrading Phase = "Upgrading"
)

// State is the decision state of one service. It is what survives an
// operator restart (Store); times are wall-clock times so that another
// process can resume them.
type State struct {
	Phase Phase `json:"phase,omitempty"`
	// Since is when Phase was entered.
	Since time.Time `json:"since,omitzero"`
	// Desired is the replica count of the last decision (ScalingUp,
	// ScalingDown: re-asserted if the service's scale differs).
	Desired int `json:"desired,omitempty"`
	// RatePerReplica is the request rate per replica (requests/s) the last
	// scale-up was sized for: the total rate then divided by Desired.
	// During ScalingUp a total rate above RatePerReplica * Desired *
	// RequestRateThresholdFactor scales further. 0: unknown.
	RatePerReplica float64 `json:"ratePerReplica,omitempty"`
	// Deadline ends ScalingUp and ScalingDown.
	Deadline time.Time `json:"deadline,omitzero"`
	// MetricsSince: load measured before it is ignored (it was disturbed
	// by a scale change or a rollout).
	MetricsSince time.Time `json:"metricsSince,omitzero"`
	// WaitingSince is when the autoscaler started waiting for replicas
	// that do not report (see Policy.ReportTimeout); zero if all report.
	WaitingSince time.Time `json:"waitingSince,omitzero"`
}

func (s State) phase() Phase {
	if s.Phase == "" {
		return Stable
	}
	return s.Phase
}

// Summary is a service's load as the Aggregator measured it.
type Summary struct {
	// Members is the number of sidecars that reported within the window
	// and are still live.
	Members int
	// The time-weighted average, per member, over the concurrency window,
	// of requests in the sidecar, commands in the user function and store
	// operations.
	RequestConcurrency, FunctionConcurrency, JournalConcurrency float64
	// RequestRate is the requests per second of all members together over
	// the request-rate window.
	RequestRate float64
	// Covered is how much of the concurrency window the samples cover
	// (from the start of the oldest one to now).
	Covered time.Duration
}

// adjustedRequestConcurrency is request concurrency minus the time spent
// waiting on the store, which more replicas would not shorten.
func (s Summary) adjustedRequestConcurrency() float64 {
	return math.Max(0, s.RequestConcurrency-s.JournalConcurrency)
}

// Observation is what Decide looks at: the time, the service's scale and
// its load.
type Observation struct {
	Now time.Time
	// Replicas is the service's current scale (what it was asked to run);
	// Ready how many of them run and are ready.
	Replicas, Ready int
	// RollingOut: a rollout (new pod template) is in progress. A mere
	// scale change is not a rollout.
	RollingOut bool
	Load       Summary
}

// Decision is the outcome of one Decide.
type Decision struct {
	// Replicas to set; 0 leaves the scale as it is.
	Replicas int
	// Reason says why, for logs and events; empty when nothing changed.
	Reason string
}

// Decide runs one step of the state machine: from the service's state and
// what is observed now it returns the next state and what to do. It is
// pure and deterministic.
func (p Policy) Decide(s State, o Observation) (State, Decision) {
	p = p.WithDefaults()
	now := o.Now
	enter := func(ph Phase) {
		s.Phase, s.Since = ph, now
	}

	// A rollout first: its restarts move shards and make the load
	// meaningless; the autoscaler stays out of its way.
	if o.RollingOut {
		if s.phase() != Upgrading {
			from := s.phase()
			enter(Upgrading)
			s.Deadline, s.WaitingSince = time.Time{}, time.Time{}
			return s, Decision{Reason: fmt.Sprintf("rollout in progress: no decisions until it ends (was %s)", from)}
		}
		return s, Decision{}
	}
	if s.phase() == Upgrading {
		enter(Stable)
		s.MetricsSince = now
		return s, Decision{Reason: "rollout finished: deciding again on load measured from now"}
	}

	// Bounds, in any phase: a service outside [Min, Max] is brought back.
	if o.Replicas < p.Min || o.Replicas > p.Max {
		want := min(max(o.Replicas, p.Min), p.Max)
		why := fmt.Sprintf("%d replicas below the minimum %d", o.Replicas, p.Min)
		if want < o.Replicas {
			why = fmt.Sprintf("%d replicas above the maximum %d", o.Replicas, p.Max)
			s = p.scaledDown(s, now, want)
		} else {
			s = p.scaledUp(s, now, want, o.Load.RequestRate)
		}
		return s, Decision{Replicas: want, Reason: fmt.Sprintf("%s: scale %d -> %d", why, o.Replicas, want)}
	}

	switch s.phase() {
	case ScalingUp:
		if !now.Before(s.Deadline) {
			enter(Stable)
			s.MetricsSince = now.Add(-p.RequestRateWindow)
			return s, Decision{Reason: fmt.Sprintf("scale-up stabilization of %v ended: stable at %d replicas", p.ScaleUpStabilization, o.Replicas)}
		}
		return p.duringScaleUp(s, o)
	case ScalingDown:
		if !now.Before(s.Deadline) {
			enter(Stable)
			s.MetricsSince = now.Add(-p.RequestRateWindow)
			return s, Decision{Reason: fmt.Sprintf("scale-down stabilization of %v ended: stable at %d replicas", p.ScaleDownStabilization, o.Replicas)}
		}
		return s, p.reassert(s, o)
	}
	return p.stable(s, o)
}

// duringScaleUp watches only the request rate: concurrency is inflated
// while shards move and the new replicas warm up.
func (p Policy) duringScaleUp(s State, o Observation) (State, Decision) {
	l := o.Load
	sizedFor := s.RatePerReplica * float64(s.Desired)
	if sizedFor > 0 && l.Members > 0 && l.RequestRate > sizedFor*p.RequestRateThresholdFactor && p.overTarget(l) {
		need := int(math.Ceil(l.RequestRate / s.RatePerReplica))
		want, capped := p.capped(o.Replicas, need)
		if want > o.Replicas && want > s.Desired {
			s = p.scaledUp(s, o.Now, want, l.RequestRate) // sized for the rate now
			return s, Decision{Replicas: want, Reason: fmt.Sprintf(
				"request rate %.1f/s is over %.1fx the %.1f/s the last scale-up was sized for: scale %d -> %d%s; stabilization restarts",
				l.RequestRate, p.RequestRateThresholdFactor, sizedFor, o.Replicas, want, cappedNote(capped, need))}
		}
	}
	return s, p.reassert(s, o)
}

// reassert puts the scale back to the decided one if something else
// changed it during a stabilization.
func (p Policy) reassert(s State, o Observation) Decision {
	want := min(max(s.Desired, p.Min), p.Max)
	if s.Desired > 0 && want != o.Replicas {
		return Decision{Replicas: want, Reason: fmt.Sprintf("scale is %d during the %s stabilization: re-asserting %d", o.Replicas, s.phase(), want)}
	}
	return Decision{}
}

// stable is the reference algorithm's Stable state.
func (p Policy) stable(s State, o Observation) (State, Decision) {
	l := o.Load
	if l.Members < o.Ready {
		if s.WaitingSince.IsZero() {
			// Said once (a log line, not an event): a scale decision that
			// comes late shows here why.
			s.WaitingSince = o.Now
			return s, Decision{Reason: fmt.Sprintf("%d of %d ready replicas report load: waiting up to %v for the others", l.Members, o.Ready, p.ReportTimeout)}
		}
		if o.Now.Sub(s.WaitingSince) < p.ReportTimeout {
			return s, Decision{}
		}
	} else {
		s.WaitingSince = time.Time{}
	}
	if l.Members == 0 {
		return s, Decision{}
	}
	missing := ""
	if l.Members < o.Ready {
		missing = fmt.Sprintf(" (only %d of %d ready replicas report)", l.Members, o.Ready)
	}
	members := float64(l.Members)
	ufc, arc := l.FunctionConcurrency, l.adjustedRequestConcurrency()
	forFunction := max(1, int(math.Ceil(ufc*members/p.TargetUserFunctionConcurrency)))
	forRequests := max(1, int(math.Ceil(arc*members/p.TargetRequestConcurrency)))

	up := func(need int, what string, value, target float64) (State, Decision) {
		want, capped := p.capped(o.Replicas, need)
		if want <= o.Replicas {
			return s, Decision{}
		}
		s = p.scaledUp(s, o.Now, want, l.RequestRate)
		return s, Decision{Replicas: want, Reason: fmt.Sprintf("%s %.2f per replica over %d replicas is above the target %g: scale %d -> %d%s%s",
			what, value, l.Members, target, o.Replicas, want, cappedNote(capped, need), missing)}
	}
	switch {
	case ufc > p.TargetUserFunctionConcurrency:
		return up(forFunction, "user-function concurrency", ufc, p.TargetUserFunctionConcurrency)
	case arc > p.TargetRequestConcurrency:
		return up(forRequests, "request concurrency (less journal)", arc, p.TargetRequestConcurrency)
	case forFunction < o.Replicas && forRequests < o.Replicas && l.Covered >= p.ConcurrencyWindow:
		need := max(forFunction, forRequests)
		want, capped := p.capped(o.Replicas, need)
		if want >= o.Replicas {
			return s, Decision{}
		}
		s = p.scaledDown(s, o.Now, want)
		return s, Decision{Replicas: want, Reason: fmt.Sprintf(
			"%d replicas would do (user-function concurrency %.2f, request concurrency less journal %.2f per replica over %d replicas for %v): scale %d -> %d%s%s",
			need, ufc, arc, l.Members, p.ConcurrencyWindow, o.Replicas, want, cappedNote(capped, need), missing)}
	}
	return s, Decision{}
}

// overTarget: concurrency is still above a target (a request-rate jump
// alone, with little work behind it, does not scale).
func (p Policy) overTarget(l Summary) bool {
	return l.FunctionConcurrency > p.TargetUserFunctionConcurrency || l.adjustedRequestConcurrency() > p.TargetRequestConcurrency
}

func (p Policy) scaledUp(s State, now time.Time, want int, rate float64) State {
	s.Phase, s.Since = ScalingUp, now
	s.Desired = want
	s.RatePerReplica = rate / float64(want)
	s.Deadline = now.Add(p.ScaleUpStabilization)
	s.WaitingSince = time.Time{}
	return s
}

func (p Policy) scaledDown(s State, now time.Time, want int) State {
	s.Phase, s.Since = ScalingDown, now
	s.Desired = want
	s.RatePerReplica = 0
	s.Deadline = now.Add(p.ScaleDownStabilization)
	s.WaitingSince = time.Time{}
	return s
}

func cappedNote(capped bool, need int) string {
	if !capped {
		return ""
	}
	return fmt.Sprintf(" (capped, %d wanted)", need)
}
