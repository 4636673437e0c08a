// Command jetstate runs jetstate's parts: `jetstate proxy` is the sidecar,
// `jetstate project` a projector, `jetstate run` an embedded NATS server
// with JetStream and a journal demo. Every pod runs this binary, so it links
// nothing of Kubernetes (TestNoKubernetesDependencies): `jetstate operator`
// runs the operator's own binary, jetstate-operator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/jetstate/jetstate/streams"
)

const usage = `jetstate: a stateful serverless backbone on NATS JetStream

Usage:
  jetstate proxy [flags]   the sidecar in front of a CloudState user function
  jetstate shards [flags]  a service's live sidecars and the shards each owns
  jetstate project [flags] run a projection: journal events to CloudEvents for a sink
  jetstate projection <list|status|pause|resume|rebuild|delete> [name] [flags]
                           operate a service's projections
  jetstate console [flags] a web UI: services, entities' event histories, shards, projections
  jetstate operator [flags] the Kubernetes operator (StatefulService, StatefulStore, Projection):
                           runs jetstate-operator, found next to jetstate or on PATH
  jetstate run [flags]     embedded NATS + JetStream and a journal demo
  jetstate version         print versions

Run 'jetstate <command> -h' for its flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()
	if err := dispatch(ctx, os.Args[1:], os.Stdout); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "jetstate:", err)
		}
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(out, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "run":
		cfg, err := parseRun(args[1:], os.Getenv, out)
		if err != nil {
			return err
		}
		return run(ctx, cfg, out)
	case "proxy":
		cfg, err := parseProxy(args[1:], os.Getenv, out)
		if err != nil {
			return err
		}
		return runProxy(ctx, cfg, out)
	case "shards":
		cfg, err := parseShards(args[1:], os.Getenv, out)
		if err != nil {
			return err
		}
		return runShards(ctx, cfg, out)
	case "project":
		cfg, err := parseProject(args[1:], os.Getenv, out)
		if err != nil {
			return err
		}
		return runProject(ctx, cfg, out)
	case "projection", "projections":
		cfg, err := parseProjection(args[1:], os.Getenv, out)
		if err != nil {
			return err
		}
		return runProjection(ctx, cfg, out)
	case "console":
		cfg, err := parseConsole(args[1:], os.Getenv, out)
		if err != nil {
			return err
		}
		return runConsole(ctx, cfg, out)
	case "operator":
		return runOperator(args[1:])
	case "version":
		fmt.Fprintf(out, "jetstate (streams format 1, needs JetStream API level >= %d)\n", streams.MinAPILevel)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(out, usage)
		return nil
	}
	fmt.Fprint(out, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// runConfig is what `jetstate run` needs.
type runConfig struct {
	Port     int
	DataDir  string
	Sync     streams.Durability
	Demo     bool
	LogLevel slog.Level
	// getenv reads the OTEL_* variables that set tracing up; nil: off.
	getenv func(string) string
}

func parseRun(args []string, getenv func(string) string, out io.Writer) (runConfig, error) {
	env := envLookup(getenv)
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(out)
	cfg := runConfig{}
	port, portErr := envInt(getenv, "JETSTATE_NATS_PORT", 4222)
	fs.IntVar(&cfg.Port, "port", port, "NATS client port of the embedded server (-1: any free port) [JETSTATE_NATS_PORT]")
	fs.StringVar(&cfg.DataDir, "data", env("JETSTATE_DATA", dataDir("run")), "directory for JetStream's data [JETSTATE_DATA]")
	sync := fs.String("sync", env("JETSTATE_SYNC", string(streams.DurabilityFlush)), "durability: flush (fsync every 2 min) or always (fsync before every ack) [JETSTATE_SYNC]")
	fs.BoolVar(&cfg.Demo, "demo", true, "run the journal demo after start-up")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if portErr != nil {
		return cfg, portErr
	}
	cfg.Sync = streams.Durability(*sync)
	if cfg.Sync != streams.DurabilityFlush && cfg.Sync != streams.DurabilityAlways {
		return cfg, fmt.Errorf("-sync must be %q or %q, not %q", streams.DurabilityFlush, streams.DurabilityAlways, *sync)
	}
	if *verbose {
		cfg.LogLevel = slog.LevelDebug
	}
	cfg.getenv = getenv
	return cfg, nil
}

// envInt reads a whole decimal number from the environment: def when the
// variable is unset or empty, an error naming the variable and its value
// when it is anything else than a number (a typo must not silently fall
// back to the default).
func envInt(getenv func(string) string, key string, def int) (int, error) {
	v := getenv(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return def, fmt.Errorf("%s=%q: not a whole number", key, v)
	}
	return n, nil
}

// envPort reads a TCP port number (0 to 65535) from the environment, as
// envInt does, and returns it in decimal.
func envPort(getenv func(string) string, key string, def int) (string, error) {
	n, err := envInt(getenv, key, def)
	if err == nil && (n < 0 || n > 65535) {
		err = fmt.Errorf("%s=%q: not a port number (0 to 65535)", key, getenv(key))
	}
	return strconv.Itoa(n), err
}
