package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/jetstate/jetstate/examples/shoppingcart"
)

// Step is one measured step of a scenario: a rate held for a while.
type Step struct {
	// Phase is "fixed" (one of the configured rates) or "search".
	Phase string `json:"phase"`
	// Threads is the load generator's concurrency in this step.
	Threads int        `json:"threads"`
	Load    LoadResult `json:"load"`
	// Usage per process: "sidecar" (the one taking the load), "function" (its cart
	// function), "nats-server", "load generator", and in a routed scenario "owner sidecar"
	// and "owner function".
	Usage map[string]Usage `json:"usage"`
	// RoutedIntact: in a routed scenario every cart's shard stayed with the owner sidecar.
	RoutedIntact bool `json:"routed_intact"`
	// Sustained: no errors, p99 under the limit, at least 95% of the rate achieved.
	Sustained bool `json:"sustained"`
	// Profiles maps a sidecar's name to the top functions of its CPU profile by their own
	// CPU (flat); ProfilesCum the same by CPU in them and what they call (cum).
	Profiles    map[string]string `json:"profiles,omitempty"`
	ProfilesCum map[string]string `json:"profiles_cum,omitempty"`
}

// ScenarioResult is a scenario's steps and the highest sustained rate found.
type ScenarioResult struct {
	Name     string   `json:"name"`
	Scenario Scenario `json:"scenario"`
	Steps    []Step   `json:"steps"`
	// MaxRate is the highest rate sustained (0: none); MaxCapped means the search stopped
	// at its limit still sustaining it.
	MaxRate   int     `json:"max_rate"`
	MaxP99    float64 `json:"max_rate_p99_ms"`
	MaxCapped bool    `json:"max_capped"`
	// Idle is the sidecars' memory once ready, before any command: "sidecar", "owner sidecar".
	Idle  map[string]Usage `json:"idle"`
	Error string           `json:"error,omitempty"`
}

// Results is a whole run.
type Results struct {
	Started      time.Time        `json:"started"`
	Machine      string           `json:"machine"`
	Go           string           `json:"go"`
	NATS         string           `json:"nats_server"`
	Duration     time.Duration    `json:"step_duration"`
	Search       time.Duration    `json:"search_step_duration"`
	Threads      int              `json:"threads"`
	PayloadBytes int              `json:"payload_bytes"`
	P99LimitMS   float64          `json:"p99_limit_ms"`
	Rates        []int            `json:"rates"`
	ProfileRate  int              `json:"profile_rate"`
	ProfileTop   int              `json:"profile_top"`
	Scenarios    []ScenarioResult `json:"scenarios"`
}

// Process names in Step.Usage.
const (
	procSidecar  = "sidecar"
	procFunction = "function"
	procOwner    = "owner sidecar"
	procOwnerFn  = "owner function"
	procNATS     = "nats-server"
	procLoad     = "load generator"
)

