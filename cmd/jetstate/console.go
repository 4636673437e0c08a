package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/jetstate/jetstate/console"
	"github.com/jetstate/jetstate/streams"
)

// DefaultConsoleListen is where `jetstate console` serves by default: this
// machine only, since the console shows every entity's data.
const DefaultConsoleListen = "127.0.0.1:8090"

// consoleConfig is what `jetstate console` needs.
type consoleConfig struct {
	NATS        natsFlags
	Listen      string
	Console     console.Config
	Descriptors []string
	LogLevel    slog.Level
}

func parseConsole(args []string, getenv func(string) string, out io.Writer) (consoleConfig, error) {
	env := envLookup(getenv)
	var c consoleConfig
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, `Usage: jetstate console [flags]

Serves a web UI over the services under a prefix: their entity types, methods,
sidecars, shards and load; an entity's events decoded as JSON, followed live,
its snapshot and value; projections with their lag and dead letters; eventing
subscriptions. Read-only unless -allow-writes.

`)
		fs.PrintDefaults()
	}
	c.NATS.register(fs, env)
	fs.StringVar(&c.Listen, "listen", env("JETSTATE_CONSOLE_LISTEN", DefaultConsoleListen), "address to serve the console on [JETSTATE_CONSOLE_LISTEN]")
	fs.StringVar(&c.Console.Service, "service", env("JETSTATE_SERVICE", ""), "service the start page opens (default: the only one, else a list) [JETSTATE_SERVICE]")
	fs.StringVar(&c.Console.Prefix, "prefix", env("JETSTATE_PREFIX", ""), "subject and stream prefix (default jetstate) [JETSTATE_PREFIX]")
	fs.BoolVar(&c.Console.AllowWrites, "allow-writes", false, "let the console pause, resume and rebuild projections (default read-only)")
	descriptors := fs.String("descriptors", env("JETSTATE_DESCRIPTORS", ""), "comma-separated FileDescriptorSet files that decode events of services whose sidecars stored no discovery answer [JETSTATE_DESCRIPTORS]")
	fs.DurationVar(&c.Console.FollowInterval, "follow-interval", 0, "how often an entity's page asks for new events (default 2s)")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *verbose {
		c.LogLevel = slog.LevelDebug
	}
	c.Descriptors = splitList(*descriptors)
	sets, err := readDescriptorSets(c.Descriptors)
	if err != nil {
		return c, err
	}
	c.Console.Descriptors = sets
	return c, c.Console.Validate()
}

// runConsole serves the console until ctx ends. It waits for a NATS
// server on this machine to come up (`make run` starts it beside one).
func runConsole(ctx context.Context, c consoleConfig, out io.Writer) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: c.LogLevel}))
	lis, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	defer lis.Close()
	fmt.Fprintf(out, "console: http://%s/ (NATS %s)\n", lis.Addr(), c.NATS.URL)
	nc, err := c.NATS.connect(ctx, "jetstate console", true, streams.ClientOptions("jetstate console", log)...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	c.Console.Logger = log
	cons, err := console.New(c.Console, js)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: cons.Handler(), ReadHeaderTimeout: 10 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cons.Run(gctx) })
	g.Go(func() error {
		if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("console: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}
