package projections_test

import (
	"encoding/json"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// cutProxy is a TCP proxy in front of a server whose connections a test
// can cut so that what is in flight is lost, as when a network path dies:
// the clients' bytes go into the void for a while, then the connections
// close and the clients reconnect through the proxy.
type cutProxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	links   []*link
	dropped atomic.Int64  // bytes from clients dropped by cuts
	notify  chan struct{} // a client's bytes were dropped
}

// link is one proxied connection.
type link struct {
	client, server net.Conn
	cut            atomic.Bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, notify: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	wg.Go(func() { p.accept(&wg) })
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, l := range p.links {
			_ = l.client.Close()
			_ = l.server.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	return p
}

// url is the proxy's address for nats.Connect.
func (p *cutProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *cutProxy) accept(wg *sync.WaitGroup) {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		l := &link{client: c, server: s}
		p.mu.Lock()
		p.links = append(p.links, l)
		p.mu.Unlock()
		wg.Go(func() { p.pipe(l, c, s, true) })
		wg.Go(func() { p.pipe(l, s, c, false) })
	}
}

func (p *cutProxy) pipe(l *link, from, to net.Conn, fromClient bool) {
	defer func() {
		_ = from.Close()
		_ = to.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			if !l.cut.Load() {
				if _, err := to.Write(buf[:n]); err != nil {
					return
				}
			} else if fromClient {
				p.dropped.Add(int64(n))
				select {
				case p.notify <- struct{}{}:
				default:
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// cut drops everything the proxy's current connections carry, in both
// directions, until the clients have sent at least minDrop bytes more into
// the void; then it closes those connections.
func (p *cutProxy) cut(t *testing.T, minDrop int64) {
	t.Helper()
	p.mu.Lock()
	links := p.links
	p.links = nil
	p.mu.Unlock()
	base := p.dropped.Load()
	for _, l := range links {
		l.cut.Store(true)
	}
	deadline := time.After(30 * time.Second)
	for p.dropped.Load()-base < minDrop {
		select {
		case <-p.notify:
		case <-deadline:
			t.Fatalf("the clients sent %d bytes after the cut, want %d", p.dropped.Load()-base, minDrop)
		}
	}
	for _, l := range links {
		_ = l.client.Close()
		_ = l.server.Close()
	}
}

// connectVia connects to url like streamstest does (reconnecting forever,
// no buffering while disconnected).
func connectVia(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestConnectionCut cuts a projector's connection while it publishes to a
// NATS sink and events keep being appended, so that journal messages
// delivered to it and events it published are lost in flight: the sink's
// connection alone, or the one connection it consumes, publishes and
// acknowledges on; with cumulative acknowledgements or one each. No event
// may be acknowledged unpublished: every event arrives, each entity's in
// order.
func TestConnectionCut(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		shared, ackEach bool
	}{{false, false}, {true, false}, {false, true}, {true, true}} {
		name := "sink connection"
		if tc.shared {
			name = "shared connection"
		}
		if tc.ackEach {
			name += ", AckEach"
		}
		shared := tc.shared
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			const entities = 20
			want := appendMany(t, e, entities, 20)
			proxy := newCutProxy(t, e.srv.ClientURL()[len("nats://"):])
			rec := subscribe(t, e.srv.Connect(t), "view.events")
			js := e.js
			sinkConn := connectVia(t, proxy.url())
			if shared {
				var err error
				if js, err = jetstream.New(sinkConn); err != nil {
					t.Fatal(err)
				}
			}
			sink, err := projections.NewNATSSink(sinkConn, projections.NATSSinkConfig{Subject: "view.events"})
			if err != nil {
				t.Fatal(err)
			}
			cfg := e.config("view", sink)
			cfg.MaxTries = 1_000_000 // publishes fail while disconnected: never dead-letter
			cfg.AckEach = tc.ackEach
			cfg.Logger = testLogger(t)
			p, err := projections.New(js, cfg)
			if err != nil {
				t.Fatal(err)
			}
			pr := run(t, p.Run)
			// More events all along, so that some are in flight at the cut.
			stop := make(chan struct{})
			var writer sync.WaitGroup
			writer.Go(func() {
				for n := want["k0"] + 1; ; n++ {
					for k := range entities {
						select {
						case <-stop:
							return
						default:
						}
						key := "k" + strconv.Itoa(k)
						e.appendEvents(t, streams.Entity{Type: "cart", Key: key}, strEvent(key))
						want[key] = n
					}
				}
			})
			rec.waitCount(t, entities*10)
			proxy.cut(t, 1)
			close(stop)
			writer.Wait()
			total := 0
			for _, n := range want {
				total += int(n)
			}
			evs := rec.waitCount(t, total)
			if err := pr.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkOrder(t, evs, want)
			t.Logf("%d events, %d repeated, %d bytes dropped", len(distinct(evs)), len(evs)-len(distinct(evs)), proxy.dropped.Load())
		})
	}
}

// TestClusterLeaderChange projects an R3 journal while the consumer's
// leader moves in the middle of the backlog: once asked to step down, once
// killed (with the server the projector may be connected to). Every event
// arrives, each entity's in order.
func TestClusterLeaderChange(t *testing.T) {
	t.Parallel()
	c := streamstest.RunCluster(t, 3)
	js := c.JetStream(t)
	storage := streams.Config{Service: "shop"}
	if err := streams.Provision(t.Context(), js, storage, streams.StoreConfig{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	j, err := streams.NewJournal(js, storage)
	if err != nil {
		t.Fatal(err)
	}
	const entities, rounds = 10, 200
	want := map[string]uint64{}
	var versions [entities]streams.Version
	for i := range rounds {
		for k := range entities {
			key := "k" + strconv.Itoa(k)
			v, err := j.Append(t.Context(), streams.Entity{Type: "cart", Key: key}, versions[k], []streams.Event{strEvent(key)})
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			versions[k], want[key] = v, uint64(i+1)
		}
	}
	// A recorder on each server, connected to it alone: the sink publishes
	// on core NATS, so a subscriber whose server is stopped misses what is
	// published until it has reconnected elsewhere. The recorders of the
	// servers left running see every event.
	recs := make([]*recorder, len(c.Servers))
	for i, s := range c.Servers {
		recs[i] = subscribe(t, s.Connect(t), "view.events")
	}
	rec := recs[0] // until a server is stopped
	pjs := c.JetStream(t)
	sink, err := projections.NewNATSSink(pjs.Conn(), projections.NATSSinkConfig{Subject: "view.events"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := projections.New(pjs, projections.Config{
		Storage: storage, Name: "view", Sink: sink,
		InfoInterval: 50 * time.Millisecond, RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		MaxTries: 1_000_000, // publishes fail while reconnecting: never dead-letter
		Logger:   testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	pr := run(t, p.Run)
	consumer := p.ConsumerName(1)

	rec.waitCount(t, entities*rounds/4)
	resp, err := js.Conn().RequestWithContext(t.Context(), "$JS.API.CONSUMER.LEADER.STEPDOWN."+storage.JournalStream()+"."+consumer, nil)
	if err != nil {
		t.Fatalf("step down: %v", err)
	}
	var r struct {
		Success bool `json:"success"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil || !r.Success {
		t.Fatalf("step down: %s", resp.Data)
	}

	rec.waitCount(t, entities*rounds/2)
	var leader *streamstest.Server
	waitUntil(t, "a consumer leader", func() bool {
		for _, s := range c.Servers {
			if s.Running() && s.NATS().JetStreamIsConsumerLeader(server.DEFAULT_GLOBAL_ACCOUNT, storage.JournalStream(), consumer) {
				leader = s
			}
		}
		return leader != nil
	})
	for i, s := range c.Servers {
		if s != leader {
			rec = recs[i]
		}
	}
	leader.Stop()

	evs := rec.waitCount(t, entities*rounds)
	if err := pr.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkOrder(t, evs, want)
	t.Logf("%d events, %d repeated", len(distinct(evs)), len(evs)-len(distinct(evs)))
}
