package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/jetstate/jetstate/internal/backoff"
	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
)

// envLookup returns a function reading getenv with a default.
func envLookup(getenv func(string) string) func(key, def string) string {
	return func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
}

// projectConfig is what `jetstate project` needs.
type projectConfig struct {
	NATS        natsFlags
	Projection  projections.Config // everything but the sink and the resolver
	Sink        string             // nats:<subject>, jetstream:<subject> or an http(s) URL
	Structured  bool
	JSON        bool     // data as JSON where the descriptors know the type
	Descriptors []string // FileDescriptorSet files
	Overrides   map[string]string
	Rebuild     bool
	AdminListen string
	LogLevel    slog.Level
	// getenv reads the OTEL_* variables that set tracing up; nil: off.
	getenv func(string) string
}

const projectUsage = `Usage: jetstate project [flags]

Runs one projection of a service's journals until interrupted: every event
becomes a CloudEvent sent to the sink, at least once and in order per entity.
The sink is nats:<subject> (core NATS), jetstream:<subject> (a publish the
stream capturing the subject acknowledges, the event id as Nats-Msg-Id) or an
http(s) URL such as a Knative sink (K_SINK). A NATS subject may hold {type},
{key} and {event}, the entity type, the entity key and the event type, each
escaped into subject tokens: nats:cart.{type}.{key} gives every entity its own
subject. With -rebuild the projection is
replayed from the beginning into this sink beside the generation that serves,
and takes over once caught up; the projector serving the old generation then
stops (do not restart it with the old sink). /ready, /alive and /metrics are
served on -admin.

`

