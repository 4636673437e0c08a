package streams_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// Benchmarks print the journal's figures next to raw JetStream doing the same
// work on the same embedded server in the same run, and their ratio. Every
// figure is with file storage, R1, the server's default (lazy) fsync.

const benchPayload = 256

// opsPerRound is how many appends each side makes per benchmark iteration.
const opsPerRound = 2000

// latencies summarises a set of operation durations.
type latencies []time.Duration

func (l latencies) quantile(q float64) time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// appender appends the next event to entity i (0 <= i < entities).
type appender func(ctx context.Context, i int) error

// rawAppender is the baseline: a CAS publish per command, fenced by
// Nats-Expected-Last-Subject-Sequence, remembering each subject's last
// sequence, with nothing else.
func rawAppender(js jetstream.JetStream, cfg streams.Config, entities int) appender {
	last := make([]uint64, entities)
	payload := make([]byte, benchPayload)
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

func journalAppender(j *streams.Journal, entities int) appender {
	vs := make([]streams.Version, entities)
	ev := []streams.Event{{Type: "bench.Event", Data: make([]byte, benchPayload)}}
	return func(ctx context.Context, i int) error {
		v, err := j.Append(ctx, streams.Entity{Type: "journal", Key: strconv.Itoa(i)}, vs[i], ev)
		vs[i] = v
		return err
	}
}

// round runs opsPerRound appends spread over entities, one goroutine per
// entity, each waiting for its ack before the next append, and returns the
// wall time and every append's latency.
func round(ctx context.Context, app appender, entities int) (time.Duration, latencies, error) {
	return roundOf(ctx, app, entities, opsPerRound)
}

func benchServer(b *testing.B) (jetstream.JetStream, streams.Config, *streams.Journal) {
	s := streamstest.RunServer(b)
	js := s.JetStream(b)
	cfg := streams.Config{Service: "bench"}
	if err := streams.Provision(b.Context(), js, cfg, streams.StoreConfig{}); err != nil {
		b.Fatal(err)
	}
	j, err := streams.NewJournal(js, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return js, cfg, j
}

// BenchmarkAppend compares Journal.Append with raw CAS publishes at 1 and 64
// concurrent entities. Each iteration runs a round of each, alternating, so
// both see the same server state; ns/op is one round of both.
func BenchmarkAppend(b *testing.B) {
	for _, entities := range []int{1, 64} {
		b.Run(fmt.Sprintf("entities=%d", entities), func(b *testing.B) {
			js, cfg, j := benchServer(b)
			ctx := b.Context()
			raw, jour := rawAppender(js, cfg, entities), journalAppender(j, entities)
			var rawT, jourT time.Duration
			var rawL, jourL latencies
			b.ReportAllocs()
			for b.Loop() {
				t, l, err := round(ctx, raw, entities)
				if err != nil {
					b.Fatal(err)
				}
				rawT, rawL = rawT+t, append(rawL, l...)
				t, l, err = round(ctx, jour, entities)
				if err != nil {
					b.Fatal(err)
				}
				jourT, jourL = jourT+t, append(jourL, l...)
			}
			rawRate := float64(len(rawL)) / rawT.Seconds()
			jourRate := float64(len(jourL)) / jourT.Seconds()
			b.ReportMetric(rawRate, "raw-appends/s")
			b.ReportMetric(jourRate, "journal-appends/s")
			b.ReportMetric(jourRate/rawRate, "journal/raw")
			b.ReportMetric(float64(rawL.quantile(0.5).Microseconds()), "raw-p50-us")
			b.ReportMetric(float64(rawL.quantile(0.99).Microseconds()), "raw-p99-us")
			b.ReportMetric(float64(jourL.quantile(0.5).Microseconds()), "journal-p50-us")
			b.ReportMetric(float64(jourL.quantile(0.99).Microseconds()), "journal-p99-us")
		})
	}
}

// BenchmarkCommit measures the two ways to commit a command of 10 events
// atomically: one message carrying all events (what Journal.Append does)
// against a JetStream atomic batch of 10 messages with the CAS on the first
// (the raw alternative). Each iteration commits one command each way.
func BenchmarkCommit(b *testing.B) {
	const events = 10
	js, _, j := benchServer(b)
	ctx := b.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "batch", Subjects: []string{"batch.>"}, AllowAtomicPublish: true, Storage: jetstream.FileStorage,
	}); err != nil {
		b.Fatal(err)
	}
	evs := make([]streams.Event, events)
	for i := range evs {
		evs[i] = streams.Event{Type: "bench.Event", Data: make([]byte, benchPayload)}
	}
	var v streams.Version
	var last uint64
	var oneT, batchT time.Duration
	e := streams.Entity{Type: "t", Key: "one"}
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		var err error
		if v, err = j.Append(ctx, e, v, evs); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		msgs := make([]*nats.Msg, events)
		for i := range msgs {
			msgs[i] = nats.NewMsg("batch.e1")
			msgs[i].Data = make([]byte, benchPayload)
		}
		msgs[0].Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
		ack, err := jetstreamext.PublishMsgBatch(ctx, js, msgs)
		if err != nil {
			b.Fatal(err)
		}
		last = ack.Sequence
		oneT, batchT = oneT+t1.Sub(t0), batchT+time.Since(t1)
	}
	b.ReportMetric(float64(b.N)/oneT.Seconds(), "one-message-commits/s")
	b.ReportMetric(float64(b.N)/batchT.Seconds(), "atomic-batch-commits/s")
	b.ReportMetric(batchT.Seconds()/oneT.Seconds(), "one-message/atomic-batch")
}

