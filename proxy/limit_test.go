package proxy_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/streams"
)

// streamClosed reports whether the n-th stream (from 0) opened for entity
// key was closed by the sidecar the graceful way: the function saw its
// side end (EOF), which an aborted stream does not show.
func streamClosed(key string, n int) func([]record) bool {
	return func(rs []record) bool {
		ids := streamIDs(rs, key)
		if len(ids) <= n {
			return false
		}
		for _, r := range rs {
			if r.stream == ids[n] && r.closed {
				return true
			}
		}
		return false
	}
}

// streamIDs lists the streams opened for entity key, in order.
func streamIDs(rs []record, key string) []int {
	var ids []int
	for _, r := range rs {
		if r.stream != 0 && entityOf(r) == key {
			ids = append(ids, r.stream)
		}
	}
	return ids
}

// gotCommand reports whether the function got command name for key.
func gotCommand(key, name string) func([]record) bool {
	return func(rs []record) bool {
		for _, r := range rs {
			if in, ok := r.in.(*eventsourced.EventSourcedStreamIn); ok && in.GetCommand().GetName() == name && in.GetCommand().GetEntityId() == key {
				return true
			}
		}
		return false
	}
}

// TestActiveEntityLimit: with MaxActiveEntities 2, the command that needs
// a third entity first passivates the least recently used one, the
// graceful way (the function sees its stream end), counted in
// jetstate_proxy_entity_evictions_total; the passivated entity's next
// command finds its state, recovered from its snapshot and journal. Value
// entities share the limit with event-sourced ones.
func TestActiveEntityLimit(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := startHarness(t, func(c *proxy.Config) {
		c.MaxActiveEntities = 2
		c.Registry = reg
		c.CommandTimeout = 30 * time.Second
	})
	h.mustCall("Counter/Add", "a", ptr(3), 3)
	for i, n := range []int64{4, 1, 1, 2} { // a snapshot at the third event (6), then one more
		h.mustCall("Counter/Add", "b", ptr(n), []int64{4, 5, 6, 8}[i])
	}
	h.mustCall("Counter/Get", "a", nil, 3) // b is now the least recently used
	h.mustCall("Counter/Add", "c", ptr(7), 7)
	h.uf.waitRecords(t, "b passivated", streamClosed("b", 0))
	if streamClosed("a", 0)(h.uf.recorded()) {
		t.Fatal("a was passivated, b was the least recently used")
	}
	if got := gather(t, reg, "jetstate_proxy_entity_evictions_total", "service", "test.Counter"); got != 1 {
		t.Fatalf("evictions = %v, want 1", got)
	}
	if got := gather(t, reg, "jetstate_proxy_active_entities", "service", "test.Counter"); got != 2 {
		t.Fatalf("active entities = %v, want 2", got)
	}

	// b comes back from its snapshot and the event after it; a, now the
	// least recently used, makes room.
	h.mustCall("Counter/Get", "b", nil, 8)
	h.uf.waitRecords(t, "a passivated", streamClosed("a", 0))
	streams := h.streamsOf("b")
	if len(streams) != 2 {
		t.Fatalf("b had %d streams, want 2", len(streams))
	}
	init := streams[1][0].in.(*eventsourced.EventSourcedStreamIn).GetInit()
	if snap := init.GetSnapshot(); snap.GetSnapshotSequence() != 3 || h.types.intField("Value", "n", snap.GetSnapshot().GetValue()) != 6 {
		t.Fatalf("b re-activated with snapshot %v, want the one at sequence 3 (6)", snap)
	}
	if ev := streams[1][1].in.(*eventsourced.EventSourcedStreamIn).GetEvent(); ev.GetSequence() != 4 {
		t.Fatalf("b's first message after init = %v, want event 4", streams[1][1].in)
	}
	h.mustCall("Counter/Add", "b", ptr(1), 9)

	// A value entity takes a place too: c, the least recently used, goes.
	h.mustCall("Register/Set", "r", ptr(5), 5)
	h.uf.waitRecords(t, "c passivated", streamClosed("c", 0))
	h.mustCall("Register/Get", "r", nil, 5)
	if got := gather(t, reg, "jetstate_proxy_entity_evictions_total", "service", "test.Counter"); got != 3 {
		t.Fatalf("evictions = %v, want 3", got)
	}
	h.mustCall("Counter/Get", "a", nil, 3)
	h.mustCall("Counter/Get", "c", nil, 7)
}

