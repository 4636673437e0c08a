package proxy_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jetstate/jetstate/proxy"
)

// BenchmarkActiveEntities measures the memory of 10,000 active entities
// (each with an open stream to the function): the growth of the process's
// RSS after activating them, per entity. The process also holds NATS and
// the test function (the other end of every stream), so this is an upper
// bound for the sidecar alone. The command path is benchmarked with the
// real shopping cart (examples/shoppingcart, BenchmarkAddItem).
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
