package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	crdtpb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/proxy/crdt"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// crdtSidecar is one sidecar replica with its own CRDT test function, as
// in a pod.
type crdtSidecar struct {
	uf     *crdtFunction
	p      *proxy.Proxy
	js     jetstream.JetStream
	client *crdtClient
	stop   func() error
	killed bool // kill ran: Run's error is expected
}

// kill ends the sidecar as a crash would for the others: its NATS
// connection drops first (no graceful leave, its membership expires by
// its TTL), then it stops.
func (s *crdtSidecar) kill() {
	s.killed = true
	s.js.Conn().Close()
	_ = s.stop()
}

// startCRDTSidecar starts a sidecar of service "crdt" on js with a fresh
// test function and waits until it serves.
func startCRDTSidecar(t testing.TB, js jetstream.JetStream, tune func(*proxy.Config)) *crdtSidecar {
	t.Helper()
	uf := newCRDTFunction(t)
	cfg := proxy.Config{
		Storage:            streams.Config{Service: "crdt"},
		Provision:          &streams.StoreConfig{},
		UserFunction:       serveCRDTFunction(t, uf),
		Listen:             "127.0.0.1:0",
		PassivationTimeout: time.Minute,
		CommandTimeout:     10 * time.Second,
		DiscoveryBackoff:   10 * time.Millisecond,
		DrainTimeout:       time.Second,
	}
	if tune != nil {
		tune(&cfg)
	}
	p, err := proxy.New(cfg, js)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Serving():
	case err := <-done:
		t.Fatalf("sidecar stopped before serving: %v", err)
	}
	s := &crdtSidecar{uf: uf, p: p, js: js, client: newCRDTClient(t, p.Addr().String())}
	var stopped bool
	var runErr error
	s.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil && !s.killed {
			t.Errorf("sidecar Run: %v", err)
		}
	})
	return s
}

// Deltas.

func gcounter(n uint64) *crdtpb.CrdtDelta {
	return &crdtpb.CrdtDelta{Delta: &crdtpb.CrdtDelta_Gcounter{Gcounter: &crdtpb.GCounterDelta{Increment: n}}}
}

func pncounter(n int64) *crdtpb.CrdtDelta {
	return &crdtpb.CrdtDelta{Delta: &crdtpb.CrdtDelta_Pncounter{Pncounter: &crdtpb.PNCounterDelta{Change: n}}}
}

func str(s string) *anypb.Any {
	return &anypb.Any{TypeUrl: "p.cloudstate.io/string", Value: protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), s)}
}

func strs(ss ...string) []*anypb.Any {
	out := make([]*anypb.Any, len(ss))
	for i, s := range ss {
		out[i] = str(s)
	}
	return out
}

func orset(add, remove []string) *crdtpb.CrdtDelta {
	return &crdtpb.CrdtDelta{Delta: &crdtpb.CrdtDelta_Orset{Orset: &crdtpb.ORSetDelta{Added: strs(add...), Removed: strs(remove...)}}}
}

func vote(b bool) *crdtpb.CrdtDelta {
	return &crdtpb.CrdtDelta{Delta: &crdtpb.CrdtDelta_Vote{Vote: &crdtpb.VoteDelta{SelfVote: b}}}
}

func flag() *crdtpb.CrdtDelta {
	return &crdtpb.CrdtDelta{Delta: &crdtpb.CrdtDelta_Flag{Flag: &crdtpb.FlagDelta{Value: true}}}
}

// waitValue calls Get on c until the function's value satisfies ok.
func waitValue(t testing.TB, c *crdtClient, key string, what string, ok func(*crdtpb.CrdtDelta) bool) *crdtpb.CrdtDelta {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var last *crdtpb.CrdtDelta
	for {
		v, err := c.call(ctx, "Get", crdtCmd{key: key})
		if err == nil && ok(v) {
			return v
		}
		if err == nil {
			last = v
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: value %v, last error %v", what, last, err)
		case <-time.After(20 * time.Millisecond): // polling a value replicated in the background
		}
	}
}

