package autoscaler

import (
	"strings"
	"testing"
	"time"
)

func TestCapped(t *testing.T) {
	for _, tc := range []struct {
		name               string
		policy             Policy
		current, want, got int
		wantCapped         bool
	}{
		{"default step up", Policy{}, 2, 10, 4, true},
		{"default step down", Policy{}, 8, 1, 6, true},
		{"within step", Policy{}, 2, 3, 3, false},
		{"no step", Policy{MaxScaleStep: -1}, 2, 9, 9, false},
		{"factor", Policy{MaxScaleStep: -1, MaxScaleFactor: 0.5, Max: 20}, 8, 20, 12, true},
		{"factor at least one", Policy{MaxScaleStep: -1, MaxScaleFactor: 0.1}, 2, 5, 3, true},
		{"step under factor", Policy{MaxScaleStep: 1, MaxScaleFactor: 0.5, Max: 20}, 8, 20, 9, true},
		{"max", Policy{MaxScaleStep: -1, Max: 5}, 2, 9, 5, false},
		{"min", Policy{MaxScaleStep: -1, Min: 3}, 4, 1, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, capped := tc.policy.WithDefaults().capped(tc.current, tc.want)
			if got != tc.got || capped != tc.wantCapped {
				t.Fatalf("capped(%d, %d) = %d, %v; want %d, %v", tc.current, tc.want, got, capped, tc.got, tc.wantCapped)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := (Policy{}).Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	err := Policy{Min: 5, Max: 2, RequestRateThresholdFactor: 0.5, RequestRateWindow: 2 * time.Minute, MaxScaleFactor: -1}.Validate()
	for _, want := range []string{"min 5 exceeds max 2", "factor 0.5", "request rate window", "negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to say %q", err, want)
		}
	}
}

// Decide is pure: the same state and observation give the same result,
// and a hold leaves the state alone.
func TestDecideHoldKeepsState(t *testing.T) {
	now := time.Unix(1e9, 0)
	s := State{Phase: Stable, MetricsSince: now.Add(-time.Minute)}
	o := Observation{Now: now, Replicas: 3, Ready: 3, Load: Summary{Members: 3, FunctionConcurrency: 0.9, RequestConcurrency: 10, Covered: time.Minute}}
	next, d := Policy{}.Decide(s, o)
	if next != s || d != (Decision{}) {
		t.Fatalf("Decide = %+v, %+v; want a hold with the same state", next, d)
	}
	// 0.5 per replica over 3: 2 would do.
	o.Load.FunctionConcurrency = 0.5
	next, d = Policy{}.Decide(s, o)
	next2, d2 := Policy{}.Decide(s, o)
	if next != next2 || d != d2 {
		t.Fatal("Decide is not deterministic")
	}
	if d.Replicas != 2 || next.Phase != ScalingDown || !next.Deadline.Equal(now.Add(DefaultScaleDownStabilization)) {
		t.Fatalf("Decide = %+v, %+v; want a scale-down to 2", next, d)
	}
}

// A replica that does not report is waited for, and that is said once (a
// log line), so that a late decision shows why; a replica that never
// reports leaves the service undecided, silently after that.
func TestDecideSaysItWaitsForReports(t *testing.T) {
	now := time.Unix(1e9, 0)
	s := State{Phase: Stable, MetricsSince: now.Add(-time.Minute)}
	o := Observation{Now: now, Replicas: 2, Ready: 2, Load: Summary{Members: 0}}
	s, d := Policy{}.Decide(s, o)
	if d.Replicas != 0 || d.Reason != "0 of 2 ready replicas report load: waiting up to 10s for the others" {
		t.Fatalf("first tick without reports: %+v", d)
	}
	for _, after := range []time.Duration{time.Second, 11 * time.Second, time.Minute} {
		o.Now = now.Add(after)
		if s, d = (Policy{}).Decide(s, o); d != (Decision{}) {
			t.Fatalf("%v later: %+v, want nothing said", after, d)
		}
	}
	// Reports again: the wait is over, and a new one would be said again.
	o.Load = Summary{Members: 2, FunctionConcurrency: 0.5, Covered: time.Minute}
	if s, _ = (Policy{}).Decide(s, o); !s.WaitingSince.IsZero() {
		t.Fatalf("still waiting with every replica reporting: %+v", s)
	}
}