// TestActiveEntityLimitSparesBusyEntities: an entity with a command in the
// function is never passivated for the limit, even when it was used less
// recently than the idle one that goes instead; when every active entity
// is busy, a command for another one is refused at once with
// RESOURCE_EXHAUSTED, having run nothing, and succeeds when retried once an
// entity is idle again.
func TestActiveEntityLimitSparesBusyEntities(t *testing.T) {
	h := startHarness(t, func(c *proxy.Config) {
		c.MaxActiveEntities = 2
		c.CommandTimeout = 30 * time.Second
	})
	h.mustCall("Counter/Add", "w", ptr(1), 1)
	h.mustCall("Counter/Add", "i", ptr(2), 2)
	waits := make(chan error, 2)
	wait := func(key string, want int64) {
		got, err := h.call("Counter/Wait", key, nil)
		if err == nil && got != want {
			err = status.Errorf(codes.Internal, "Wait(%s) = %d, want %d", key, got, want)
		}
		waits <- err
	}
	go wait("w", 1)
	h.uf.waitRecords(t, "w's Wait in the function", gotCommand("w", "Wait"))

	// w, busy, is the least recently used; i goes.
	h.mustCall("Counter/Add", "x", ptr(3), 3)
	h.uf.waitRecords(t, "i passivated", streamClosed("i", 0))

	// Both active entities busy: y is refused, nothing runs.
	go wait("x", 3)
	h.uf.waitRecords(t, "x's Wait in the function", gotCommand("x", "Wait"))
	_, err := h.call("Counter/Get", "y", nil)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "too many active entities") {
		t.Fatalf("Get(y) with every entity busy = %v, want RESOURCE_EXHAUSTED (too many active entities)", err)
	}
	rs := h.uf.recorded()
	if ids := streamIDs(rs, "y"); len(ids) != 0 {
		t.Fatalf("y was activated (%d streams) though refused", len(ids))
	}
	if streamClosed("w", 0)(rs) || streamClosed("x", 0)(rs) {
		t.Fatal("a busy entity was passivated")
	}

	// Once one is idle again, the retry succeeds.
	h.uf.release <- struct{}{}
	if err := <-waits; err != nil {
		t.Fatalf("Wait: %v", err)
	}
	h.mustCall("Counter/Get", "y", nil, 0)
	h.uf.release <- struct{}{}
	if err := <-waits; err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestActiveEntityLimitMustNotBeNegative(t *testing.T) {
	_, err := proxy.New(proxy.Config{Storage: streams.Config{Service: "test"}, MaxActiveEntities: -1}, nil)
	if err == nil || !strings.Contains(err.Error(), "max active entities") {
		t.Fatalf("New with MaxActiveEntities -1 = %v, want an error naming it", err)
	}
}

// TestActiveEntityLimitUnderLoad: clients outnumbering the limit, each
// going from entity to entity, so that entities are passivated for the
// limit all the time while others activate, run and go idle: every command
// either runs or is refused as too many active (and is retried), no add is
// lost or doubled, and the sidecar ends within the limit.
func TestActiveEntityLimitUnderLoad(t *testing.T) {
	const limit, clients, keys, adds = 3, 6, 12, 40
	reg := prometheus.NewRegistry()
	h := startHarness(t, func(c *proxy.Config) {
		c.MaxActiveEntities = limit
		c.Registry = reg
		c.CommandTimeout = 30 * time.Second
	})
	var mu sync.Mutex
	acked := map[string]int64{}
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for j := range adds {
				key := fmt.Sprint("k", (i*7+j)%keys)
				for {
					_, err := h.call("Counter/Add", key, ptr(1))
					if status.Code(err) == codes.ResourceExhausted {
						continue // every active entity was busy: nothing ran
					}
					if err != nil {
						t.Errorf("Add(%s): %v", key, err)
						return
					}
					mu.Lock()
					acked[key]++
					mu.Unlock()
					break
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if got := gather(t, reg, "jetstate_proxy_active_entities", "service", "test.Counter"); got > limit {
		t.Errorf("%v active entities, limit %d", got, limit)
	}
	if got := gather(t, reg, "jetstate_proxy_entity_evictions_total", "service", "test.Counter"); got == 0 {
		t.Error("no entity was passivated for the limit")
	}
	for key, n := range acked {
		h.mustCall("Counter/Get", key, nil, n)
	}
}
