package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

// TestMain makes the test binary the load generator when the harness runs it as one.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == loadgenCommand {
		os.Exit(loadgenMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// TestHarness runs the whole harness for a few seconds at a low rate (100 commands/s), over both transports,
// both kinds of entity, a routed command and fsync on every write, and checks that it
// produced figures (none zero), profiles, the report and the chart, and left no process
// behind.
func TestHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("builds jetstate and runs nats-server, sidecars and functions as processes")
	}
	out := t.TempDir()
	cfg := Config{
		Out:            out,
		Scenarios:      []Scenario{mustScenario(t, "es-grpc-always"), mustScenario(t, "value-http-p1"), mustScenario(t, "routed-grpc")},
		Rates:          []int{100},
		Duration:       3 * time.Second,
		Warmup:         time.Second,
		SearchDuration: 2 * time.Second,
		SearchMax:      200,
		SearchSteps:    1,
		Threads:        4,
		ProfileRate:    100,
		Log:            t.Output(),
	}
	var report strings.Builder
	if err := run(t.Context(), cfg, &report); err != nil {
		t.Fatal(err)
	}

	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Scenarios) != len(cfg.Scenarios) {
		t.Fatalf("%d scenarios in results.json, want %d", len(res.Scenarios), len(cfg.Scenarios))
	}
	for i, sr := range res.Scenarios {
		if want := cfg.Scenarios[i].Name(); sr.Name != want || sr.Error != "" {
			t.Errorf("scenario %d: %s (error %q), want %s without error", i, sr.Name, sr.Error, want)
		}
		if sr.Idle[procSidecar].RSS == 0 {
			t.Errorf("%s: no idle RSS", sr.Name)
		}
		phases := map[string]int{}
		for _, st := range sr.Steps {
			phases[st.Phase]++
			l := st.Load
			if l.Calls == 0 || l.Achieved <= 0 || l.P50 <= 0 || l.P90 <= 0 || l.P99 <= 0 || l.Max <= 0 {
				t.Errorf("%s %s %.0f/s: load figures with a zero: %+v", sr.Name, st.Phase, l.Target, l)
			}
			if l.Errors != 0 {
				t.Errorf("%s %s %.0f/s: %d errors, such as %q", sr.Name, st.Phase, l.Target, l.Errors, l.Samples)
			}
			// CPU time comes in clock ticks (10 ms): over a short step at a low rate only
			// the processes doing most per call are sure to have used one; the fixed step
			// is long enough for every process doing work.
			busy := []string{procSidecar, procFunction, procNATS, procLoad}
			if sr.Scenario.Routed {
				// The owner's function does the work; the entry sidecar's is idle.
				busy = []string{procSidecar, procOwner, procOwnerFn, procNATS, procLoad}
				if !st.RoutedIntact {
					t.Errorf("%s %s: the carts' shards moved during the step", sr.Name, st.Phase)
				}
			}
			for i, p := range busy {
				u := st.Usage[p]
				if u.RSS == 0 || u.HWM == 0 || u.Anon == 0 || (u.VCPU <= 0 && (st.Phase == "fixed" || i == 0)) ||
					u.ReadCalls == 0 || u.WriteCalls == 0 || (u.Switches == 0 && p != procLoad) {
					t.Errorf("%s %s %.0f/s: %s usage with a zero: %+v", sr.Name, st.Phase, l.Target, p, u)
				}
			}
			if st.Phase == "fixed" {
				sidecars := []string{procSidecar}
				if sr.Scenario.Routed {
					sidecars = append(sidecars, procOwner)
				}
				for _, p := range sidecars {
					if top, cum := st.Profiles[p], st.ProfilesCum[p]; !strings.Contains(top, "flat%") || !strings.Contains(cum, "cum%") {
						t.Errorf("%s: no profile tops for %s: %q, %q", sr.Name, p, top, cum)
					}
				}
			}
		}
		if phases["fixed"] != 1 || phases["search"] != 1 {
			t.Errorf("%s: steps by phase %v, want 1 fixed and 1 search", sr.Name, phases)
		}
	}
	profiles, _ := filepath.Glob(filepath.Join(out, "profiles", "*.pprof"))
	if len(profiles) != 4 {
		t.Errorf("profiles %q, want 4 (one sidecar each, two in the routed scenario)", profiles)
	}

	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(md) != report.String() {
		t.Error("the printed report differs from results.md")
	}
	for _, want := range []string{"| es-grpc-always | fixed | 100 |", "| value-http-p1 | fixed | 100 |", "| routed-grpc | fixed | 100 |",
		"| value-http-p1 | sidecar |", "| routed-grpc | owner sidecar |", "| es-grpc-always | nats-server |",
		"## Beside Dapr's published figures", "0.48 vCPU per sidecar", "### routed-grpc at 100/s, owner sidecar"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	svg, err := os.ReadFile(filepath.Join(out, "latency.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(svg), "<svg") || len(svg) < 5000 {
		t.Errorf("latency.svg is not a chart (%d bytes): %.200s", len(svg), svg)
	}
	for _, sc := range cfg.Scenarios {
		if !strings.Contains(string(svg), ">"+sc.Name()+"</text>") {
			t.Errorf("latency.svg has no legend for %s", sc.Name())
		}
	}

	noChildren(t)
}

// noChildren fails the test if a process the harness started is still there: every one has
// been waited for.
func noChildren(t *testing.T) {
	t.Helper()
	procs, err := procfs.AllProcs()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if st, err := p.Stat(); err == nil && st.PPID == os.Getpid() {
			t.Errorf("process %d (%s) is still a child of the test", p.PID, st.Comm)
		}
	}
}

