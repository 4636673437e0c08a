// Command jetstate-operator is jetstate's Kubernetes operator: it
// reconciles StatefulStores, StatefulServices and Projections
// (jetstate.io/v1alpha1) and autoscales StatefulServices.
//
// It is a binary of its own, apart from cmd/jetstate, because it links
// Kubernetes' client libraries and controller-runtime: in the jetstate
// binary they would be loaded and initialised by every sidecar, which every
// pod runs, though no sidecar uses them. `jetstate operator [flags]` runs
// this binary, found next to jetstate or on PATH, with the same flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()
	cfg, err := parseOperator(os.Args[1:], os.Getenv, os.Stdout)
	if err == nil {
		err = runOperator(ctx, cfg, os.Stdout)
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "jetstate-operator:", err)
		}
		os.Exit(1)
	}
}

// envLookup returns a function reading getenv with a default.
func envLookup(getenv func(string) string) func(key, def string) string {
	return func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
}

// splitList splits a comma-separated list, dropping blanks around and
// empty items.
func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
