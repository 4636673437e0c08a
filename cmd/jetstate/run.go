package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/embedded"
)

// run starts the embedded server, provisions the demo service, runs the
// demo and serves until ctx is done.
func run(ctx context.Context, cfg runConfig, out io.Writer) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	srv, err := embedded.Start(embedded.Config{
		Port:       cfg.Port,
		StoreDir:   cfg.DataDir,
		SyncAlways: cfg.Sync == streams.DurabilityAlways,
	})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	fmt.Fprintf(out, "NATS %s with JetStream at %s (data in %s, sync: %s; clients sign in with the nkey seed %s)\n",
		srv.Version(), srv.ClientURL(), cfg.DataDir, cfg.Sync, srv.SeedFile())

	nkey, err := nats.NkeyOptionFromSeed(srv.SeedFile())
	if err != nil {
		return err
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.Name("jetstate run"), nkey)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	sc := streams.Config{Service: "demo", Logger: log}
	if err := streams.Provision(ctx, js, sc, streams.StoreConfig{Durability: cfg.Sync}); err != nil {
		return err
	}
	fmt.Fprintf(out, "provisioned service %q: stream %s, buckets %s and %s\n",
		sc.Service, sc.JournalStream(), sc.SnapshotBucket(), sc.ValueBucket())
	if cfg.Demo {
		tp, stopTracing, err := startTracing(ctx, cfg.getenv, "jetstate-run", log)
		if err != nil {
			return err
		}
		defer stopTracing()
		// The demo is one trace: its appends are spans of it, and each
		// journal message stores its context.
		dctx, span := tracing.New(tp).Remote(ctx, "jetstate.demo", trace.SpanKindInternal, nil)
		err = demo(dctx, js, sc, out)
		span.Fail(err)
		span.End()
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	fmt.Fprintf(out, "serving on %s; press Ctrl-C to stop\n", srv.ClientURL())
	<-ctx.Done()
	fmt.Fprintln(out, "stopping")
	return nil
}
