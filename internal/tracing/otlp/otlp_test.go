package otlp_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jetstate/jetstate/internal/tracing/otlp"
)

func TestFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		on   bool
		err  error
	}{
		{"nothing set", nil, false, nil},
		{"only the service name", map[string]string{"OTEL_SERVICE_NAME": "cart"}, false, nil},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true, nil},
		{"traces endpoint, grpc", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, true, nil},
		{"exporter otlp", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true, nil},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, false, nil},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false, nil},
		{"zipkin", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false, otlp.ErrUnsupported},
		{"http/json", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, false, otlp.ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := otlp.FromEnv(context.Background(), func(k string) string { return tc.env[k] }, "jetstate-test")
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if on := p.TracerProvider() != nil; on != tc.on {
				t.Errorf("on = %v, want %v", on, tc.on)
			}
			// Nothing was exported: the shutdown does not wait on a
			// collector.
			if err := p.Shutdown(context.Background()); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
}
