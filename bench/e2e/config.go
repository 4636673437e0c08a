package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
)

// repoModule is the module whose binaries the benchmark builds and runs.
const repoModule = "github.com/jetstate/jetstate"

// Scenario is one kind of command the benchmark drives: which entity, over which transport,
// whether through a second sidecar, and with which durability.
type Scenario struct {
	// Entity is "es" (the event-sourced cart: AddItem appends to the cart's journal) or "value"
	// (the value-entity cart: AddItem stores the whole cart).
	Entity string `json:"entity"`
	// Transport is "grpc" or "http" (HTTP/JSON, transcoded by the sidecar).
	Transport string `json:"transport"`
	// Routed sends each command to the sidecar that does not own its shard.
	Routed bool `json:"routed"`
	// Durability is "flush" (the default: the server fsyncs every 2 minutes) or "always"
	// (nats-server's sync_interval: always, fsync before every acknowledgement).
	Durability string `json:"durability"`
	// Procs, if not 0, is the sidecars' GOMAXPROCS (the GOMAXPROCS environment variable):
	// how many threads run Go code at once. 0 leaves Go's default, the CPUs the process may
	// use (or, in a container with a CPU limit, that limit rounded up, at least 2).
	Procs int `json:"procs,omitempty"`
}

// Name is how flags and tables name the scenario: es-grpc, value-http, routed-grpc,
// es-http-always, ...
func (s Scenario) Name() string {
	kind := s.Entity
	if s.Routed {
		kind = "routed"
	}
	name := kind + "-" + s.Transport
	if s.Durability == "always" {
		name += "-always"
	}
	if s.Procs > 0 {
		name += "-p" + strconv.Itoa(s.Procs)
	}
	return name
}

// ParseScenario reads a scenario's name: <es|value|routed>-<grpc|http>[-always][-p<N>]. A
// routed scenario drives the event-sourced cart; -p<N> runs the sidecars with GOMAXPROCS=N.
func ParseScenario(name string) (Scenario, error) {
	const want = "want <es|value|routed>-<grpc|http>[-always][-p<N>]"
	parts := strings.Split(name, "-")
	s := Scenario{Durability: "flush"}
	if n := len(parts); n > 2 && strings.HasPrefix(parts[n-1], "p") {
		procs, err := strconv.Atoi(parts[n-1][1:])
		if err != nil || procs < 1 || parts[n-1][1:] != strconv.Itoa(procs) {
			return s, fmt.Errorf("scenario %q: %q is not p and a number of threads (p1, p2, ...)", name, parts[n-1])
		}
		s.Procs = procs
		parts = parts[:n-1]
	}
	if len(parts) == 3 && parts[2] == "always" {
		s.Durability = "always"
		parts = parts[:2]
	}
	if len(parts) != 2 {
		return s, fmt.Errorf("scenario %q: %s", name, want)
	}
	switch parts[0] {
	case "es", "value":
		s.Entity = parts[0]
	case "routed":
		s.Entity, s.Routed = "es", true
	default:
		return s, fmt.Errorf("scenario %q: entity %q is not es, value or routed", name, parts[0])
	}
	switch parts[1] {
	case "grpc", "http":
		s.Transport = parts[1]
	default:
		return s, fmt.Errorf("scenario %q: transport %q is not grpc or http", name, parts[1])
	}
	return s, nil
}

// DefaultScenarios: both entities and a routed command over both transports, the
// event-sourced command again with an fsync on every write, and once more with a sidecar
// running Go code on one thread at a time.
var DefaultScenarios = []string{"es-grpc", "es-http", "value-grpc", "value-http", "routed-grpc", "routed-http", "es-grpc-always", "es-http-always", "es-grpc-p1"}

