package keyq_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/internal/keyq"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// env is a server with the stream Q (subjects q.<key>) and one durable
// pull consumer on it.
type env struct {
	js   jetstream.JetStream
	cons jetstream.Consumer
}

func newEnv(t *testing.T, ackWait time.Duration) *env {
	t.Helper()
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "Q", Subjects: []string{"q.>"}}); err != nil {
		t.Fatal(err)
	}
	return &env{js: js, cons: newConsumer(t, js, ackWait)}
}

func newConsumer(t *testing.T, js jetstream.JetStream, ackWait time.Duration) jetstream.Consumer {
	t.Helper()
	cons, err := js.CreateConsumer(t.Context(), "Q", jetstream.ConsumerConfig{
		Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, MaxDeliver: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cons
}

// publish publishes one message per "key:payload" on q.<key>, in order,
// and returns their stream sequences.
func (e *env) publish(t *testing.T, msgs ...string) []uint64 {
	t.Helper()
	var seqs []uint64
	for _, m := range msgs {
		key, payload, _ := strings.Cut(m, ":")
		ack, err := e.js.Publish(t.Context(), "q."+key, []byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	return seqs
}

// bySubject is the Key of these tests.
func bySubject(msg jetstream.Msg, _ *jetstream.MsgMetadata) string { return msg.Subject() }

// consume is a consume function for Run: it dispatches cons's messages to
// q, calling after (if set) once each was dispatched with what Dispatch
// reported, and drains the iterator once ctx ends.
func consume(cons jetstream.Consumer, q *keyq.Queue, after func(msg jetstream.Msg, md *jetstream.MsgMetadata, dup bool)) func(context.Context) error {
	return func(ctx context.Context) error {
		it, err := cons.Messages()
		if err != nil {
			return err
		}
		defer context.AfterFunc(ctx, it.Drain)()
		for {
			msg, err := it.Next()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if err != nil {
				continue // heartbeats and the like
			}
			dup := q.Dispatch(msg)
			if after != nil {
				md, _ := msg.Metadata()
				after(msg, md, dup)
			}
		}
	}
}

// start runs q with consume until the test ends (or the returned stop is
// called), failing the test if Run fails or does not return.
func start(t *testing.T, q *keyq.Queue, consume func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx, consume) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Run did not return within 30s of its context's end")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (e *env) newQueue(t *testing.T, cfg keyq.Config) *keyq.Queue {
	t.Helper()
	cfg.Consumer = e.cons
	if cfg.Key == nil {
		cfg.Key = bySubject
	}
	q, err := keyq.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func ack(t *testing.T, msg jetstream.Msg) {
	t.Helper()
	if err := msg.Ack(); err != nil {
		t.Errorf("ack: %v", err)
	}
}

// send sends v on ch unless ch is full (a hook must not block consume).
func send[T any](ch chan<- T, v T) {
	select {
	case ch <- v:
	default:
	}
}

// waitUntil waits until ok holds, checking every 10 ms.
func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !ok() {
		select {
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// info is the consumer's state.
func info(t *testing.T, cons jetstream.Consumer) *jetstream.ConsumerInfo {
	t.Helper()
	ci, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return ci
}

// TestOrderPerKey: many keys' messages, interleaved, over several
// workers: each key's are processed in publish order, never two at once.
func TestOrderPerKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Minute)
	const keys, perKey = 8, 40
	var msgs []string
	for i := range perKey {
		for k := range keys {
			msgs = append(msgs, fmt.Sprintf("k%d:%d", k, i))
		}
	}
	e.publish(t, msgs...)

	var (
		mu      sync.Mutex
		active  = map[string]bool{}
		got     = map[string][]int{}
		total   atomic.Int64
		overlap atomic.Bool
	)
	q := e.newQueue(t, keyq.Config{Workers: 4, Process: func(_ context.Context, msg jetstream.Msg, _ *jetstream.MsgMetadata) bool {
		key := msg.Subject()
		mu.Lock()
		if active[key] {
			overlap.Store(true)
		}
		active[key] = true
		mu.Unlock()
		runtime.Gosched()
		n, _ := strconv.Atoi(string(msg.Data()))
		mu.Lock()
		active[key] = false
		got[key] = append(got[key], n)
		mu.Unlock()
		ack(t, msg)
		total.Add(1)
		return true
	}})
	start(t, q, consume(e.cons, q, nil))
	waitUntil(t, "every message processed", func() bool { return total.Load() == keys*perKey })
	if overlap.Load() {
		t.Error("two messages of one key were processed at the same time")
	}
	want := make([]int, perKey)
	for i := range want {
		want[i] = i
	}
	mu.Lock()
	defer mu.Unlock()
	for k := range keys {
		key := "q.k" + strconv.Itoa(k)
		if diff := cmp.Diff(want, got[key]); diff != "" {
			t.Errorf("%s processed out of order (-want +got):\n%s", key, diff)
		}
	}
}

// TestParallelAcrossKeys: while one key's message is in Process, other
// keys' messages go through; the held key's later messages wait for it.
func TestParallelAcrossKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Minute)
	e.publish(t, "a:1", "a:2", "b:1", "c:1")
	release := make(chan struct{})
	processed := make(chan string, 4)
	q := e.newQueue(t, keyq.Config{Workers: 2, Process: func(ctx context.Context, msg jetstream.Msg, _ *jetstream.MsgMetadata) bool {
		id := strings.TrimPrefix(msg.Subject(), "q.") + ":" + string(msg.Data())
		if id == "a:1" {
			select {
			case <-release:
			case <-ctx.Done():
				return false
			}
		}
		ack(t, msg)
		processed <- id
		return true
	}})
	start(t, q, consume(e.cons, q, nil))
	// Both other keys are processed while a:1 is held (by the one
	// other worker), and a:2 is not.
	var first []string
	for range 2 {
		first = append(first, <-processed)
	}
	slices.Sort(first)
	if diff := cmp.Diff([]string{"b:1", "c:1"}, first); diff != "" {
		t.Errorf("processed while a:1 is held (-want +got):\n%s", diff)
	}
	close(release)
	if got := []string{<-processed, <-processed}; !slices.Equal(got, []string{"a:1", "a:2"}) {
		t.Errorf("then %v, want [a:1 a:2]", got)
	}
}

// TestFairBetweenKeys: one worker alternates between keys instead of
// emptying one key first.
func TestFairBetweenKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Minute)
	e.publish(t, "a:1", "a:2", "a:3", "b:1", "b:2", "b:3")
	var mu sync.Mutex
	var order []string
	q := e.newQueue(t, keyq.Config{Workers: 1, Process: func(_ context.Context, msg jetstream.Msg, _ *jetstream.MsgMetadata) bool {
		mu.Lock()
		order = append(order, strings.TrimPrefix(msg.Subject(), "q.")+":"+string(msg.Data()))
		mu.Unlock()
		ack(t, msg)
		return true
	}})
	// Everything is dispatched before the worker starts.
	batch, err := e.cons.Fetch(6, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for msg := range batch.Messages() {
		q.Dispatch(msg)
		n++
	}
	if n != 6 {
		t.Fatalf("fetched %d messages, want 6 (%v)", n, batch.Error())
	}
	start(t, q, func(ctx context.Context) error { <-ctx.Done(); return nil })
	waitUntil(t, "six messages processed", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 6 })
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"a:1", "b:1", "a:2", "b:2", "a:3", "b:3"}, order); diff != "" {
		t.Errorf("processing order (-want +got):\n%s", diff)
	}
}