// run runs every scenario of cfg and writes the results to cfg.Out; the report goes to out
// too. A scenario that fails is reported and the others still run; run then returns an error.
func run(ctx context.Context, cfg Config, out io.Writer) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "jetstate-bench-e2e-")
	if err != nil {
		return err
	}
	if cfg.Keep {
		fmt.Fprintf(cfg.Log, "logs and stores in %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	var bins binaries
	if cfg.Bin != "" {
		bins, err = prebuilt(cfg.Bin)
	} else {
		fmt.Fprintln(cfg.Log, "building jetstate, the cart function and nats-server")
		bins, err = build(ctx, cfg.Repo, filepath.Join(tmp, "bin"))
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(cfg.Out, "profiles"), 0o755); err != nil {
		return err
	}
	perScenario := cfg.Warmup + time.Duration(len(cfg.Rates))*cfg.Duration
	if !cfg.NoSearch {
		perScenario += time.Duration(cfg.SearchSteps) * cfg.SearchDuration
	}
	fmt.Fprintf(cfg.Log, "%d scenarios, at most about %v each (plus start-up)\n", len(cfg.Scenarios), perScenario)

	res := Results{
		Started: time.Now().UTC(), Machine: machine(), Go: runtime.Version(), NATS: version(ctx, bins.NATS, "--version"),
		Duration: cfg.Duration, Search: cfg.SearchDuration, Threads: cfg.Threads, PayloadBytes: cfg.PayloadBytes,
		P99LimitMS: ms(cfg.P99Limit), Rates: cfg.Rates, ProfileRate: cfg.ProfileRate, ProfileTop: cfg.ProfileTop,
	}
	if cfg.NoSearch {
		res.Search = 0
	}
	var failed []error
	for i, sc := range cfg.Scenarios {
		dir := filepath.Join(tmp, fmt.Sprintf("%02d-%s", i, sc.Name()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		sr, err := runScenario(ctx, cfg, bins, sc, dir)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			sr.Error = err.Error()
			failed = append(failed, fmt.Errorf("%s: %w", sc.Name(), err))
			fmt.Fprintf(cfg.Log, "%s failed: %v\n", sc.Name(), err)
		}
		res.Scenarios = append(res.Scenarios, sr)
		if err := writeJSON(filepath.Join(cfg.Out, "results.json"), res); err != nil {
			return err
		}
	}
	return errors.Join(append(failed, render(res, cfg.Out, out))...)
}

// render writes results.md and latency.svg of res to dir, and results.md to out too.
func render(res Results, dir string, out io.Writer) error {
	report := renderReport(res)
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(report), 0o644); err != nil {
		return err
	}
	fmt.Fprint(out, report)
	return drawChart(res, filepath.Join(dir, "latency.svg"))
}

// rerender renders an earlier run's results.json again, into the directory it is in.
func rerender(path string, out io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return render(res, filepath.Dir(path), out)
}

// runScenario deploys a scenario's processes, warms up, runs the fixed rates and the search,
// and stops the processes.
func runScenario(ctx context.Context, cfg Config, bins binaries, sc Scenario, dir string) (ScenarioResult, error) {
	sr := ScenarioResult{Name: sc.Name(), Scenario: sc}
	fmt.Fprintf(cfg.Log, "%s: starting nats-server, function and sidecar%s\n", sr.Name, map[bool]string{true: " (twice)"}[sc.Routed])
	d, err := deploy(ctx, bins, sc, dir)
	if err != nil {
		return sr, err
	}
	defer d.close()
	sr.Idle = map[string]Usage{}
	for i, sc := range d.sidecars {
		u, err := memory(sc.proc.pid())
		if err != nil {
			return sr, err
		}
		sr.Idle[[]string{procSidecar, procOwner}[i]] = u
	}
	r := &stepper{cfg: cfg, bins: bins, d: d, sc: sc, dir: dir}
	if cfg.Warmup > 0 {
		fmt.Fprintf(cfg.Log, "%s: warm-up at %d/s for %v\n", sr.Name, cfg.Rates[0], cfg.Warmup)
		if _, err := r.step(ctx, cfg.Rates[0], cfg.Warmup, "warmup", false); err != nil {
			return sr, err
		}
	}
	for _, rate := range cfg.Rates {
		st, err := r.step(ctx, rate, cfg.Duration, "fixed", rate == cfg.ProfileRate)
		if err != nil {
			return sr, err
		}
		sr.Steps = append(sr.Steps, st)
	}
	if !cfg.NoSearch {
		if err := r.search(ctx, &sr); err != nil {
			return sr, err
		}
	}
	return sr, nil
}

// stepper runs the steps of one deployed scenario.
type stepper struct {
	cfg  Config
	bins binaries
	d    *deployment
	sc   Scenario
	dir  string
	n    int
}

// threadsFor is the load generator's concurrency for a rate: at least cfg.Threads, and
// enough that no thread has to call more than 250 times a second (4 ms a call), so that the
// generator's concurrency does not cap the rate under the latency limit.
func (r *stepper) threadsFor(rate int) int {
	return max(r.cfg.Threads, (rate+249)/250)
}

// step holds rate for dur and measures it; profileIt takes a CPU profile of each sidecar.
func (r *stepper) step(ctx context.Context, rate int, dur time.Duration, phase string, profileIt bool) (Step, error) {
	r.n++
	threads := r.threadsFor(rate)
	st := Step{Phase: phase, Threads: threads}
	spec := LoadSpec{
		Target: r.d.sidecars[0].ingress, Transport: r.sc.Transport, Keys: r.d.cartKeys(threads),
		Rate: float64(rate), Duration: dur, PayloadBytes: r.cfg.PayloadBytes, Timeout: r.cfg.CallTimeout,
	}
	if r.sc.Entity == "value" {
		spec.Method, spec.Path = "/"+shoppingcart.ValueServiceName+"/AddItem", "/value-cart/%s/items/add"
	} else {
		spec.Method, spec.Path = "/"+shoppingcart.ServiceName+"/AddItem", "/cart/%s/items/add"
	}
	pids := map[string]int{procSidecar: r.d.sidecars[0].proc.pid(), procFunction: r.d.functions[0].pid(), procNATS: r.d.nats.pid()}
	if len(r.d.sidecars) > 1 {
		pids[procOwner], pids[procOwnerFn] = r.d.sidecars[1].proc.pid(), r.d.functions[1].pid()
	}
	for name, pid := range pids {
		if err := resetPeak(pid); err != nil {
			return st, fmt.Errorf("reset the peak RSS of %s: %w", name, err)
		}
	}
	lp, err := startLoad(r.cfg.Self, filepath.Join(r.dir, fmt.Sprintf("load-%02d-%d.log", r.n, rate)), spec)
	if err != nil {
		return st, err
	}
	defer lp.close()
	// Stopped, the load generator ends its run at once, and next reports it.
	defer context.AfterFunc(ctx, func() { lp.stop(5 * time.Second) })()
	line, err := lp.next()
	if err != nil {
		return st, err
	}
	if line != startedLine {
		return st, fmt.Errorf("load generator said %q, want %q", line, startedLine)
	}
	w, err := watchCPU(pids)
	if err != nil {
		return st, err
	}
	t0 := time.Now()
	var profiles errgroup.Group
	paths := map[string]string{}
	if profileIt {
		seconds := max(1, int(dur.Seconds())-1)
		names := []string{procSidecar, procOwner}
		for i, sc := range r.d.sidecars {
			path := filepath.Join(r.cfg.Out, "profiles", fmt.Sprintf("%s-%d-%s.pprof", r.sc.Name(), rate, map[int]string{0: "sidecar", 1: "owner"}[i]))
			paths[names[i]] = path
			profiles.Go(func() error { return profile(ctx, sc.admin, seconds, path) })
		}
	}
	line, err = lp.next()
	if err != nil {
		return st, err
	}
	wall := time.Since(t0).Seconds()
	if st.Usage, err = w.stop(wall); err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(line), &st.Load); err != nil {
		return st, fmt.Errorf("load generator's result %q: %w", line, err)
	}
	st.Usage[procLoad] = st.Load.Self
	if err := profiles.Wait(); err != nil {
		return st, err
	}
	if err := r.d.died(); err != nil {
		return st, err
	}
	if len(paths) > 0 {
		st.Profiles, st.ProfilesCum = map[string]string{}, map[string]string{}
		for name, path := range paths {
			if st.Profiles[name], err = topFunctions(ctx, r.bins.Jetstate, path, r.cfg.ProfileTop, false); err != nil {
				return st, err
			}
			if st.ProfilesCum[name], err = topFunctions(ctx, r.bins.Jetstate, path, r.cfg.ProfileTop, true); err != nil {
				return st, err
			}
		}
	}
	st.RoutedIntact = r.d.routedIntact()
	st.Sustained = st.Load.Errors == 0 && st.Load.Calls > 0 && st.Load.P99 < ms(r.cfg.P99Limit) &&
		st.Load.Achieved >= 0.95*st.Load.Target && st.RoutedIntact
	fmt.Fprintf(r.cfg.Log, "%s %s %d/s: achieved %.0f/s, p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, errors %d, sidecar %.3f vCPU %.1f MB (sustained: %v)\n",
		r.sc.Name(), phase, rate, st.Load.Achieved, st.Load.P50, st.Load.P90, st.Load.P99, st.Load.Errors,
		st.Usage[procSidecar].VCPU, mb(st.Usage[procSidecar].RSS), st.Sustained)
	if len(st.Load.Samples) > 0 {
		fmt.Fprintf(r.cfg.Log, "  errors such as: %q\n", st.Load.Samples)
	}
	return st, nil
}