// Config is one run of the benchmark. A zero field means the documented default.
type Config struct {
	// Repo is the repository's root (the directory of github.com/jetstate/jetstate's go.mod).
	// Default: found upwards from the working directory.
	Repo string
	// Bin holds prebuilt jetstate, shoppingcart and nats-server binaries. Default: they are
	// built into a temporary directory.
	Bin string
	// Out receives results.md, results.json, latency.svg and profiles/. Default <Repo>/docs/bench.
	Out string
	// Scenarios to run, in order. Default DefaultScenarios.
	Scenarios []Scenario
	// Rates are the fixed rates, commands per second. Default 500, 1000, 2000.
	Rates []int
	// Duration of each fixed-rate step. Default 1 min.
	Duration time.Duration
	// Warmup is a load at the lowest rate before a scenario's first step, not recorded.
	// Default 10 s.
	Warmup time.Duration
	// NoSearch skips the search for the highest rate.
	NoSearch bool
	// SearchDuration is the duration of each step of the search. Default Duration.
	SearchDuration time.Duration
	// SearchMax is the highest rate the search tries. Default 64,000.
	SearchMax int
	// SearchSteps bounds the number of steps of one search. Default 6.
	SearchSteps int
	// P99Limit is the latency a rate must stay under to count as sustained. Default 10 ms.
	P99Limit time.Duration
	// Threads is the load generator's concurrency: Fortio threads, each with its own cart
	// and, over HTTP, its own connection (gRPC calls share one connection). Default 32.
	Threads int
	// PayloadBytes is the length of the product name in each AddItem. Default 1024.
	PayloadBytes int
	// ProfileRate is the fixed rate at which the sidecars are profiled; 0 profiles none.
	// Default 1000 (set -1 for none).
	ProfileRate int
	// ProfileTop is the number of functions listed per profile. Default 15.
	ProfileTop int
	// CallTimeout bounds one command. Default 10 s.
	CallTimeout time.Duration
	// Keep leaves the processes' logs and stores in their temporary directory.
	Keep bool
	// Self is the executable run as the load generator with the first argument "loadgen".
	// Default: this process's executable.
	Self string
	// Log receives progress lines. Default: discarded.
	Log io.Writer
	// Rerender, if set, is an earlier run's results.json: nothing runs, its results.md and
	// latency.svg are written again beside it.
	Rerender string
}