func parseProject(args []string, getenv func(string) string, out io.Writer) (projectConfig, error) {
	env := envLookup(getenv)
	var c projectConfig
	fs := flag.NewFlagSet("project", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, projectUsage)
		fs.PrintDefaults()
	}
	c.NATS.register(fs, env)
	p := &c.Projection
	fs.StringVar(&p.Storage.Service, "service", env("JETSTATE_SERVICE", ""), "service whose journals are projected (required) [JETSTATE_SERVICE]")
	fs.StringVar(&p.Storage.Prefix, "prefix", env("JETSTATE_PREFIX", ""), "subject and stream prefix (default jetstate) [JETSTATE_PREFIX]")
	fs.StringVar(&p.Name, "name", env("JETSTATE_PROJECTION", ""), "projection name: letters, digits, '-', '_' (required) [JETSTATE_PROJECTION]")
	types := fs.String("types", env("JETSTATE_PROJECTION_TYPES", ""), "comma-separated entity types (persistence ids) to project; empty: all [JETSTATE_PROJECTION_TYPES]")
	fs.StringVar(&c.Sink, "sink", env("K_SINK", ""), "where events go: nats:<subject>, jetstream:<subject> or an http(s) URL (required) [K_SINK]")
	mode := fs.String("mode", env("JETSTATE_SINK_MODE", "binary"), "CloudEvents content mode: binary (ce-* headers) or structured (JSON envelope) [JETSTATE_SINK_MODE]")
	data := fs.String("data", env("JETSTATE_DATA_FORMAT", ""), "event data: json (needs -descriptors; types they lack stay protobuf) or protobuf; default json with -descriptors, else protobuf [JETSTATE_DATA_FORMAT]")
	descriptors := fs.String("descriptors", env("JETSTATE_DESCRIPTORS", ""), "comma-separated FileDescriptorSet files with the event types (buf build -o x.binpb; protoc --include_imports --descriptor_set_out) [JETSTATE_DESCRIPTORS]")
	start := fs.String("start", env("JETSTATE_PROJECTION_START", "beginning"), "where a new projection starts: beginning, now, or an RFC 3339 time; a projection that ran resumes where it stopped [JETSTATE_PROJECTION_START]")
	fs.StringVar(&p.Source, "source", "", "first part of each event's source, followed by /<entity type> (default /jetstate/<service>)")
	fs.IntVar(&p.Workers, "workers", 0, fmt.Sprintf("entities sent at the same time (default %d)", projections.DefaultWorkers))
	fs.IntVar(&p.MaxAckPending, "max-ack-pending", 0, fmt.Sprintf("events received but not yet accepted (default %d)", projections.DefaultMaxAckPending))
	fs.DurationVar(&p.AckWait, "ack-wait", 0, fmt.Sprintf("server redelivers an event not acknowledged within this (default %v)", projections.DefaultAckWait))
	fs.BoolVar(&p.AckEach, "ack-each", env("JETSTATE_ACK_EACH", "") == "true", "acknowledge every event on its own (AckPolicy explicit) instead of one acknowledgement per run of accepted events: a failing event then holds back only its own entity, at the price of a server message per event; applies to generations made from now on (-rebuild makes one) [JETSTATE_ACK_EACH]")
	fs.IntVar(&p.MaxTries, "max-tries", 0, fmt.Sprintf("tries of one event before it is dead-lettered (default %d)", projections.DefaultMaxTries))
	fs.DurationVar(&p.RetryMin, "retry-min", 0, fmt.Sprintf("first back-off between tries (default %v)", projections.DefaultRetryMin))
	fs.DurationVar(&p.RetryMax, "retry-max", 0, fmt.Sprintf("longest back-off between tries (default %v)", projections.DefaultRetryMax))
	fs.DurationVar(&p.SendTimeout, "send-timeout", 0, fmt.Sprintf("bound of one try (default %v)", projections.DefaultSendTimeout))
	fs.StringVar(&p.DeadLetterSubject, "dead-letter", env("JETSTATE_DEAD_LETTER", ""), "subject of events the sink refused (default <prefix>_deadletter.<service>.<name>) [JETSTATE_DEAD_LETTER]")
	fs.BoolVar(&c.Rebuild, "rebuild", false, "replay from the beginning into this sink as a new generation, then take over")
	metricsPort, metricsErr := envPort(getenv, "METRICS_PORT", 9091)
	fs.StringVar(&c.AdminListen, "admin", ":"+metricsPort, "address of /ready, /alive and /metrics [METRICS_PORT]")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	errs := []error{metricsErr}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if *types != "" {
		p.Types = splitList(*types)
	}
	switch *mode {
	case "binary":
	case "structured":
		c.Structured = true
	default:
		errs = append(errs, fmt.Errorf("-mode must be binary or structured, not %q", *mode))
	}
	c.Descriptors = splitList(*descriptors)
	switch *data {
	case "":
		c.JSON = len(c.Descriptors) > 0
	case "json":
		c.JSON = true
		if len(c.Descriptors) == 0 {
			errs = append(errs, errors.New("-data json needs -descriptors (the event types' FileDescriptorSet)"))
		}
	case "protobuf":
	default:
		errs = append(errs, fmt.Errorf("-data must be json or protobuf, not %q", *data))
	}
	switch *start {
	case "beginning":
	case "now":
		p.Start = projections.StartNew
	default:
		t, err := time.Parse(time.RFC3339, *start)
		if err != nil {
			errs = append(errs, fmt.Errorf("-start must be beginning, now or an RFC 3339 time, not %q", *start))
		}
		p.Start, p.StartTime = projections.StartTime, t
	}
	if _, _, err := parseSink(c.Sink); err != nil {
		errs = append(errs, err)
	}
	if v := getenv("K_CE_OVERRIDES"); v != "" {
		var o struct {
			Extensions map[string]string `json:"extensions"`
		}
		if err := json.Unmarshal([]byte(v), &o); err != nil {
			errs = append(errs, fmt.Errorf("K_CE_OVERRIDES: %w", err))
		}
		// Checked here: at send time every event would be rejected.
		for name, val := range o.Extensions {
			if err := (&event.EventContextV1{}).SetExtension(name, val); err != nil {
				errs = append(errs, fmt.Errorf("K_CE_OVERRIDES: extension %s: %w", name, err))
			}
		}
		c.Overrides = o.Extensions
	}
	if *verbose {
		c.LogLevel = slog.LevelDebug
	}
	errs = append(errs, p.Validate())
	c.getenv = getenv
	return c, errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// parseSink splits a -sink value into its kind (nats, jetstream, http) and
// its subject or URL.
func parseSink(s string) (kind, target string, err error) {
	switch {
	case s == "":
		return "", "", errors.New("-sink (or K_SINK) is required: nats:<subject>, jetstream:<subject> or an http(s) URL")
	case strings.HasPrefix(s, "nats:"), strings.HasPrefix(s, "jetstream:"):
		kind, subject, _ := strings.Cut(s, ":")
		if err := projections.CheckSubject(subject); err != nil {
			return "", "", fmt.Errorf("-sink %q: %w", s, err)
		}
		return kind, subject, nil
	case strings.HasPrefix(s, "http://"), strings.HasPrefix(s, "https://"):
		return "http", s, nil
	}
	return "", "", fmt.Errorf("-sink %q: want nats:<subject>, jetstream:<subject> or an http(s) URL", s)
}