// search looks for the highest rate sustained: from the fixed steps' results it doubles the
// rate until one is not sustained (or SearchMax is passed), then bisects, each new rate rounded
// to two significant digits, for at most SearchSteps steps.
func (r *stepper) search(ctx context.Context, sr *ScenarioResult) error {
	lo, hi := 0, 0 // highest sustained rate, lowest not sustained (0: none yet)
	p99 := 0.0
	for _, st := range sr.Steps {
		rate := int(st.Load.Target)
		if !st.Sustained && (hi == 0 || rate < hi) {
			hi = rate
		}
	}
	for _, st := range sr.Steps {
		if rate := int(st.Load.Target); st.Sustained && rate > lo && (hi == 0 || rate < hi) {
			lo, p99 = rate, st.Load.P99
		}
	}
	for range r.cfg.SearchSteps {
		next := 0
		switch {
		case hi == 0:
			next = lo * 2
			if next > r.cfg.SearchMax {
				sr.MaxCapped = true
			}
		default:
			next = round2((lo + hi) / 2)
			if next <= lo || next >= hi {
				next = 0
			}
		}
		if next == 0 || next > r.cfg.SearchMax {
			break
		}
		st, err := r.step(ctx, next, r.cfg.SearchDuration, "search", false)
		if err != nil {
			return err
		}
		sr.Steps = append(sr.Steps, st)
		if st.Sustained {
			lo, p99 = next, st.Load.P99
		} else {
			hi = next
		}
	}
	sr.MaxRate, sr.MaxP99 = lo, p99
	return nil
}

// round2 rounds n to two significant digits.
func round2(n int) int {
	if n < 100 {
		return n
	}
	unit := int(math.Pow10(int(math.Log10(float64(n))) - 1))
	return (n + unit/2) / unit * unit
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// mb is bytes in MB (10^6 bytes, as Dapr's figures and the goals are given).
func mb(b uint64) float64 { return float64(b) / 1e6 }

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