func TestCRDTOneReplica(t *testing.T) {
	srv := streamstest.RunServer(t)
	s := startCRDTSidecar(t, srv.JetStream(t), nil)
	c := s.client

	if v := c.mustCall("Get", crdtCmd{key: "a"}); v != nil {
		t.Fatalf("new entity has value %v", v)
	}
	for _, n := range []uint64{3, 4} {
		c.mustCall("Apply", crdtCmd{key: "a", delta: gcounter(n)})
	}
	if v := c.mustCall("Apply", crdtCmd{key: "a", delta: gcounter(5), consistency: crdtpb.CrdtWriteConsistency_MAJORITY}); v.GetGcounter().GetIncrement() != 12 {
		t.Fatalf("value %v, want 12", v)
	}
	// A failure changes nothing.
	if _, err := c.call(t.Context(), "Apply", crdtCmd{key: "a", delta: gcounter(100), fail: "no"}); err == nil {
		t.Fatal("failure succeeded")
	}
	if v := c.mustCall("Get", crdtCmd{key: "a"}); v.GetGcounter().GetIncrement() != 12 {
		t.Fatalf("value after failure %v, want 12", v)
	}
	// Delete: answered, the function's stream closed, later commands fail.
	c.mustCall("Apply", crdtCmd{key: "a", delete: true})
	s.uf.waitFor(t, "stream closed after delete", func(_ [][]proto.Message, ended []bool) bool { return len(ended) > 0 && ended[0] })
	if _, err := c.call(t.Context(), "Get", crdtCmd{key: "a"}); err == nil || !strings.Contains(err.Error(), "Entity deleted") {
		t.Fatalf("command after delete: %v, want Entity deleted", err)
	}
}

// TestCRDTTwoReplicas: any replica serves an entity; updates made on one
// reach the other's function as deltas and its open streams; a client
// that cancels a stream gets the function's cancellation update applied.
func TestCRDTTwoReplicas(t *testing.T) {
	srv := streamstest.RunServer(t)
	a := startCRDTSidecar(t, srv.JetStream(t), nil)
	b := startCRDTSidecar(t, srv.JetStream(t), nil)

	a.client.mustCall("Apply", crdtCmd{key: "s", delta: orset([]string{"x", "y"}, nil), consistency: crdtpb.CrdtWriteConsistency_MAJORITY})
	// B activates after A's MAJORITY write: its init carries it.
	if v := b.client.mustCall("Get", crdtCmd{key: "s"}); len(v.GetOrset().GetAdded()) != 2 {
		t.Fatalf("B sees %v, want {x, y}", v)
	}
	// A stream open on B sees A's later updates.
	ctx, cancel := context.WithCancel(t.Context())
	next := b.client.watch(ctx, crdtCmd{key: "s", delta: orset([]string{"bye"}, nil)})
	if v, err := next(); err != nil || len(v.GetOrset().GetAdded()) != 2 {
		t.Fatalf("first streamed value %v, %v", v, err)
	}
	a.client.mustCall("Apply", crdtCmd{key: "s", delta: orset(nil, []string{"x"})})
	for {
		v, err := next()
		if err != nil {
			t.Fatal(err)
		}
		if len(v.GetOrset().GetAdded()) == 1 {
			break // {y}
		}
	}
	// Concurrent add and remove of the same element: the add wins.
	b.client.mustCall("Apply", crdtCmd{key: "s", delta: orset([]string{"z"}, nil), consistency: crdtpb.CrdtWriteConsistency_ALL})
	if v := a.client.mustCall("Get", crdtCmd{key: "s"}); len(v.GetOrset().GetAdded()) != 2 {
		t.Fatalf("A after B's ALL write: %v, want {y, z}", v)
	}
	// The client cancels: the function answers with its cancellation
	// update (add "bye"), which replicates to A.
	cancel()
	waitValue(t, a.client, "s", "the cancellation's update", func(v *crdtpb.CrdtDelta) bool { return len(v.GetOrset().GetAdded()) == 3 })
	b.uf.waitFor(t, "stream_cancelled and its response", func(streams [][]proto.Message, _ []bool) bool {
		var cancelled, answered bool
		for _, s := range streams {
			for _, m := range s {
				switch m := m.(type) {
				case *crdtpb.CrdtStreamIn:
					cancelled = cancelled || m.GetStreamCancelled() != nil
				case *crdtpb.CrdtStreamOut:
					answered = answered || m.GetStreamCancelledResponse() != nil
				}
			}
		}
		return cancelled && answered
	})
}