// TestRedeliveredWhileHeld: a copy the server redelivers (its ack wait ran
// out) while the first is in Process is dropped, and so is one of a
// message waiting behind it.
func TestRedeliveredWhileHeld(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Second)
	e.publish(t, "a:1", "a:2")
	release := make(chan struct{})
	var calls atomic.Int64
	q := e.newQueue(t, keyq.Config{Remember: 8, Process: func(ctx context.Context, msg jetstream.Msg, _ *jetstream.MsgMetadata) bool {
		calls.Add(1)
		if string(msg.Data()) == "1" {
			select {
			case <-release:
			case <-ctx.Done():
				return false
			}
		}
		ack(t, msg)
		return true
	}})
	copies := make(chan uint64, 16)
	start(t, q, consume(e.cons, q, func(_ jetstream.Msg, md *jetstream.MsgMetadata, dup bool) {
		if dup != (md.NumDelivered > 1) {
			t.Errorf("delivery %d of message %d: Dispatch reported dup %v", md.NumDelivered, md.Sequence.Stream, dup)
		}
		if md.NumDelivered > 1 {
			send(copies, md.Sequence.Stream)
		}
	}))
	seen := map[uint64]bool{}
	for len(seen) < 2 {
		seen[<-copies] = true
		if n := q.Held(); n != 2 {
			t.Fatalf("%d messages held after a redelivered copy, want 2", n)
		}
	}
	close(release)
	waitUntil(t, "both settled", func() bool { return q.Held() == 0 })
	if n := calls.Load(); n != 2 {
		t.Errorf("Process called %d times for two messages", n)
	}
}

