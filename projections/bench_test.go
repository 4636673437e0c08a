package projections_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// benchEvents is how many journal messages (one event each, over
// benchEntities entities) each round projects.
const (
	benchEvents   = 20_000
	benchEntities = 1_000
	lagEvents     = 2_000
)

// BenchmarkProjection compares, in the same run on the same stream, the
// CloudEvents a projection publishes per second to a NATS subject with the
// raw rate of an ordered consumer reading that stream (ratio = ce/s over
// raw/s), and measures the lag from append to the sink (p50, p99) for
// events appended one after the other while a projection runs.
//
// Each round: an ordered consumer reads the benchEvents messages; a new
// projection (its own durable consumer, default settings) publishes them
// all and is deleted; then lagEvents more are appended under a running
// projection. "same-conn" publishes on the projector's connection,
// "own-conn" on a connection of its own (either way a flush of the sink's
// connection confirms the events an acknowledgement covers);
// "same-conn-ackeach" is same-conn with Config.AckEach (one
// acknowledgement per journal message instead of cumulative ones).
func BenchmarkProjection(b *testing.B) {
	for _, tc := range []struct {
		name              string
		sameConn, ackEach bool
	}{
		{"same-conn", true, false},
		{"own-conn", false, false},
		{"same-conn-ackeach", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) { benchProjection(b, tc.sameConn, tc.ackEach) })
	}
}

