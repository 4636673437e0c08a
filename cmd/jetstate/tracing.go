package main

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/jetstate/jetstate/internal/tracing/otlp"
)

// tracingFlushTimeout bounds how long an exiting command waits for its
// last spans to reach the collector.
const tracingFlushTimeout = 5 * time.Second

// startTracing sets tracing up as the OTEL_* variables that getenv reads
// ask (nil getenv: off) and returns the provider to hand to the component
// (nil: off) and stop, which flushes the spans still buffered; main calls
// it on exit.
func startTracing(ctx context.Context, getenv func(string) string, service string, log *slog.Logger) (trace.TracerProvider, func(), error) {
	if getenv == nil {
		return nil, func() {}, nil
	}
	p, err := otlp.FromEnv(ctx, getenv, service)
	if err != nil {
		return nil, nil, err
	}
	tp := p.TracerProvider()
	if tp == nil {
		return nil, func() {}, nil
	}
	log.Info("tracing on: spans exported over OTLP", "service.name", service)
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tracingFlushTimeout)
		defer cancel()
		if err := p.Shutdown(sctx); err != nil {
			log.Warn("tracing", "error", err)
		}
	}, nil
}