// TestCRDTVoteFollowsLiveReplicas: each replica has one vote; a replica
// that leaves, gracefully or killed (its membership expires), has none.
func TestCRDTVoteFollowsLiveReplicas(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "graceful", true: "killed"}[kill], func(t *testing.T) {
			srv := streamstest.RunServer(t)
			tune := func(cfg *proxy.Config) { cfg.Provision = &streams.StoreConfig{MemberTTL: 2 * time.Second} }
			a := startCRDTSidecar(t, srv.JetStream(t), tune)
			b := startCRDTSidecar(t, srv.JetStream(t), tune)
			a.client.mustCall("Apply", crdtCmd{key: "v", delta: vote(true), consistency: crdtpb.CrdtWriteConsistency_MAJORITY})
			b.client.mustCall("Apply", crdtCmd{key: "v", delta: vote(true), consistency: crdtpb.CrdtWriteConsistency_MAJORITY})
			waitValue(t, a.client, "v", "two votes for", func(v *crdtpb.CrdtDelta) bool {
				return v.GetVote().GetVotesFor() == 2 && v.GetVote().GetTotalVoters() == 2 && v.GetVote().GetSelfVote()
			})
			if kill {
				b.kill()
			} else if err := b.stop(); err != nil {
				t.Fatal(err)
			}
			waitValue(t, a.client, "v", "B's vote gone", func(v *crdtpb.CrdtDelta) bool {
				return v.GetVote().GetVotesFor() == 1 && v.GetVote().GetTotalVoters() == 1
			})
		})
	}
}

// TestCRDTDurable: the state survives every sidecar and NATS restarting.
func TestCRDTDurable(t *testing.T) {
	srv := streamstest.RunServer(t)
	a := startCRDTSidecar(t, srv.JetStream(t), nil)
	a.client.mustCall("Apply", crdtCmd{key: "d", delta: pncounter(-7), consistency: crdtpb.CrdtWriteConsistency_MAJORITY})
	a.client.mustCall("Apply", crdtCmd{key: "d", delta: pncounter(10)}) // LOCAL: published before the sidecar stops
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	b := startCRDTSidecar(t, srv.JetStream(t), nil)
	if v := b.client.mustCall("Get", crdtCmd{key: "d"}); v.GetPncounter().GetChange() != 3 {
		t.Fatalf("after restarts: %v, want 3", v)
	}
}

// TestCRDTBadInput: a delta of another type than the entity's fails the
// command and restarts the entity with its state intact; a write that
// cannot reach MAJORITY fails with the reference proxy's message.
func TestCRDTBadInput(t *testing.T) {
	srv := streamstest.RunServer(t)
	s := startCRDTSidecar(t, srv.JetStream(t), func(cfg *proxy.Config) { cfg.CRDTWriteTimeout = 300 * time.Millisecond })
	c := s.client
	c.mustCall("Apply", crdtCmd{key: "b", delta: gcounter(2), consistency: crdtpb.CrdtWriteConsistency_MAJORITY})
	_, err := c.call(t.Context(), "Apply", crdtCmd{key: "b", delta: orset([]string{"a"}, nil)})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("wrong-type delta: %v, want UNAVAILABLE", err)
	}
	if v := c.mustCall("Get", crdtCmd{key: "b"}); v.GetGcounter().GetIncrement() != 2 {
		t.Fatalf("after a wrong-type delta: %v, want 2", v)
	}
	// Keys the store cannot take are refused before the function runs.
	if _, err := c.call(t.Context(), "Get", crdtCmd{key: strings.Repeat("k", streams.MaxKeyLen+1)}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("huge key: %v, want INVALID_ARGUMENT", err)
	}
	for _, key := range []string{"a.b", "a b", "*", ">", ""} {
		c.mustCall("Apply", crdtCmd{key: key, delta: gcounter(1)})
	}
	// NATS goes away: MAJORITY cannot be reached.
	srv.Stop()
	_, err = c.call(t.Context(), "Apply", crdtCmd{key: "b", delta: gcounter(1), consistency: crdtpb.CrdtWriteConsistency_MAJORITY})
	if err == nil || !strings.Contains(err.Error(), "Failed to update CRDT at requested write consistency") {
		t.Fatalf("MAJORITY without NATS: %v", err)
	}
	srv.Start()
	// The update stayed applied and replicates once NATS is back.
	waitValue(t, c, "b", "the update after NATS came back", func(v *crdtpb.CrdtDelta) bool { return v.GetGcounter().GetIncrement() == 3 })
}