// TestRedeliveredSettled: a copy of a message settled already (its ack
// was lost) is acknowledged again without Process, when the queue
// remembers it; otherwise it is processed again. With NoReack it is only
// dropped: the caller acknowledges later.
func TestRedeliveredSettled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		remember int
		noReack  bool
	}{
		{name: "reack", remember: 8},
		{name: "forgotten"},
		{name: "no reack", remember: 8, noReack: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, time.Second)
			seq := e.publish(t, "a:1")[0]
			var calls atomic.Int64
			q := e.newQueue(t, keyq.Config{Remember: tc.remember, NoReack: tc.noReack,
				Process: func(_ context.Context, msg jetstream.Msg, _ *jetstream.MsgMetadata) bool {
					if calls.Add(1) > 1 {
						ack(t, msg)
					}
					return true // the first time, as if its ack was lost
				}})
			copies := make(chan uint32, 16)
			start(t, q, consume(e.cons, q, func(_ jetstream.Msg, md *jetstream.MsgMetadata, dup bool) {
				// A copy the queue remembers is reported, one it forgot is
				// a message like any other.
				if want := md.NumDelivered > 1 && tc.remember > 0; dup != want {
					t.Errorf("delivery %d: Dispatch reported dup %v, want %v", md.NumDelivered, dup, want)
				}
				if md.NumDelivered > 1 {
					send(copies, uint32(md.NumDelivered))
				}
			}))
			<-copies // dispatched: re-acked, dropped or queued
			switch {
			case tc.remember == 0:
				waitUntil(t, "the copy processed", func() bool { return calls.Load() == 2 })
			case tc.noReack:
				if n := calls.Load(); n != 1 || q.Held() != 0 {
					t.Errorf("copy: Process called %d times, %d held; want 1, 0", n, q.Held())
				}
				// Not acknowledged: it comes again.
				for <-copies < 3 {
				}
				if n := calls.Load(); n != 1 {
					t.Errorf("Process called %d times", n)
				}
				return
			default:
				if n := calls.Load(); n != 1 || q.Held() != 0 {
					t.Errorf("copy: Process called %d times, %d held; want 1, 0", n, q.Held())
				}
			}
			waitUntil(t, "the message acknowledged", func() bool {
				ci := info(t, e.cons)
				return ci.AckFloor.Stream == seq && ci.NumAckPending == 0
			})
		})
	}
}

