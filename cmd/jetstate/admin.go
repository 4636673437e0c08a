package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// serveAdmin runs the admin HTTP server (probes and metrics) on addr as
// part of g. It shuts down, within 5 s, when ctx ends or when the returned
// function is called (a command whose work ended without an error, so ctx
// never ends); either way g's goroutines end.
func serveAdmin(ctx context.Context, g *errgroup.Group, addr string, h http.Handler) (shutdown func() error) {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	stopped := make(chan struct{})
	shutdown = sync.OnceValue(func() error {
		defer close(stopped)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	g.Go(func() error {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		select {
		case <-ctx.Done():
			return shutdown()
		case <-stopped:
			return nil
		}
	})
	return shutdown
}

// withPprof serves Go's profiles (net/http/pprof) under /debug/pprof/ and
// everything else with h.
func withPprof(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
