package proxy_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/streams"
)

// BenchmarkRouting measures, on a 3-node NATS cluster with R3 storage and
// two replicas, an entity command sent to the replica owning the entity
// (local) against one sent to the other replica (routed over NATS to the
// owner), sequentially, next to raw R3 CAS appends in the same run; and
// how long the shards take to settle when a replica leaves (graceful) and
// when it joins again.
func BenchmarkRouting(b *testing.B) {
	const perRound = 300
	c := startCluster(b, 2)
	// A key owned by replica 0.
	key := ""
	for i := 0; key == ""; i++ {
		k := "bench-" + strconv.Itoa(i)
		if proxy.Serves(c.replicas[0].p, streams.ShardOf(streams.Entity{Type: "counter", Key: k}, clusterShards)) {
			key = k
		}
	}
	send := func(r *replica) error {
		resp := c.types.msg("Value")
		return r.conn.Invoke(b.Context(), "/test.Counter/Add", c.types.request(key, ptr(1)), resp)
	}
	if err := send(c.replicas[0]); err != nil { // activate
		b.Fatal(err)
	}
	js := c.replicas[0].js
	last := uint64(0)
	raw := func() error {
		msg := nats.NewMsg(streams.Config{Service: "test"}.Subject(streams.Entity{Type: "raw", Key: "1"}))
		msg.Data = make([]byte, 8)
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
		ack, err := js.PublishMsg(b.Context(), msg)
		if err == nil {
			last = ack.Sequence
		}
		return err
	}
	timed := func(op func() error) []time.Duration {
		var out []time.Duration
		for range perRound {
			t0 := time.Now()
			if err := op(); err != nil {
				b.Fatal(err)
			}
			out = append(out, time.Since(t0))
		}
		return out
	}
	var rawL, localL, routedL []time.Duration
	for b.Loop() {
		rawL = append(rawL, timed(raw)...)
		localL = append(localL, timed(func() error { return send(c.replicas[0]) })...)
		routedL = append(routedL, timed(func() error { return send(c.replicas[1]) })...)
	}
	p50 := func(l []time.Duration) float64 {
		s := slices.Clone(l)
		slices.Sort(s)
		return float64(s[len(s)/2].Microseconds())
	}
	b.ReportMetric(p50(rawL), "raw-p50-us")
	b.ReportMetric(p50(localL), "local-p50-us")
	b.ReportMetric(p50(routedL), "routed-p50-us")
	b.ReportMetric(p50(routedL)/p50(localL), "routed/local")
	b.ReportMetric(p50(rawL)/p50(localL), "local-rate/raw")

	// Handoff: replica 1 leaves gracefully (its shards go to replica 0;
	// the stop includes the route subscriptions' linger), then a new
	// sidecar joins and takes its share.
	b.StopTimer()
	t0 := time.Now()
	c.stop(c.replicas[1])
	c.waitBalanced()
	b.ReportMetric(float64(time.Since(t0).Milliseconds()), "leave-ms")
	t0 = time.Now()
	c.start(c.replicas[1])
	c.waitBalanced()
	b.ReportMetric(float64(time.Since(t0).Milliseconds()), "join-ms")
}
