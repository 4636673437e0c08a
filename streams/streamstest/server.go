package streamstest

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// readyTimeout bounds how long a started server may take to accept clients.
const readyTimeout = 60 * time.Second

// Option changes the options a test server starts with.
type Option func(*server.Options)

// WithoutJetStream starts a plain NATS server, for testing how callers
// refuse a server that has no JetStream.
func WithoutJetStream() Option {
	return func(o *server.Options) { o.JetStream = false }
}

// WithSyncAlways makes the server fsync every write before it acknowledges
// it (the `sync_interval: always` durability mode).
func WithSyncAlways() Option {
	return func(o *server.Options) { o.SyncAlways = true }
}

// WithMaxPayload sets the largest message the server accepts.
func WithMaxPayload(n int32) Option {
	return func(o *server.Options) { o.MaxPayload = n }
}

// Server is one in-process nats-server. It keeps its port and store
// directory across Restart, as a real server restarted on its disk would.
type Server struct {
	tb   testing.TB
	opts server.Options
	srv  *server.Server
}

// RunServer starts a single nats-server with JetStream on a random loopback
// port with its store in a fresh temporary directory. It is shut down when
// the test ends.
func RunServer(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	o := baseOptions(tb, "single")
	o.Port = freePort(tb)
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{tb: tb, opts: o}
	s.start()
	tb.Cleanup(s.Stop)
	if o.JetStream {
		waitJetStream(tb, s.ClientURL())
	}
	return s
}

func baseOptions(tb testing.TB, name string) server.Options {
	return server.Options{
		ServerName:            name,
		Host:                  "127.0.0.1",
		JetStream:             true,
		StoreDir:              tb.TempDir(),
		NoLog:                 true,
		NoSigs:                true,
		MaxControlLine:        4096,
		DisableShortFirstPing: true,
	}
}

func (s *Server) start() {
	s.tb.Helper()
	o := s.opts // the server mutates its options; keep ours pristine for restarts
	srv, err := server.NewServer(&o)
	if err != nil {
		s.tb.Fatalf("streamstest: new server %s: %v", s.opts.ServerName, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		s.tb.Fatalf("streamstest: server %s not ready within %v", s.opts.ServerName, readyTimeout)
	}
	s.srv = srv
}

// Name is the server's name (unique within a cluster).
func (s *Server) Name() string { return s.opts.ServerName }

// ClientURL is the nats:// address clients connect to. It stays the same
// across restarts.
func (s *Server) ClientURL() string {
	return fmt.Sprintf("nats://127.0.0.1:%d", s.opts.Port)
}

// StoreDir is the directory holding this server's JetStream data.
func (s *Server) StoreDir() string { return s.opts.StoreDir }

// NATS returns the running server itself, for checks such as
// JetStreamIsStreamLeader. It is nil while the server is stopped.
func (s *Server) NATS() *server.Server { return s.srv }

// Running reports whether the server is up.
func (s *Server) Running() bool { return s.srv != nil }

// Stop shuts the server down abruptly (as a killed process would stop
// answering) and waits until it is gone. Its store stays on disk. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Start starts a stopped server again on the same port and store
// directory, and returns once it accepts clients; JetStream recovers what
// the store holds. Between Stop and Start a test can act while the server
// is down. Starting a running server does nothing.
func (s *Server) Start() {
	s.tb.Helper()
	if s.srv != nil {
		return
	}
	s.start()
}

// Restart stops the server and starts it again (Stop, then Start): clients
// see it go away and come back, but the outage is over when it returns.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	s.Start()
}

// Connect returns a client connected to this server that reconnects forever
// (so it survives restarts) and is closed when the test ends.
func (s *Server) Connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	return connect(tb, s.ClientURL())
}

// JetStream returns a JetStream client over a new connection to this server.
func (s *Server) JetStream(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	return newJetStream(tb, s.Connect(tb))
}

func connect(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(-1), // fail publishes while disconnected instead of buffering them
	)
	if err != nil {
		tb.Fatalf("streamstest: connect %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

func newJetStream(tb testing.TB, nc *nats.Conn) jetstream.JetStream {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("streamstest: jetstream: %v", err)
	}
	return js
}

// waitJetStream polls until the JetStream API answers on url.
func waitJetStream(tb testing.TB, url string) {
	tb.Helper()
	nc := connect(tb, url)
	defer nc.Close()
	js := newJetStream(tb, nc)
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("streamstest: JetStream at %s not ready: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort asks the kernel for an unused loopback port. The port is closed
// again before the server binds it; a clash is possible but rare.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("streamstest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