// cancelOn is a log that cancels a run when a line contains a string.
type cancelOn struct {
	t      *testing.T
	what   string
	cancel context.CancelFunc
}

func (c cancelOn) Write(b []byte) (int, error) {
	c.t.Logf("%s", bytes.TrimRight(b, "\n"))
	if bytes.Contains(b, []byte(c.what)) {
		c.cancel()
	}
	return len(b), nil
}

// TestCancelStopsEverything interrupts a run in the middle of a step with two sidecars: the
// run ends with the context's error and every process is gone.
func TestCancelStopsEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("builds jetstate and runs nats-server, sidecars and functions as processes")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := Config{
		Out:       t.TempDir(),
		Scenarios: []Scenario{mustScenario(t, "routed-http")},
		Rates:     []int{40},
		Duration:  10 * time.Minute,
		Warmup:    10 * time.Minute,
		Threads:   2,
		Log:       cancelOn{t: t, what: "warm-up at", cancel: cancel},
	}
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, io.Discard) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute): // a failsafe: the warm-up alone would last 10 minutes
		t.Fatal("run did not stop within 2 minutes of its cancellation")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want the context's cancellation", err)
	}
	noChildren(t)
}

func mustScenario(t *testing.T, name string) Scenario {
	t.Helper()
	s, err := ParseScenario(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseScenario(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Scenario
	}{
		{"es-grpc", Scenario{Entity: "es", Transport: "grpc", Durability: "flush"}},
		{"value-http", Scenario{Entity: "value", Transport: "http", Durability: "flush"}},
		{"routed-http-always", Scenario{Entity: "es", Transport: "http", Routed: true, Durability: "always"}},
		{"es-grpc-p1", Scenario{Entity: "es", Transport: "grpc", Durability: "flush", Procs: 1}},
		{"value-http-always-p2", Scenario{Entity: "value", Transport: "http", Durability: "always", Procs: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseScenario(tc.name)
			if err != nil || got != tc.want || got.Name() != tc.name {
				t.Fatalf("ParseScenario(%q) = %+v (%q), %v; want %+v", tc.name, got, got.Name(), err, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "es", "es-tcp", "crdt-grpc", "es-grpc-never", "es-grpc-always-x", "es-grpc-p0", "es-grpc-p", "es-grpc-px", "es-grpc-p01", "es-grpc-p1-always", "es-p1"} {
		if _, err := ParseScenario(bad); err == nil {
			t.Errorf("ParseScenario(%q) accepted", bad)
		}
	}
}

func TestRound2(t *testing.T) {
	for n, want := range map[int]int{25: 25, 99: 99, 149: 150, 1449: 1400, 3750: 3800, 12345: 12000} {
		if got := round2(n); got != want {
			t.Errorf("round2(%d) = %d, want %d", n, got, want)
		}
	}
}