// BenchmarkRecover measures recovering an entity of 10,000 events: the raw
// baseline of an ordered consumer reading the same 10,000 messages, a full
// journal replay, and loading a snapshot taken every 100 events plus the
// tail after it (99 events, the worst case). Each iteration does all three.
func BenchmarkRecover(b *testing.B) {
	const n = 10_000
	js, cfg, j := benchServer(b)
	ctx := b.Context()
	snaps, err := streams.NewSnapshots(ctx, js, cfg)
	if err != nil {
		b.Fatal(err)
	}
	full := streams.Entity{Type: "t", Key: "full"}
	snapped := streams.Entity{Type: "t", Key: "snapped"}
	ev := []streams.Event{{Type: "bench.Event", Data: make([]byte, benchPayload)}}
	var vf, vs streams.Version
	for i := 1; i <= n+99; i++ {
		if i <= n {
			if vf, err = j.Append(ctx, full, vf, ev); err != nil {
				b.Fatal(err)
			}
		}
		if vs, err = j.Append(ctx, snapped, vs, ev); err != nil {
			b.Fatal(err)
		}
		if i%100 == 0 {
			if err := snaps.Save(ctx, snapped, streams.Snapshot{Version: vs, Data: make([]byte, benchPayload)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	replay := func(e streams.Entity, from streams.Version, want int) {
		got := 0
		for _, err := range j.Read(ctx, e, from) {
			if err != nil {
				b.Fatal(err)
			}
			got++
		}
		if got != want {
			b.Fatalf("replayed %d events, want %d", got, want)
		}
	}
	raw := func() {
		cons, err := js.OrderedConsumer(ctx, cfg.JournalStream(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{cfg.Subject(full)}})
		if err != nil {
			b.Fatal(err)
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for range batch.Messages() {
			got++
		}
		if got != n || batch.Error() != nil {
			b.Fatalf("raw read %d of %d: %v", got, n, batch.Error())
		}
		_ = js.DeleteConsumer(ctx, cfg.JournalStream(), cons.CachedInfo().Name)
	}
	var rawT, fullT, snapT time.Duration
	for b.Loop() {
		t0 := time.Now()
		raw()
		t1 := time.Now()
		replay(full, streams.Version{}, n)
		t2 := time.Now()
		snap, found, err := snaps.Load(ctx, snapped)
		if err != nil || !found {
			b.Fatalf("snapshot: %v %v", found, err)
		}
		replay(snapped, snap.Version, 99)
		rawT, fullT, snapT = rawT+t1.Sub(t0), fullT+t2.Sub(t1), snapT+time.Since(t2)
	}
	per := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(b.N) }
	b.ReportMetric(per(rawT), "raw-ms")
	b.ReportMetric(per(fullT), "full-replay-ms")
	b.ReportMetric(per(snapT), "snapshot-ms")
	b.ReportMetric(rawT.Seconds()/fullT.Seconds(), "full-replay/raw-speed")
}
