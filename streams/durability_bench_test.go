package streams_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/jetstate/jetstate/streams/streamstest"
)

// BenchmarkDurability answers what fsync on every write (durability
// `always`, the server's `sync_interval: always`) costs CAS appends, and
// whether concurrent appends of different entities can share fsyncs through
// a group commit: one JetStream atomic batch of CAS-fenced appends.
//
// What the server does (nats-server v2.15.2, server/stream.go, filestore.go,
// jetstream_batching.go):
//   - R1 file stream, sync always: one goroutine per stream (internalLoop)
//     takes inbound messages one at a time and stores each with write +
//     fsync before its ack (msgBlock.flushPendingMsgsLocked). Concurrent
//     publishes queue behind each other; nothing coalesces their fsyncs.
//   - R1 atomic batch: every batch is staged in a new temporary file store
//     (newBatchStore: a directory, stream meta and checksum files written
//     with O_SYNC, the directory fsynced), whose block is fsynced at the
//     commit (readyForCommit); the commit then writes all messages to the
//     stream with fsync-per-write switched off and fsyncs once at the end
//     (coalesceSync); the staging store is then deleted (remove, directory
//     fsync). A fixed cost of several synchronous disk operations and
//     metadata changes per batch, whatever its size, under lazy fsync too.
//   - R3: the stream's store defers to the Raft log (SyncOnFlush); the
//     leader packs the proposals waiting in its queue into one append entry
//     and writes it to the log with one fsync, so concurrent plain appends
//     already share fsyncs. Atomic batches stage in memory and are proposed
//     as one append entry (ProposeMulti).
//
// Each sub-benchmark runs, per iteration, a round of raw CAS appends and a
// round through the prototype group committer below (batches of up to 256)
// on the same server, and reports both rates, their ratio and latencies;
// entities=1 is sequential, entities=64 and 256 are that many concurrent
// callers, each waiting for its ack before its next append.
//
// The prototype stays here: on R1 with sync always it won 1.2-2.7x at 64
// entities (4.8-8.2x at 256), on R3 0.9-1.2x (Raft already shares fsyncs),
// and with the default lazy fsync it lost 4-27x on R1 at 64 entities
// (README, Performance, "Durability's price").
func BenchmarkDurability(b *testing.B) {
	for _, d := range []struct {
		name     string
		replicas int
		sync     bool
	}{
		{"R1/sync=always", 1, true},
		{"R1/sync=flush", 1, false},
		{"R3/sync=always", 3, true},
		{"R3/sync=flush", 3, false},
	} {
		for _, entities := range []int{1, 64, 256} {
			b.Run(fmt.Sprintf("%s/entities=%d", d.name, entities), func(b *testing.B) {
				var opts []streamstest.Option
				if d.sync {
					opts = append(opts, streamstest.WithSyncAlways())
				}
				var js jetstream.JetStream
				if d.replicas == 1 {
					js = streamstest.RunServer(b, opts...).JetStream(b)
				} else {
					js = streamstest.RunCluster(b, d.replicas, opts...).JetStream(b)
				}
				benchDurability(b, js, d.replicas, entities)
			})
		}
	}
}

// durabilityRound is how many appends each side makes per iteration: fewer
// than opsPerRound, fsync on every write being up to 50x slower.
const durabilityRound = 512

func benchDurability(b *testing.B, js jetstream.JetStream, replicas, entities int) {
	ctx := b.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "durability", Subjects: []string{"durability.>"}, Storage: jetstream.FileStorage,
		Replicas: replicas, AllowAtomicPublish: true,
	}); err != nil {
		b.Fatal(err)
	}
	g := newGroupCommitter(js, 256)
	gctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { g.run(gctx) })
	raw := rawCASAppender(js, "durability.raw.", entities)
	grp := groupAppender(g, "durability.group.", entities)
	var rawT, grpT time.Duration
	var rawL, grpL latencies
	for b.Loop() {
		t, l, err := roundOf(ctx, raw, entities, durabilityRound)
		if err != nil {
			b.Fatal(err)
		}
		rawT, rawL = rawT+t, append(rawL, l...)
		t, l, err = roundOf(ctx, grp, entities, durabilityRound)
		if err != nil {
			b.Fatal(err)
		}
		grpT, grpL = grpT+t, append(grpL, l...)
	}
	stop()
	wg.Wait()
	rawRate := float64(len(rawL)) / rawT.Seconds()
	grpRate := float64(len(grpL)) / grpT.Seconds()
	b.ReportMetric(rawRate, "raw-appends/s")
	b.ReportMetric(grpRate, "group-appends/s")
	b.ReportMetric(grpRate/rawRate, "group/raw")
	b.ReportMetric(float64(rawL.quantile(0.5).Microseconds()), "raw-p50-us")
	b.ReportMetric(float64(rawL.quantile(0.99).Microseconds()), "raw-p99-us")
	b.ReportMetric(float64(grpL.quantile(0.5).Microseconds()), "group-p50-us")
	b.ReportMetric(float64(grpL.quantile(0.99).Microseconds()), "group-p99-us")
	if g.batches > 0 {
		b.ReportMetric(float64(g.batched)/float64(g.batches), "appends/batch")
		b.ReportMetric(float64(g.batchT.Microseconds())/float64(g.batches), "us/batch")
	}
	b.ReportMetric(float64(g.fallbacks), "fallbacks") // no append conflicts: each is a refusal such as 10164
}

