package proxy_test

import (
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/jetstate/jetstate/proxy"
)

// BenchmarkTracing measures what tracing costs a command: Counter/Add on
// one event-sourced entity (one event per command), sent sequentially over
// gRPC. Three sidecars, each with its own embedded server and function,
// run in the same benchmark with their rounds interleaved, so that drift of
// the machine hits them alike:
//   - off: no TracerProvider (the default);
//   - unsampled: a provider whose parent-based sampler samples no new
//     trace (ratio 0): spans are started and dropped at once;
//   - sampled: every span recorded and handed to a batch span processor
//     whose exporter discards them, which is the part of the OTLP
//     exporter's cost paid on the command path (encoding and sending
//     happen off it, in the batch processor's goroutine, counted in CPU).
//
// Per mode: the median latency, and per command the heap allocations and
// bytes and the CPU time of the whole process (the client, the server and
// the function run in it too, so only the differences between the modes
// are tracing's).
func BenchmarkTracing(b *testing.B) {
	const perRound = 300
	type mode struct {
		name     string
		h        *harness
		lat      []time.Duration
		n        int
		mallocs  uint64
		bytes    uint64
		cpu      time.Duration
		provider func() *sdktrace.TracerProvider
	}
	modes := []*mode{
		{name: "off"},
		{name: "unsampled", provider: func() *sdktrace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0))))
		}},
		{name: "sampled", provider: func() *sdktrace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		}},
	}
	for _, m := range modes {
		var tune func(*proxy.Config)
		if m.provider != nil {
			tp := m.provider()
			b.Cleanup(func() { _ = tp.Shutdown(b.Context()) })
			tune = func(c *proxy.Config) { c.TracerProvider = tp }
		}
		m.h = startHarness(b, tune)
		if _, err := m.h.call("Counter/Add", "bench", ptr(1)); err != nil { // activate
			b.Fatal(err)
		}
	}
	var ms runtime.MemStats
	for b.Loop() {
		for _, m := range modes {
			runtime.GC() // the previous mode's garbage is not this one's
			runtime.ReadMemStats(&ms)
			mallocs, bytes, cpu := ms.Mallocs, ms.TotalAlloc, cpuTime(b)
			for range perRound {
				t0 := time.Now()
				if _, err := m.h.call("Counter/Add", "bench", ptr(1)); err != nil {
					b.Fatal(err)
				}
				m.lat = append(m.lat, time.Since(t0))
			}
			runtime.ReadMemStats(&ms)
			m.mallocs += ms.Mallocs - mallocs
			m.bytes += ms.TotalAlloc - bytes
			m.cpu += cpuTime(b) - cpu
			m.n += perRound
		}
	}
	p50 := func(l []time.Duration) float64 {
		s := slices.Clone(l)
		slices.Sort(s)
		return float64(s[len(s)/2].Nanoseconds()) / 1e3
	}
	off := modes[0]
	for _, m := range modes {
		n := float64(m.n)
		b.ReportMetric(p50(m.lat), m.name+"-p50-us")
		b.ReportMetric(float64(m.mallocs)/n, m.name+"-allocs/cmd")
		b.ReportMetric(float64(m.bytes)/n, m.name+"-B/cmd")
		b.ReportMetric(float64(m.cpu.Microseconds())/n, m.name+"-cpu-us/cmd")
		if m != off {
			b.ReportMetric(p50(m.lat)/p50(off.lat), m.name+"/off-p50")
			b.ReportMetric(float64(m.cpu)/float64(off.cpu), m.name+"/off-cpu")
		}
	}
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
