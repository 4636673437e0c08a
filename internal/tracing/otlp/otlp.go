// Package otlp sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables: an SDK TracerProvider exporting over OTLP, or
// none. Only cmd/ imports it.
//
// Tracing is on when OTEL_TRACES_EXPORTER is "otlp", or when it is unset
// and an OTLP endpoint is (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); it is off when nothing is set, when
// OTEL_TRACES_EXPORTER is "none" or when OTEL_SDK_DISABLED is "true". The
// protocol is OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
// OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" (the default, port 4318) or
// "grpc" (port 4317). The SDK reads the rest itself, as the specification
// says: the exporter's OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout,
// compression, certificates), OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and its argument, and the
// batch processor's OTEL_BSP_*.
package otlp

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ErrUnsupported is an exporter or protocol this package does not provide.
var ErrUnsupported = errors.New("unsupported")

// Provider is the process's TracerProvider, or none.
type Provider struct {
	tp *sdktrace.TracerProvider
}

// TracerProvider returns the provider to hand to components, or nil when
// tracing is off.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil || p.tp == nil {
		return nil
	}
	return p.tp
}

// Shutdown exports the spans still buffered and stops the exporter; ctx
// bounds how long that may take. It does nothing when tracing is off.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.tp == nil {
		return nil
	}
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing shutdown: %w", err)
	}
	return nil
}

// FromEnv builds the Provider the environment asks for (getenv reads it:
// os.Getenv in main); service is the service.name resource attribute when
// OTEL_SERVICE_NAME does not set one. With tracing off it returns a
// Provider whose TracerProvider is nil. It contacts no collector: the
// exporter connects when it first exports.
func FromEnv(ctx context.Context, getenv func(string) string, service string) (*Provider, error) {
	if !enabled(getenv) {
		return &Provider{}, nil
	}
	exp, err := exporter(ctx, getenv)
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	// The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based,
	// always on), which the SDK reads.
	return &Provider{tp: sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))}, nil
}

// enabled says whether the environment asks for traces.
func enabled(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "":
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	case "none":
		return false
	default:
		return true // exporter checks the name
	}
}

// exporter makes the span exporter OTEL_TRACES_EXPORTER and the OTLP
// protocol name.
func exporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	if exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp != "" && exp != "otlp" {
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER %q: %w (otlp or none)", exp, ErrUnsupported)
	}
	proto := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if proto == "" {
		proto = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch proto {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTLP protocol %q: %w (http/protobuf or grpc)", proto, ErrUnsupported)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	return exp, nil
}