// roundOf runs n appends spread over entities, one goroutine per entity,
// each waiting for its ack before the next append, and returns the wall
// time and every append's latency.
func roundOf(ctx context.Context, app appender, entities, n int) (time.Duration, latencies, error) {
	per := max(1, n/entities)
	lats := make([]latencies, entities)
	errs := make([]error, entities)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range entities {
		wg.Go(func() {
			lats[i] = make(latencies, 0, per)
			for range per {
				t0 := time.Now()
				if err := app(ctx, i); err != nil {
					errs[i] = err
					return
				}
				lats[i] = append(lats[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, nil, err
	}
	var all latencies
	for i := range entities {
		all = append(all, lats[i]...)
	}
	return elapsed, all, nil
}

// rawCASAppender publishes on "<prefix><i>", fenced by the last sequence it
// saw there. It retries error 10164, which a replicated stream may return
// while another write is in flight.
func rawCASAppender(js jetstream.JetStream, prefix string, entities int) appender {
	last := make([]uint64, entities)
	payload := make([]byte, benchPayload)
	return func(ctx context.Context, i int) error {
		msg := nats.NewMsg(prefix + strconv.Itoa(i))
		msg.Data = payload
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last[i], 10))
		seq, err := publishCAS(ctx, js, msg)
		if err != nil {
			return err
		}
		last[i] = seq
		return nil
	}
}

// publishCAS publishes msg, retrying while the server answers 10164.
func publishCAS(ctx context.Context, js jetstream.JetStream, msg *nats.Msg) (uint64, error) {
	for {
		ack, err := js.PublishMsg(ctx, msg)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant {
			continue
		}
		if err != nil {
			return 0, err
		}
		return ack.Sequence, nil
	}
}

func groupAppender(g *groupCommitter, prefix string, entities int) appender {
	last := make([]uint64, entities)
	payload := make([]byte, benchPayload)
	return func(ctx context.Context, i int) error {
		seq, err := g.append(ctx, prefix+strconv.Itoa(i), payload, last[i])
		if err != nil {
			return err
		}
		last[i] = seq
		return nil
	}
}

// groupCommitter is the prototype group commit. Appends that arrive while
// a commit is in flight (up to max, never two of one subject) are
// published together as one JetStream atomic batch, each message fenced by
// its own subject's Nats-Expected-Last-Subject-Sequence, so they share the
// batch's fsyncs. One failed fence fails the whole batch; the appends are
// then retried one by one, so each caller gets exactly its own CAS result.
// A lone append is published as a plain CAS append.
type groupCommitter struct {
	js   jetstream.JetStream
	max  int
	reqs chan *groupAppend

	// Counters, owned by run.
	batches, batched, fallbacks int
	batchT                      time.Duration
}

type groupAppend struct {
	msg  *nats.Msg
	seq  uint64
	err  error
	done chan struct{}
}

func newGroupAppend(subject string, data []byte, expected uint64) *groupAppend {
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
	return &groupAppend{msg: msg, done: make(chan struct{})}
}

func newGroupCommitter(js jetstream.JetStream, maxBatch int) *groupCommitter {
	return &groupCommitter{js: js, max: maxBatch, reqs: make(chan *groupAppend, maxBatch)}
}

// append publishes data on subject provided the subject's last stream
// sequence is expected, and returns the new message's sequence.
func (g *groupCommitter) append(ctx context.Context, subject string, data []byte, expected uint64) (uint64, error) {
	a := newGroupAppend(subject, data, expected)
	select {
	case g.reqs <- a:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case <-a.done:
		return a.seq, a.err
	case <-ctx.Done(): // the append may still be committed
		return 0, ctx.Err()
	}
}

// run commits until ctx is done, one batch at a time: the appends that
// queue up during one commit make the next batch.
func (g *groupCommitter) run(ctx context.Context) {
	var held []*groupAppend // appends of a subject already in the batch, in order
	for {
		queued := held
		held = nil
		if len(queued) == 0 {
			select {
			case a := <-g.reqs:
				queued = append(queued, a)
			case <-ctx.Done():
				return
			}
		}
	drain:
		for len(queued) < g.max {
			select {
			case a := <-g.reqs:
				queued = append(queued, a)
			default:
				break drain
			}
		}
		var batch []*groupAppend
		in := make(map[string]bool, len(queued))
		for _, a := range queued {
			if in[a.msg.Subject] || len(batch) == g.max {
				held = append(held, a)
				continue
			}
			in[a.msg.Subject] = true
			batch = append(batch, a)
		}
		g.commit(ctx, batch)
		for _, a := range batch {
			close(a.done)
		}
	}
}

func (g *groupCommitter) commit(ctx context.Context, batch []*groupAppend) {
	if len(batch) > 1 {
		t0 := time.Now()
		first, err := g.publishBatch(ctx, batch)
		g.batches, g.batched, g.batchT = g.batches+1, g.batched+len(batch), g.batchT+time.Since(t0)
		if err == nil {
			for i, a := range batch {
				a.seq = first + uint64(i)
			}
			return
		}
		g.fallbacks++
	}
	var wg sync.WaitGroup
	for _, a := range batch {
		wg.Go(func() { a.seq, a.err = publishCAS(ctx, g.js, a.msg) })
	}
	wg.Wait()
}

// publishBatch sends batch as one atomic batch: every message but the last
// as a plain publish, the last (carrying Nats-Batch-Commit) as a request.
// A batch's messages get consecutive stream sequences; it returns the
// first's. It leaves the messages without batch headers.
func (g *groupCommitter) publishBatch(ctx context.Context, batch []*groupAppend) (uint64, error) {
	const (
		idHeader     = "Nats-Batch-Id"
		seqHeader    = "Nats-Batch-Sequence"
		commitHeader = "Nats-Batch-Commit"
	)
	defer func() {
		for _, a := range batch {
			a.msg.Header.Del(idHeader)
			a.msg.Header.Del(seqHeader)
			a.msg.Header.Del(commitHeader)
		}
	}()
	nc, id := g.js.Conn(), nuid.Next()
	for i, a := range batch {
		a.msg.Header.Set(idHeader, id)
		a.msg.Header.Set(seqHeader, strconv.Itoa(i+1))
		if i < len(batch)-1 {
			if err := nc.PublishMsg(a.msg); err != nil {
				return 0, err
			}
		}
	}
	last := batch[len(batch)-1].msg
	last.Header.Set(commitHeader, "1")
	resp, err := nc.RequestMsgWithContext(ctx, last)
	if err != nil {
		return 0, err
	}
	var ack struct {
		Error *jetstream.APIError `json:"error"`
		Seq   uint64              `json:"seq"`
		Batch string              `json:"batch"`
		Count int                 `json:"count"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, err
	}
	if ack.Error != nil {
		return 0, ack.Error
	}
	if ack.Batch != id || ack.Count != len(batch) {
		return 0, fmt.Errorf("batch %s of %d acknowledged as %q of %d", id, len(batch), ack.Batch, ack.Count)
	}
	return ack.Seq - uint64(len(batch)) + 1, nil
}

// TestGroupCommitPrototype checks the benchmark's group committer, so that
// its figures are those of a correct one: a batch's appends get the stream
// sequences of their own messages, and one stale fence in a batch fails
// that append only.
func TestGroupCommitPrototype(t *testing.T) {
	t.Parallel()
	js := streamstest.RunServer(t).JetStream(t)
	ctx := t.Context()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "gc", Subjects: []string{"gc.>"}, AllowAtomicPublish: true})
	if err != nil {
		t.Fatal(err)
	}
	g := newGroupCommitter(js, 256)
	landed := func(a *groupAppend) {
		t.Helper()
		if a.err != nil {
			t.Fatalf("append to %s: %v", a.msg.Subject, a.err)
		}
		m, err := stream.GetMsg(ctx, a.seq)
		if err != nil || m.Subject != a.msg.Subject {
			t.Fatalf("append to %s returned sequence %d, which holds %v (%v)", a.msg.Subject, a.seq, m, err)
		}
	}
	if _, err := js.Publish(ctx, "gc.other", nil); err != nil { // so that batch sequences differ from stream sequences
		t.Fatal(err)
	}
	first := []*groupAppend{newGroupAppend("gc.a", nil, 0), newGroupAppend("gc.b", nil, 0), newGroupAppend("gc.c", nil, 0)}
	g.commit(ctx, first)
	for _, a := range first {
		landed(a)
	}
	if g.batches != 1 || g.fallbacks != 0 {
		t.Fatalf("%d batches, %d fallbacks; want one batch", g.batches, g.fallbacks)
	}

	second := []*groupAppend{
		newGroupAppend("gc.a", nil, first[0].seq),
		newGroupAppend("gc.b", nil, 0), // stale: gc.b holds first[1]
		newGroupAppend("gc.c", nil, first[2].seq),
	}
	g.commit(ctx, second)
	landed(second[0])
	landed(second[2])
	var apiErr *jetstream.APIError
	if !errors.As(second[1].err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		t.Fatalf("stale append: %v, want wrong last sequence (10071)", second[1].err)
	}
	if g.batches != 2 || g.fallbacks != 1 {
		t.Fatalf("%d batches, %d fallbacks; want the second batch to fall back", g.batches, g.fallbacks)
	}
}