// TestSameSequenceNewStream: a message of a stream made again, with the
// sequence of one still held from the old stream, is a message of its own.
func TestSameSequenceNewStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Minute)
	e.publish(t, "a:old")
	q := e.newQueue(t, keyq.Config{Process: func(context.Context, jetstream.Msg, *jetstream.MsgMetadata) bool { return true }})
	dispatch := func(cons jetstream.Consumer) *jetstream.MsgMetadata {
		t.Helper()
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if q.Dispatch(msg) {
			t.Errorf("message %q taken for a copy", msg.Data())
		}
		md, _ := msg.Metadata()
		return md
	}
	old := dispatch(e.cons)
	if err := e.js.DeleteStream(t.Context(), "Q"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "Q", Subjects: []string{"q.>"}}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, "a:new")
	nu := dispatch(newConsumer(t, e.js, time.Minute))
	if old.Sequence.Stream != nu.Sequence.Stream {
		t.Fatalf("sequences %d and %d", old.Sequence.Stream, nu.Sequence.Stream)
	}
	if n := q.Held(); n != 2 {
		t.Errorf("%d held, want 2: the new message was taken for a copy of the old", n)
	}
}

// TestKeepAlive: messages held (one in Process, one behind it) past
// three ack waits are not redelivered; without the keep-alive they are.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	const ackWait = time.Second
	for _, keepAlive := range []time.Duration{ackWait / 4, 0} {
		t.Run(keepAlive.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, ackWait)
			e.publish(t, "a:1", "a:2")
			copies := make(chan uint64, 16)
			var held atomic.Int64 // how long message 1 was in Process
			q := e.newQueue(t, keyq.Config{KeepAlive: keepAlive, Remember: 8,
				Process: func(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata) bool {
					if string(msg.Data()) == "1" {
						start := time.Now()
						if keepAlive > 0 {
							// Held well past the ack wait.
							select {
							case <-time.After(3 * ackWait):
							case <-ctx.Done():
								return false
							}
						} else {
							// Until the server gives up on it.
							select {
							case <-copies:
							case <-ctx.Done():
								return false
							}
						}
						held.Store(int64(time.Since(start)))
					}
					ack(t, msg)
					return true
				}})
			start(t, q, consume(e.cons, q, func(_ jetstream.Msg, md *jetstream.MsgMetadata, _ bool) {
				if md.NumDelivered > 1 {
					send(copies, md.Sequence.Stream)
				}
			}))
			waitUntil(t, "both settled", func() bool {
				ci := info(t, e.cons)
				return ci.AckFloor.Stream == 2 && ci.NumAckPending == 0
			})
			ci := info(t, e.cons)
			if keepAlive > 0 && (ci.NumRedelivered != 0 || len(copies) != 0) {
				t.Errorf("held %v with a keep-alive every %v: %d redelivered, %d copies dispatched",
					time.Duration(held.Load()), keepAlive, ci.NumRedelivered, len(copies))
			}
			t.Logf("held %v, %d redelivered", time.Duration(held.Load()), ci.NumRedelivered)
		})
	}
}

