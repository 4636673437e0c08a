package main

import (
	"context"
	"log/slog"
	"testing"
)

func TestStartTracing(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name   string
		getenv func(string) string
		on     bool
	}{
		{"no environment", nil, false},
		{"nothing set", func(string) string { return "" }, false},
		{"exporter otlp", func(k string) string {
			if k == "OTEL_TRACES_EXPORTER" {
				return "otlp"
			}
			return ""
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, stop, err := startTracing(context.Background(), tc.getenv, "jetstate-test", log)
			if err != nil {
				t.Fatal(err)
			}
			stop() // flushes nothing, returns at once
			if on := tp != nil; on != tc.on {
				t.Errorf("on = %v, want %v", on, tc.on)
			}
		})
	}
	if _, _, err := startTracing(context.Background(), func(k string) string {
		if k == "OTEL_TRACES_EXPORTER" {
			return "zipkin"
		}
		return ""
	}, "jetstate-test", log); err == nil {
		t.Error("an unsupported exporter was accepted")
	}
}