func benchProjection(b *testing.B, sameConn, ackEach bool) {
	srv := streamstest.RunServer(b)
	js := srv.JetStream(b)
	cfg := streams.Config{Service: "bench"}
	if err := streams.Provision(b.Context(), js, cfg, streams.StoreConfig{}); err != nil {
		b.Fatal(err)
	}
	j, err := streams.NewJournal(js, cfg)
	if err != nil {
		b.Fatal(err)
	}
	versions := make([]streams.Version, benchEntities)
	appendN(b, j, versions, benchEvents, 32)

	subConn := srv.Connect(b)
	var received atomic.Int64
	var lagMu sync.Mutex
	var lags []time.Duration
	measure := atomic.Bool{}
	sub, err := subConn.Subscribe("bench.events", func(m *nats.Msg) {
		received.Add(1)
		if measure.Load() {
			t, err := time.Parse(time.RFC3339Nano, m.Header.Get("ce-time"))
			if err == nil {
				lagMu.Lock()
				lags = append(lags, time.Since(t))
				lagMu.Unlock()
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := subConn.Flush(); err != nil {
		b.Fatal(err)
	}
	sinkConn := js.Conn()
	if !sameConn {
		sinkConn = srv.Connect(b)
	}
	sink, err := projections.NewNATSSink(sinkConn, projections.NATSSinkConfig{Subject: "bench.events"})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()

	var rawTime, projTime time.Duration
	round := 0
	b.ReportAllocs()
	for b.Loop() {
		round++
		rawTime += readOrdered(b, js, cfg.JournalStream(), benchEvents)

		received.Store(0)
		p, err := projections.New(js, projections.Config{Storage: cfg, Name: "bench" + strconv.Itoa(round), Sink: sink, AckEach: ackEach})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- p.Run(ctx) }()
		waitReceived(b, &received, benchEvents)
		projTime += time.Since(start)

		// Lag: events appended one at a time while the projection runs.
		received.Store(0)
		measure.Store(true)
		appendN(b, j, versions, lagEvents, 1)
		waitReceived(b, &received, lagEvents)
		measure.Store(false)
		cancel()
		if err := <-done; err != nil {
			b.Fatalf("Run: %v", err)
		}
		if err := p.Delete(b.Context()); err != nil {
			b.Fatal(err)
		}
		// Keep the stream at benchEvents messages for every round (every
		// entity's last message is among them, so appends stay fenced).
		s, err := js.Stream(b.Context(), cfg.JournalStream())
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Purge(b.Context(), jetstream.WithPurgeKeep(benchEvents)); err != nil {
			b.Fatal(err)
		}
	}
	rawRate := float64(benchEvents*round) / rawTime.Seconds()
	ceRate := float64(benchEvents*round) / projTime.Seconds()
	b.ReportMetric(rawRate, "raw-msgs/s")
	b.ReportMetric(ceRate, "ce/s")
	b.ReportMetric(ceRate/rawRate, "ratio")
	slices.Sort(lags)
	if len(lags) > 0 {
		b.ReportMetric(float64(lags[len(lags)/2].Microseconds())/1000, "lag-p50-ms")
		b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1000, "lag-p99-ms")
	}
}

// appendN appends n single-event commands round-robin over the entities
// from the given number of goroutines.
func appendN(b *testing.B, j *streams.Journal, versions []streams.Version, n, workers int) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	per := (len(versions) + workers - 1) / workers
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lo, hi := w*per, min((w+1)*per, len(versions))
			for k := lo; next.Add(1) <= int64(n); k++ {
				if k == hi {
					k = lo
				}
				e := streams.Entity{Type: "cart", Key: fmt.Sprintf("e%d", k)}
				v, err := j.Append(context.Background(), e, versions[k], []streams.Event{strEvent("item")})
				if err != nil {
					b.Error(err)
					return
				}
				versions[k] = v
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// readOrdered reads the last n messages of the stream through an ordered
// consumer and returns how long that took.
func readOrdered(b *testing.B, js jetstream.JetStream, stream string, n int) time.Duration {
	b.Helper()
	start := time.Now()
	cons, err := js.OrderedConsumer(b.Context(), stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	for range n {
		if _, err := it.Next(); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

func waitReceived(b *testing.B, received *atomic.Int64, n int64) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for received.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("sink received %d of %d events", received.Load(), n)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// BenchmarkProjectionFloor is what BenchmarkProjection (same-conn) can
// hope for: a bare loop that reads the stream through a durable consumer
// with AckPolicy all, publishes for each message one NATS message with a
// CloudEvent's nine binary-mode headers (one message and header map
// reused, id, time and sequence set anew) to the same subscriber, on the
// same connection, and acknowledges every 256 messages. No decoding, no
// conversion, no per-entity queue, no confirmation. ratio = its rate over
// the raw ordered consumer's, measured in the same rounds.
func BenchmarkProjectionFloor(b *testing.B) {
	srv := streamstest.RunServer(b)
	js := srv.JetStream(b)
	cfg := streams.Config{Service: "bench"}
	if err := streams.Provision(b.Context(), js, cfg, streams.StoreConfig{}); err != nil {
		b.Fatal(err)
	}
	j, err := streams.NewJournal(js, cfg)
	if err != nil {
		b.Fatal(err)
	}
	appendN(b, j, make([]streams.Version, benchEntities), benchEvents, 32)
	var received atomic.Int64
	sub, err := srv.Connect(b).Subscribe("bench.events", func(*nats.Msg) { received.Add(1) })
	if err != nil {
		b.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	nc := js.Conn()
	var rawTime, loopTime time.Duration
	round := 0
	for b.Loop() {
		round++
		rawTime += readOrdered(b, js, cfg.JournalStream(), benchEvents)
		received.Store(0)
		start := time.Now()
		cons, err := js.CreateConsumer(b.Context(), cfg.JournalStream(), jetstream.ConsumerConfig{
			Durable: "floor", AckPolicy: jetstream.AckAllPolicy, MaxAckPending: projections.DefaultMaxAckPending,
		})
		if err != nil {
			b.Fatal(err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(512))
		if err != nil {
			b.Fatal(err)
		}
		// One message and header map for all (a core publish copies them).
		out := nats.NewMsg("bench.events")
		vals := make([]string, 9)
		for i, name := range []string{"ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject", "ce-time",
			"ce-jetstateseq", "content-type", "ce-datacontenttype"} {
			out.Header[name] = vals[i : i+1 : i+1]
		}
		vals[0], vals[2], vals[3], vals[4] = "1.0", "/jetstate/bench/cart", "google.protobuf.StringValue", "e1"
		vals[7], vals[8] = projections.ContentTypeProtobuf, projections.ContentTypeProtobuf
		for i := range benchEvents {
			m, err := it.Next()
			if err != nil {
				b.Fatal(err)
			}
			md, _ := m.Metadata()
			vals[1] = projections.EventID(cfg.JournalStream(), md.Sequence.Stream, 0)
			vals[5] = md.Timestamp.UTC().Format(time.RFC3339Nano)
			vals[6] = strconv.FormatUint(md.Sequence.Stream, 10)
			out.Data = m.Data()
			if err := nc.PublishMsg(out); err != nil {
				b.Fatal(err)
			}
			if i%256 == 255 || i == benchEvents-1 {
				_ = m.Ack()
			}
		}
		it.Stop()
		waitReceived(b, &received, benchEvents)
		loopTime += time.Since(start)
		if err := js.DeleteConsumer(b.Context(), cfg.JournalStream(), "floor"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(rawTime.Seconds()/loopTime.Seconds(), "ratio")
}