// TestNakOnStop: stopping while a Process call is blocked hands back that
// message and those behind it at once (Nak, not the ack wait), in stream
// order; a message dispatched after Run returned is handed back too.
func TestNakOnStop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 10*time.Minute)
	seqs := e.publish(t, "a:1", "b:1", "a:2", "b:2")
	inProcess := make(chan struct{})
	q := e.newQueue(t, keyq.Config{Workers: 1, Process: func(ctx context.Context, msg jetstream.Msg, _ *jetstream.MsgMetadata) bool {
		close(inProcess) // only a:1 gets here
		<-ctx.Done()
		return false
	}})
	stop := start(t, q, consume(e.cons, q, nil))
	<-inProcess
	waitUntil(t, "all four dispatched", func() bool { return q.Held() == 4 })
	stop()
	if n := q.Held(); n != 0 {
		t.Errorf("%d held after Run returned", n)
	}
	// Redelivered long before the ack wait, in stream order.
	batch, err := e.cons.Fetch(4, jetstream.FetchMaxWait(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for msg := range batch.Messages() {
		md, _ := msg.Metadata()
		if md.NumDelivered != 2 {
			t.Errorf("message %d delivered %d times, want 2", md.Sequence.Stream, md.NumDelivered)
		}
		got = append(got, md.Sequence.Stream)
		if len(got) == 1 {
			// Late: handed back at once.
			q.Dispatch(msg)
		} else {
			ack(t, msg)
		}
	}
	if diff := cmp.Diff(seqs, got); diff != "" {
		t.Errorf("redelivered (-want +got):\n%s", diff)
	}
	msg, err := e.cons.Next(jetstream.FetchMaxWait(30 * time.Second))
	if err != nil {
		t.Fatalf("the message dispatched late: %v", err)
	}
	if md, _ := msg.Metadata(); md.Sequence.Stream != seqs[0] || md.NumDelivered != 3 {
		t.Errorf("then message %d (delivery %d), want %d (delivery 3)", md.Sequence.Stream, md.NumDelivered, seqs[0])
	}
}

// TestStopFinishesCallInHand: a Process call in hand when Run's context
// ends is waited for; its message is settled, not handed back, and the
// one behind it is handed back.
func TestStopFinishesCallInHand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 10*time.Minute)
	seqs := e.publish(t, "a:1", "a:2")
	inProcess, release := make(chan struct{}), make(chan struct{})
	q := e.newQueue(t, keyq.Config{Process: func(ctx context.Context, msg jetstream.Msg, _ *jetstream.MsgMetadata) bool {
		close(inProcess) // only a:1 gets here
		<-ctx.Done()
		<-release // finishing what it started, as eventing's calls do
		ack(t, msg)
		return true
	}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx, consume(e.cons, q, nil)) }()
	<-inProcess
	waitUntil(t, "both dispatched", func() bool { return q.Held() == 2 })
	cancel()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	msg, err := e.cons.Next(jetstream.FetchMaxWait(30 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if md, _ := msg.Metadata(); md.Sequence.Stream != seqs[1] || md.NumDelivered != 2 {
		t.Errorf("redelivered message %d (delivery %d), want %d (delivery 2)", md.Sequence.Stream, md.NumDelivered, seqs[1])
	}
	ack(t, msg)
	if ci := info(t, e.cons); ci.AckFloor.Stream < seqs[0] {
		t.Errorf("ack floor %d: the call in hand did not settle its message", ci.AckFloor.Stream)
	}
}

// TestConsumeFails: a consume function that fails ends Run with its error
// after the workers stopped, and what was held is handed back.
func TestConsumeFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 10*time.Minute)
	e.publish(t, "a:1")
	inProcess := make(chan struct{})
	q := e.newQueue(t, keyq.Config{Process: func(ctx context.Context, msg jetstream.Msg, _ *jetstream.MsgMetadata) bool {
		close(inProcess)
		<-ctx.Done()
		return false
	}})
	boom := errors.New("consumer gone")
	err := q.Run(t.Context(), func(ctx context.Context) error {
		msg, err := e.cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			return err
		}
		q.Dispatch(msg)
		<-inProcess
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Run: %v, want the consume error", err)
	}
	msg, err := e.cons.Next(jetstream.FetchMaxWait(30 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if md, _ := msg.Metadata(); md.NumDelivered != 2 {
		t.Errorf("delivery %d, want 2", md.NumDelivered)
	}
	if err := q.Run(t.Context(), func(context.Context) error { return nil }); !errors.Is(err, keyq.ErrRunTwice) {
		t.Errorf("second Run: %v", err)
	}
}

type noConsumer struct{}

func (noConsumer) Info(context.Context) (*jetstream.ConsumerInfo, error) {
	return nil, errors.New("none")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	key := bySubject
	process := func(context.Context, jetstream.Msg, *jetstream.MsgMetadata) bool { return true }
	cases := []struct {
		name string
		cfg  keyq.Config
		want []string
	}{
		{"minimal", keyq.Config{Consumer: noConsumer{}, Key: key, Process: process}, nil},
		{"all at once", keyq.Config{Workers: -1, KeepAlive: -1, Remember: -1},
			[]string{"Consumer", "Key", "Process", "workers", "keep-alive", "remember"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := keyq.New(tc.cfg)
			if len(tc.want) == 0 {
				if err != nil {
					t.Errorf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("New accepted the config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