// newSink builds the sink; NATS sinks publish on nc, so acknowledgements
// follow the events on one connection and need no flush.
func newSink(c projectConfig, nc *nats.Conn) (projections.Sink, error) {
	kind, target, err := parseSink(c.Sink)
	if err != nil {
		return nil, err
	}
	var sink projections.Sink
	switch kind {
	case "http":
		sink, err = projections.NewHTTPSink(projections.HTTPSinkConfig{Target: target, Structured: c.Structured})
	default:
		sink, err = projections.NewNATSSink(nc, projections.NATSSinkConfig{Subject: target, Structured: c.Structured, JetStream: kind == "jetstream"})
	}
	if err != nil {
		return nil, err
	}
	if len(c.Overrides) > 0 {
		sink = overrideSink{next: sink, ext: c.Overrides}
	}
	return sink, nil
}

// overrideSink sets extension attributes on every event (Knative's
// K_CE_OVERRIDES).
type overrideSink struct {
	next projections.Sink
	ext  map[string]string
}

func (s overrideSink) Send(ctx context.Context, ev *event.Event) error {
	e := ev.Clone()
	for k, v := range s.ext {
		e.SetExtension(k, v)
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("%w: K_CE_OVERRIDES: %v", projections.ErrRejected, err)
	}
	return s.next.Send(ctx, &e)
}

// readDescriptorSets reads binary FileDescriptorSet files.
func readDescriptorSets(paths []string) ([]*descriptorpb.FileDescriptorSet, error) {
	var sets []*descriptorpb.FileDescriptorSet
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("descriptors: %w", err)
		}
		set := new(descriptorpb.FileDescriptorSet)
		if err := proto.Unmarshal(b, set); err != nil {
			return nil, fmt.Errorf("descriptors %s: not a binary FileDescriptorSet: %w", path, err)
		}
		sets = append(sets, set)
	}
	return sets, nil
}

// Back-off of the projector between failed runs.
const (
	projectRetryMin = 500 * time.Millisecond
	projectRetryMax = 15 * time.Second
)

// runProject runs the projection until ctx is done. Failures (NATS down,
// the service not provisioned yet) are logged and retried with back-off;
// it returns when a newer generation made elsewhere takes over.
func runProject(ctx context.Context, c projectConfig, out io.Writer) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: c.LogLevel}))
	cfg := c.Projection
	if c.JSON {
		sets, err := readDescriptorSets(c.Descriptors)
		if err != nil {
			return err
		}
		r, err := projections.NewResolver(sets...)
		if err != nil {
			return err
		}
		cfg.Resolver = r
	}
	name := "jetstate project " + cfg.Storage.Service + "/" + cfg.Name
	nc, err := c.NATS.connect(ctx, name, true, streams.ClientOptions(name, log)...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	sink, err := newSink(c, nc)
	if err != nil {
		return err
	}
	if closer, ok := sink.(io.Closer); ok {
		defer closer.Close()
	}
	tp, stopTracing, err := startTracing(ctx, c.getenv, "jetstate-projector", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	cfg.TracerProvider = tp
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var ready atomic.Bool
	var promoted atomic.Bool // a -rebuild took over: restarts use Run
	cfg.Sink, cfg.Logger, cfg.Registry = sink, log, reg
	cfg.OnActive = func(gen int) {
		ready.Store(true)
		promoted.Store(true)
		log.Info("projection serving", "generation", gen)
	}
	p, err := projections.New(js, cfg)
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /alive", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "projection not serving", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	g, gctx := errgroup.WithContext(ctx)
	stopAdmin := serveAdmin(gctx, g, c.AdminListen, mux)
	g.Go(func() error {
		defer func() { _ = stopAdmin() }()
		fmt.Fprintf(out, "projection %q of service %q to %s, admin %s\n", cfg.Name, cfg.Storage.Service, c.Sink, c.AdminListen)
		return projectLoop(gctx, p, c.Rebuild, &ready, &promoted, log)
	})
	return g.Wait()
}

// projectLoop runs the projection (or its rebuild) again after failures.
func projectLoop(ctx context.Context, p *projections.Projection, rebuild bool, ready, promoted *atomic.Bool, log *slog.Logger) error {
	bo := backoff.Backoff{Min: projectRetryMin, Max: projectRetryMax}
	for {
		started := time.Now()
		var err error
		if rebuild && !promoted.Load() {
			err = p.Rebuild(ctx)
		} else {
			err = p.Run(ctx)
		}
		ready.Store(false)
		if time.Since(started) > time.Minute {
			bo.Reset() // it ran for a while: a new failure starts the back-off again
		}
		wait := bo.Next()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, projections.ErrSuperseded):
			log.Info("a newer generation serves elsewhere; this projector stops")
			return nil
		case errors.Is(err, jetstream.ErrStreamNotFound):
			log.Info("waiting for the service to be provisioned", "error", err)
		default:
			log.Error("projection failed; retrying", "error", err, "in", wait)
		}
		if backoff.Sleep(ctx, wait) != nil {
			return nil
		}
	}
}
