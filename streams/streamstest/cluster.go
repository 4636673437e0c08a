package streamstest

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is a JetStream cluster of in-process servers routed over loopback.
type Cluster struct {
	tb      testing.TB
	Servers []*Server
}

// RunCluster starts a JetStream cluster of n servers (n >= 3 for R3 streams)
// and returns once a meta leader is elected and counts every node as a
// peer, so streams of any replica count up to n can be created straight
// away. Every node keeps its own store directory and ports, so
// Restart brings a node back as the same cluster member.
func RunCluster(tb testing.TB, n int, opts ...Option) *Cluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("streamstest: cluster of %d servers", n)
	}
	name := fmt.Sprintf("C%d", time.Now().UnixNano()%1_000_000)
	clusterPorts := make([]int, n)
	routes := make([]*url.URL, n)
	for i := range n {
		clusterPorts[i] = freePort(tb)
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", clusterPorts[i])}
	}
	c := &Cluster{tb: tb}
	for i := range n {
		o := baseOptions(tb, fmt.Sprintf("%s-n%d", name, i))
		o.Port = freePort(tb)
		o.Cluster.Name = name
		o.Cluster.Host = "127.0.0.1"
		o.Cluster.Port = clusterPorts[i]
		o.Routes = routes
		for _, opt := range opts {
			opt(&o)
		}
		s := &Server{tb: tb, opts: o}
		s.start()
		tb.Cleanup(s.Stop)
		c.Servers = append(c.Servers, s)
	}
	c.waitPlacement()
	for _, s := range c.Servers {
		waitJetStream(tb, s.ClientURL())
	}
	return c
}

// URLs is the comma-separated list of every node's client address.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}

// Connect returns a client that knows every node and reconnects forever, so
// it survives losing any single node. It is closed when the test ends.
func (c *Cluster) Connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	return connect(tb, c.URLs())
}

// JetStream returns a JetStream client over a new connection to the cluster.
func (c *Cluster) JetStream(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	return newJetStream(tb, c.Connect(tb))
}

// WaitMetaLeader blocks until a running node is the JetStream meta leader.
func (c *Cluster) WaitMetaLeader() *Server {
	c.tb.Helper()
	return c.waitFor("meta leader", func(s *server.Server) bool { return s.JetStreamIsLeader() })
}

// waitPlacement blocks until the meta leader counts every running node as
// a JetStream peer it can place streams on (it has their stats): before
// that, creating an R3 stream fails with "no suitable peers for placement".
func (c *Cluster) waitPlacement() {
	c.tb.Helper()
	running := 0
	for _, s := range c.Servers {
		if s.srv != nil {
			running++
		}
	}
	c.waitFor("meta leader with "+strconv.Itoa(running)+" peers", func(s *server.Server) bool {
		return s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) >= running
	})
}

// StreamLeader returns the node currently leading stream (in the global
// account), or nil if none does.
func (c *Cluster) StreamLeader(stream string) *Server {
	for _, s := range c.Servers {
		if s.srv != nil && s.srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return s
		}
	}
	return nil
}

// WaitStreamLeader blocks until some running node leads stream.
func (c *Cluster) WaitStreamLeader(stream string) *Server {
	c.tb.Helper()
	return c.waitFor("leader of "+stream, func(s *server.Server) bool {
		return s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream)
	})
}

// RestartAll stops every node and starts them again on their stores, then
// waits for a meta leader that counts every node as a peer.
func (c *Cluster) RestartAll() {
	c.tb.Helper()
	for _, s := range c.Servers {
		s.Stop()
	}
	for _, s := range c.Servers {
		s.start()
	}
	c.waitPlacement()
}

func (c *Cluster) waitFor(what string, ok func(*server.Server) bool) *Server {
	c.tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, s := range c.Servers {
			if s.srv != nil && ok(s.srv) {
				return s
			}
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("streamstest: no %s within 30s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