func (c Config) withDefaults() (Config, error) {
	var err error
	if c.Repo == "" {
		if c.Repo, err = findRepo(); err != nil {
			return c, err
		}
	}
	if c.Out == "" {
		c.Out = filepath.Join(c.Repo, "docs", "bench")
	}
	if c.Scenarios == nil {
		for _, n := range DefaultScenarios {
			s, _ := ParseScenario(n)
			c.Scenarios = append(c.Scenarios, s)
		}
	}
	if c.Rates == nil {
		c.Rates = []int{500, 1000, 2000}
	}
	c.Rates = slices.Sorted(slices.Values(c.Rates))
	if c.Duration == 0 {
		c.Duration = time.Minute
	}
	if c.Warmup == 0 {
		c.Warmup = 10 * time.Second
	}
	if c.SearchDuration == 0 {
		c.SearchDuration = c.Duration
	}
	if c.SearchMax == 0 {
		c.SearchMax = 64000
	}
	if c.SearchSteps == 0 {
		c.SearchSteps = 6
	}
	if c.P99Limit == 0 {
		c.P99Limit = 10 * time.Millisecond
	}
	if c.Threads == 0 {
		c.Threads = 32
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = 1024
	}
	if c.ProfileRate == 0 {
		c.ProfileRate = 1000
	}
	if c.ProfileTop == 0 {
		c.ProfileTop = 15
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.Self == "" {
		if c.Self, err = os.Executable(); err != nil {
			return c, fmt.Errorf("the load generator's executable: %w", err)
		}
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c, c.Validate()
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Scenarios) == 0 {
		errs = append(errs, errors.New("no scenario"))
	}
	if len(c.Rates) == 0 {
		errs = append(errs, errors.New("no rate"))
	}
	for _, r := range c.Rates {
		if r < 1 {
			errs = append(errs, fmt.Errorf("rate %d: must be at least 1 command/s", r))
		}
	}
	if c.Duration < time.Second || c.SearchDuration < time.Second {
		errs = append(errs, errors.New("steps must last at least 1s"))
	}
	if c.Warmup < 0 {
		errs = append(errs, errors.New("warm-up must not be negative"))
	}
	if c.Threads < 1 || c.PayloadBytes < 1 || c.SearchSteps < 1 || c.ProfileTop < 1 {
		errs = append(errs, errors.New("threads, payload, search steps and profile top must be at least 1"))
	}
	if len(c.Rates) > 0 && c.SearchMax < c.Rates[len(c.Rates)-1] {
		errs = append(errs, fmt.Errorf("search max %d is below the highest fixed rate", c.SearchMax))
	}
	return errors.Join(errs...)
}

// parseFlags reads the command line into a Config.
func parseFlags(args []string, out io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("bench-e2e", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, "Usage: go run ./e2e [flags]   (from bench/; `make bench-e2e` from the root)\n\n"+
			"jetstate's multi-process benchmark: nats-server, sidecar(s), cart function(s) and a Fortio\n"+
			"load generator as separate processes; see bench/README.md.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Repo, "repo", "", "repository root (default: found upwards from the working directory)")
	fs.StringVar(&c.Bin, "bin", "", "directory with prebuilt jetstate, shoppingcart and nats-server (default: build them)")
	fs.StringVar(&c.Out, "out", "", "output directory (default <repo>/docs/bench)")
	scenarios := fs.String("scenarios", strings.Join(DefaultScenarios, ","), "scenarios, comma-separated: <es|value|routed>-<grpc|http>[-always][-p<N>] (-p<N>: the sidecars' GOMAXPROCS)")
	rates := fs.String("rates", "500,1000,2000", "fixed rates, commands/s, comma-separated")
	fs.DurationVar(&c.Duration, "duration", time.Minute, "duration of each fixed-rate step")
	fs.DurationVar(&c.Warmup, "warmup", 10*time.Second, "warm-up at the lowest rate before each scenario's steps")
	fs.BoolVar(&c.NoSearch, "no-search", false, "skip the search for the highest rate with p99 under -p99-limit")
	fs.DurationVar(&c.SearchDuration, "search-duration", 0, "duration of each search step (default -duration)")
	fs.IntVar(&c.SearchMax, "search-max", 64000, "highest rate the search tries")
	fs.IntVar(&c.SearchSteps, "search-steps", 6, "most steps of one search")
	fs.DurationVar(&c.P99Limit, "p99-limit", 10*time.Millisecond, "p99 a sustained rate must stay under")
	fs.IntVar(&c.Threads, "threads", 32, "load generator threads, each with its own cart (and HTTP connection)")
	fs.IntVar(&c.PayloadBytes, "payload", 1024, "bytes of product name in each AddItem")
	fs.IntVar(&c.ProfileRate, "profile-rate", 1000, "fixed rate at which the sidecars are profiled (-1: none)")
	fs.IntVar(&c.ProfileTop, "profile-top", 15, "functions listed per profile")
	fs.StringVar(&c.Rerender, "rerender", "", "an earlier run's results.json: run nothing, write its results.md and latency.svg again beside it")
	fs.BoolVar(&c.Keep, "keep", false, "keep the processes' logs and stores (their directory is printed)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var errs []error
	for _, n := range strings.Split(*scenarios, ",") {
		s, err := ParseScenario(strings.TrimSpace(n))
		errs = append(errs, err)
		c.Scenarios = append(c.Scenarios, s)
	}
	for _, r := range strings.Split(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil {
			err = fmt.Errorf("rate %q: not a whole number", r)
		}
		errs = append(errs, err)
		c.Rates = append(c.Rates, n)
	}
	c.Log = os.Stderr
	return c, errors.Join(errs...)
}

// findRepo walks up from the working directory to the directory whose go.mod declares
// repoModule.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modfile.ModulePath(b) == repoModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s in the working directory or above: pass -repo", repoModule)
		}
		dir = parent
	}
}
