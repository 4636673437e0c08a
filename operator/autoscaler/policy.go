package autoscaler

import (
	"errors"
	"fmt"
	"time"
)

// Defaults for Policy fields left zero. They are the reference autoscaler's
// (CloudState 0.5), except Max, which follows the StatefulService CRD.
const (
	DefaultMin                           = 1
	DefaultMax                           = 10
	DefaultTargetUserFunctionConcurrency = 1.0
	DefaultTargetRequestConcurrency      = 50.0
	DefaultMaxScaleStep                  = 2
	DefaultScaleUpStabilization          = 3 * time.Minute
	DefaultScaleDownStabilization        = 30 * time.Second
	DefaultRequestRateThresholdFactor    = 1.5
	DefaultConcurrencyWindow             = time.Minute
	DefaultRequestRateWindow             = 6 * time.Second
	DefaultReportTimeout                 = 10 * time.Second
)

// Policy is how one service is scaled. A zero field means its documented
// default.
type Policy struct {
	// Min and Max bound the replicas the autoscaler sets (defaults 1 and
	// 10). A service outside them is brought back at once, whatever its
	// load. jetstate does not scale to zero.
	Min, Max int

	// TargetUserFunctionConcurrency is the average number of commands in
	// the user function per replica aimed at (default 1: a function
	// handling one command at a time is fully busy).
	TargetUserFunctionConcurrency float64
	// TargetRequestConcurrency is the average number of client requests in
	// the sidecar per replica aimed at, not counting the time they wait for
	// the journal (default 50).
	TargetRequestConcurrency float64

	// MaxScaleStep caps how many replicas one decision adds or removes
	// (default 2; negative: no cap).
	MaxScaleStep int
	// MaxScaleFactor, if positive, caps the change of one decision to this
	// fraction of the current replicas (at least 1). Default 0: no cap.
	MaxScaleFactor float64

	// ScaleUpStabilization is how long concurrency is ignored after a
	// scale-up (default 3 min). It must cover the shard handoff to the new
	// sidecars and their warm-up; see ARCHITECTURE.md, "Autoscaling".
	ScaleUpStabilization time.Duration
	// ScaleDownStabilization is how long nothing is decided after a
	// scale-down (default 30 s): the remaining sidecars take over shards.
	ScaleDownStabilization time.Duration
	// RequestRateThresholdFactor: during the scale-up stabilization, a
	// request rate above this factor times the rate the scale-up was sized
	// for scales up further (default 1.5).
	RequestRateThresholdFactor float64

	// ConcurrencyWindow is the sliding window over which concurrencies are
	// averaged (default 1 min). A scale-down needs a full window of data.
	ConcurrencyWindow time.Duration
	// RequestRateWindow is the window over which the request rate is
	// measured (default 6 s); it is also what is kept of the metrics when
	// a stabilization ends.
	RequestRateWindow time.Duration
	// ReportTimeout is how long a decision waits for every ready replica
	// to report its load (default 10 s); after it, the replicas that
	// report are taken as representative.
	ReportTimeout time.Duration
}

// WithDefaults returns the policy with every zero field set to its
// default.
func (p Policy) WithDefaults() Policy {
	if p.Min <= 0 {
		p.Min = DefaultMin
	}
	if p.Max <= 0 {
		p.Max = max(DefaultMax, p.Min)
	}
	if p.TargetUserFunctionConcurrency <= 0 {
		p.TargetUserFunctionConcurrency = DefaultTargetUserFunctionConcurrency
	}
	if p.TargetRequestConcurrency <= 0 {
		p.TargetRequestConcurrency = DefaultTargetRequestConcurrency
	}
	if p.MaxScaleStep == 0 {
		p.MaxScaleStep = DefaultMaxScaleStep
	}
	if p.ScaleUpStabilization <= 0 {
		p.ScaleUpStabilization = DefaultScaleUpStabilization
	}
	if p.ScaleDownStabilization <= 0 {
		p.ScaleDownStabilization = DefaultScaleDownStabilization
	}
	if p.RequestRateThresholdFactor <= 0 {
		p.RequestRateThresholdFactor = DefaultRequestRateThresholdFactor
	}
	if p.ConcurrencyWindow <= 0 {
		p.ConcurrencyWindow = DefaultConcurrencyWindow
	}
	if p.RequestRateWindow <= 0 {
		p.RequestRateWindow = DefaultRequestRateWindow
	}
	if p.ReportTimeout <= 0 {
		p.ReportTimeout = DefaultReportTimeout
	}
	return p
}

// Validate reports every problem with the policy (after defaults) at once.
func (p Policy) Validate() error {
	p = p.WithDefaults()
	var errs []error
	if p.Min > p.Max {
		errs = append(errs, fmt.Errorf("min %d exceeds max %d", p.Min, p.Max))
	}
	if p.RequestRateThresholdFactor <= 1 {
		errs = append(errs, fmt.Errorf("request rate threshold factor %v must exceed 1", p.RequestRateThresholdFactor))
	}
	if p.RequestRateWindow > p.ConcurrencyWindow {
		errs = append(errs, fmt.Errorf("request rate window %v exceeds the concurrency window %v", p.RequestRateWindow, p.ConcurrencyWindow))
	}
	if p.MaxScaleFactor < 0 {
		errs = append(errs, errors.New("max scale factor must not be negative"))
	}
	return errors.Join(errs...)
}

// capped is want limited to one step from current and to [Min, Max]; the
// second result says whether the step cap applied.
func (p Policy) capped(current, want int) (int, bool) {
	limit := -1
	if p.MaxScaleFactor > 0 {
		limit = max(1, int(float64(current)*p.MaxScaleFactor))
	}
	if p.MaxScaleStep > 0 && (limit < 0 || p.MaxScaleStep < limit) {
		limit = p.MaxScaleStep
	}
	got := want
	if limit >= 0 {
		got = min(max(want, current-limit), current+limit)
	}
	return min(max(got, p.Min), p.Max), got != want
}