// TestCRDTFunctionMisbehaves: deltas the state cannot take and a function
// that fails or ends its stream mid-command: a clear failure, open streams
// end with it, the entity restarts with its state intact.
func TestCRDTFunctionMisbehaves(t *testing.T) {
	srv := streamstest.RunServer(t)
	s := startCRDTSidecar(t, srv.JetStream(t), nil)
	c := s.client
	entry := func(key string, d *crdtpb.CrdtDelta) *crdtpb.CrdtDelta {
		return &crdtpb.CrdtDelta{Delta: &crdtpb.CrdtDelta_Ormap{Ormap: &crdtpb.ORMapDelta{Added: []*crdtpb.ORMapEntryDelta{{Key: str(key), Delta: d}}}}}
	}
	update := func(key string, d *crdtpb.CrdtDelta) *crdtpb.CrdtDelta {
		return &crdtpb.CrdtDelta{Delta: &crdtpb.CrdtDelta_Ormap{Ormap: &crdtpb.ORMapDelta{Updated: []*crdtpb.ORMapEntryDelta{{Key: str(key), Delta: d}}}}}
	}
	c.mustCall("Apply", crdtCmd{key: "m", delta: entry("k", gcounter(2)), consistency: crdtpb.CrdtWriteConsistency_MAJORITY})
	want := c.mustCall("Get", crdtCmd{key: "m"})
	for name, cmd := range map[string]crdtCmd{
		"no delta":                  {key: "m", fail: "!raw"},
		"another type":              {key: "m", delta: gcounter(1), fail: "!raw"},
		"an entry of another type":  {key: "m", delta: update("k", orset([]string{"x"}, nil)), fail: "!raw"},
		"a stream-level failure":    {key: "m", fail: "!crash"},
		"a stream ended unanswered": {key: "m", fail: "!exit"},
	} {
		// A delta the state cannot take is reported to the function.
		refused := map[string]string{"no delta": "got none", "another type": "got GCounter", "an entry of another type": "got ORSet"}[name]
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			next := c.watch(ctx, crdtCmd{key: "m"})
			if _, err := next(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.call(t.Context(), "Apply", cmd); status.Code(err) != codes.Unavailable {
				t.Fatalf("got %v, want UNAVAILABLE", err)
			}
			if _, err := next(); status.Code(err) != codes.Unavailable {
				t.Fatalf("open stream: %v, want UNAVAILABLE", err)
			}
			if v := c.mustCall("Get", crdtCmd{key: "m"}); !proto.Equal(v, want) {
				t.Fatalf("state after: %v, want %v", v, want)
			}
			if refused != "" {
				s.uf.waitReported(t, refused)
			}
		})
	}
}

