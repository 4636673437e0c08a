package proxy_test

import (
	"context"
	"slices"
	"testing"
	"time"

	crdtpb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/proxy/crdt"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// BenchmarkCRDT measures, on one NATS server, sequential GCounter updates
// through a sidecar with write consistency LOCAL and MAJORITY, next to raw
// JetStream publishes of the same state size in the same run; and the
// convergence latency between two sidecars: from an update sent to one to
// its value streamed by the other's function (p50, p99).
func BenchmarkCRDT(b *testing.B) {
	const perRound = 300
	srv := streamstest.RunServer(b)
	js := srv.JetStream(b)
	a := startCRDTSidecar(b, js, nil)
	other := startCRDTSidecar(b, js, nil)
	for _, s := range []*crdtSidecar{a, other} {
		s.client.mustCall("Apply", crdtCmd{key: "bench", delta: gcounter(1), consistency: crdtpb.CrdtWriteConsistency_MAJORITY})
	}
	// The state as stored, for raw publishes of the same size.
	st, err := crdt.New(gcounter(1))
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range []string{"replica-a-0123456789", "replica-b-0123456789"} {
		if err := st.Apply(crdt.Env{Replica: r}, gcounter(1000)); err != nil {
			b.Fatal(err)
		}
	}
	state, err := crdt.Marshal(st)
	if err != nil {
		b.Fatal(err)
	}
	cfg := streams.Config{Service: "crdt"}
	subject := cfg.CRDTSubject(streams.Entity{Type: "raw", Key: "bench"}, "raw")
	rate := func(op func() error) float64 {
		t0 := time.Now()
		for range perRound {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
		return perRound / time.Since(t0).Seconds()
	}
	update := func(wc crdtpb.CrdtWriteConsistency) func() error {
		return func() error {
			_, err := a.client.call(b.Context(), "Apply", crdtCmd{key: "bench", delta: gcounter(1), consistency: wc})
			return err
		}
	}
	raw := func() error {
		_, err := js.Publish(b.Context(), subject, state)
		return err
	}

	// Convergence: the other sidecar's function streams every new value.
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	next := other.client.watch(ctx, crdtCmd{key: "bench"})
	if _, err := next(); err != nil {
		b.Fatal(err)
	}
	converge := func() time.Duration {
		want := a.client.mustCall("Get", crdtCmd{key: "bench"}).GetGcounter().GetIncrement() + 1
		t0 := time.Now()
		if err := update(crdtpb.CrdtWriteConsistency_LOCAL)(); err != nil {
			b.Fatal(err)
		}
		for {
			v, err := next()
			if err != nil {
				b.Fatal(err)
			}
			if v.GetGcounter().GetIncrement() >= want {
				return time.Since(t0)
			}
		}
	}

	var local, majority, rawRate []float64
	var lat []time.Duration
	for b.Loop() {
		local = append(local, rate(update(crdtpb.CrdtWriteConsistency_LOCAL)))
		majority = append(majority, rate(update(crdtpb.CrdtWriteConsistency_MAJORITY)))
		rawRate = append(rawRate, rate(raw))
		for range 50 {
			lat = append(lat, converge())
		}
	}
	med := func(xs []float64) float64 { slices.Sort(xs); return xs[len(xs)/2] }
	slices.Sort(lat)
	l, m, r := med(local), med(majority), med(rawRate)
	b.ReportMetric(l, "local-updates/s")
	b.ReportMetric(m, "majority-updates/s")
	b.ReportMetric(r, "raw-publishes/s")
	b.ReportMetric(l/r, "local/raw")
	b.ReportMetric(m/r, "majority/raw")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "converge-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "converge-p99-ms")
	b.ReportMetric(float64(len(state)), "state-bytes")
}
