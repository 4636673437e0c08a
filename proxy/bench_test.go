package proxy_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/streams"
)

// BenchmarkCommand measures a command on a warm event-sourced entity
// through the whole path (client -gRPC-> sidecar -stream-> function ->
// journal append -> reply) against raw JetStream CAS appends on the same
// embedded server in the same run, at 1 and 64 concurrent entities. NATS,
// the sidecar, the function and the client share the process and the 2
// cores, so the ratio is the honest cost of the path on one box.
func BenchmarkCommand(b *testing.B) {
	const perRound = 1000
	for _, entities := range []int{1, 64} {
		b.Run(fmt.Sprintf("entities=%d", entities), func(b *testing.B) {
			h := startBenchHarness(b)
			raw := rawCAS(h.js, entities)
			keys := make([]string, entities)
			for i := range keys {
				keys[i] = fmt.Sprint("bench-", entities, "-", i)
				if _, err := h.call("Counter/Add", keys[i], ptr(1)); err != nil { // warm up: activate
					b.Fatal(err)
				}
			}
			via := func(ctx context.Context, i int) error {
				_, err := h.call("Counter/Add", keys[i], ptr(1))
				return err
			}
			var rawT, cmdT time.Duration
			var rawL, cmdL []time.Duration
			for b.Loop() {
				t, l, err := benchRound(b.Context(), raw, entities, perRound)
				if err != nil {
					b.Fatal(err)
				}
				rawT, rawL = rawT+t, append(rawL, l...)
				t, l, err = benchRound(b.Context(), via, entities, perRound)
				if err != nil {
					b.Fatal(err)
				}
				cmdT, cmdL = cmdT+t, append(cmdL, l...)
			}
			rawRate, cmdRate := float64(len(rawL))/rawT.Seconds(), float64(len(cmdL))/cmdT.Seconds()
			b.ReportMetric(rawRate, "raw-appends/s")
			b.ReportMetric(cmdRate, "commands/s")
			b.ReportMetric(cmdRate/rawRate, "commands/raw")
			b.ReportMetric(quantile(rawL, 0.5), "raw-p50-us")
			b.ReportMetric(quantile(rawL, 0.99), "raw-p99-us")
			b.ReportMetric(quantile(cmdL, 0.5), "cmd-p50-us")
			b.ReportMetric(quantile(cmdL, 0.99), "cmd-p99-us")
		})
	}
}

// BenchmarkActiveEntities measures the memory of 10,000 active entities
// (each with an open stream to the function): the growth of the process's
// RSS and Go heap after activating them, per entity.
func BenchmarkActiveEntities(b *testing.B) {
	const n = 10_000
	for b.Loop() {
		h := startBenchHarness(b)
		rss0 := rss()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if _, err := h.call("Counter/Get", fmt.Sprint("idle-", i), nil); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		rss1 := rss()
		b.ReportMetric(float64(rss0)/(1<<20), "idle-rss-MiB")
		b.ReportMetric(float64(rss1)/(1<<20), "10k-active-rss-MiB")
		b.ReportMetric(float64(rss1-rss0)/n, "bytes/active-entity")
		h.stop()
	}
}

func startBenchHarness(b *testing.B) *harness {
	return startHarnessTB(b, func(c *proxy.Config) { c.QueueSize = 1000 })
}

// rawCAS is the baseline: a CAS publish of the same payload per command.
func rawCAS(js jetstream.JetStream, entities int) func(context.Context, int) error {
	last := make([]uint64, entities)
	payload := make([]byte, 40)
	cfg := streams.Config{Service: "test"}
	return func(ctx context.Context, i int) error {
		msg := nats.NewMsg(cfg.Subject(streams.Entity{Type: "raw", Key: strconv.Itoa(i)}))
		msg.Data = payload
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last[i], 10))
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			return err
		}
		last[i] = ack.Sequence
		return nil
	}
}

// benchRound runs n operations spread over entities, one goroutine each.
func benchRound(ctx context.Context, op func(context.Context, int) error, entities, n int) (time.Duration, []time.Duration, error) {
	per := n / entities
	lats := make([][]time.Duration, entities)
	errs := make([]error, entities)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range entities {
		wg.Go(func() {
			for range per {
				t0 := time.Now()
				if err := op(ctx, i); err != nil {
					errs[i] = err
					return
				}
				lats[i] = append(lats[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for i := range entities {
		if errs[i] != nil {
			return 0, nil, errs[i]
		}
		all = append(all, lats[i]...)
	}
	return elapsed, all, nil
}

func quantile(l []time.Duration, q float64) float64 {
	s := slices.Clone(l)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds())
}

// rss reads the process's resident set size.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