// TestCRDTStreamsOverHTTP: a CRDT's server stream over HTTP/JSON (NDJSON
// and server-sent events) and gRPC-Web, each seeing a later update.
func TestCRDTStreamsOverHTTP(t *testing.T) {
	srv := streamstest.RunServer(t)
	s := startCRDTSidecar(t, srv.JetStream(t), nil)
	base := "http://" + s.p.Addr().String()
	for _, accept := range []string{"application/x-ndjson", "text/event-stream"} {
		t.Run(accept, func(t *testing.T) {
			key := "h-" + strings.ReplaceAll(accept, "/", "-")
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/crdts/"+key+"/watch", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", accept)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			lines := bufio.NewScanner(resp.Body)
			// The first element is the (empty) value now; an update follows.
			s.client.mustCall("Apply", crdtCmd{key: key, delta: gcounter(5)})
			for lines.Scan() {
				if l := lines.Text(); strings.Contains(l, `"value":"`) && !strings.Contains(l, `"value":""`) {
					return // a value with content arrived
				}
			}
			t.Fatalf("stream ended without the update: %v", lines.Err())
		})
	}
	t.Run("grpc-web", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		msg, err := proto.Marshal(s.client.types.command(crdtCmd{key: "web"}))
		if err != nil {
			t.Fatal(err)
		}
		body := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg))), msg...)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/crdttest.Crdt/Watch", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc-web+proto")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		frame := func() *crdtpb.CrdtDelta {
			var head [5]byte
			if _, err := io.ReadFull(r, head[:]); err != nil {
				t.Fatalf("frame: %v", err)
			}
			data := make([]byte, binary.BigEndian.Uint32(head[1:]))
			if _, err := io.ReadFull(r, data); err != nil {
				t.Fatal(err)
			}
			if head[0]&0x80 != 0 {
				t.Fatalf("stream ended: %s", data)
			}
			v, err := s.client.types.parseValue(data)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		if v := frame(); v != nil {
			t.Fatalf("first value %v, want none", v)
		}
		s.client.mustCall("Apply", crdtCmd{key: "web", delta: gcounter(7)})
		if v := frame(); v.GetGcounter().GetIncrement() != 7 {
			t.Fatalf("streamed %v, want 7", v)
		}
	})
}

// TestCRDTStreamsEndAtDrain: a draining sidecar ends its open CRDT streams
// as if their clients had gone (the function is told and its answer
// applied) with UNAVAILABLE, so clients reconnect elsewhere and the drain
// is not held up by subscriptions.
func TestCRDTStreamsEndAtDrain(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	s := startCRDTSidecar(t, js, func(cfg *proxy.Config) { cfg.DrainTimeout = 10 * time.Minute })
	next := s.client.watch(t.Context(), crdtCmd{key: "p", delta: vote(false)})
	if _, err := next(); err != nil {
		t.Fatal(err)
	}
	s.client.mustCall("Apply", crdtCmd{key: "p", delta: vote(true), consistency: crdtpb.CrdtWriteConsistency_MAJORITY})
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	for {
		_, err := next()
		if err == nil {
			continue // the vote's own update
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("stream ended with %v, want UNAVAILABLE", err)
		}
		break
	}
	// The function was told, and its answer (vote false) was stored.
	s.uf.waitFor(t, "stream_cancelled answered", func(streams [][]proto.Message, _ []bool) bool {
		for _, st := range streams {
			for _, m := range st {
				if out, ok := m.(*crdtpb.CrdtStreamOut); ok && out.GetStreamCancelledResponse().GetStateAction().GetUpdate().GetVote() != nil {
					return true
				}
			}
		}
		return false
	})
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	states, _, _, err := mustCRDTs(t, js).Load(t.Context(), streams.Entity{Type: crdtPID, Key: "p"})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range states {
		if st.Replica == proxy.MemberID(s.p) {
			v, err := crdt.Unmarshal(st.Data)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.Value(crdt.Env{Replica: st.Replica}); got.GetVote().GetSelfVote() {
				t.Fatalf("the drained replica's stored vote is still true: %v", got)
			}
			return
		}
	}
	t.Fatal("the drained replica stored no state")
}

func mustCRDTs(t testing.TB, js jetstream.JetStream) *streams.CRDTs {
	t.Helper()
	c, err := streams.NewCRDTs(t.Context(), js, streams.Config{Service: "crdt"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCRDTManyActiveEntities: more active entities than the server allows
// consumers per stream (1,000 by default): a sidecar follows its CRDT
// states with one consumer, not one per entity.
func TestCRDTManyActiveEntities(t *testing.T) {
	srv := streamstest.RunServer(t)
	s := startCRDTSidecar(t, srv.JetStream(t), nil)
	const n = 1100
	for i := range n {
		s.client.mustCall("Apply", crdtCmd{key: fmt.Sprint("k", i), delta: gcounter(1)})
	}
	if got := proxy.ActiveCRDTs(s.p); got != n {
		t.Fatalf("%d active entities, want %d", got, n)
	}
}
