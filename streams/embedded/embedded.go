// Package embedded runs a nats-server with JetStream inside the jetstate
// process, for the one-machine set-up (`make run`) where nothing else is
// installed. Production deployments use a NATS cluster instead.
package embedded

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Defaults for Config fields left zero.
const (
	DefaultHost = "127.0.0.1"
	DefaultPort = 4222
)

// Config says how to run the embedded server.
type Config struct {
	// Host to listen on. Default 127.0.0.1 (this machine only).
	Host string
	// Port for clients; -1 picks a free one. Default 4222.
	Port int
	// StoreDir holds JetStream's data; required.
	StoreDir string
	// SyncAlways fsyncs every write before acknowledging it (the
	// "always" durability mode). Default: the server's periodic sync.
	SyncAlways bool
	// ReadyTimeout bounds start-up. Default 10s.
	ReadyTimeout time.Duration
}

// Server is a running embedded nats-server.
type Server struct {
	srv *server.Server
}

// Start starts the server and returns once it accepts clients.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded: StoreDir is required")
	}
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "jetstate-embedded",
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(cfg.ReadyTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded: server on %s:%d not ready within %v (port in use?)", cfg.Host, cfg.Port, cfg.ReadyTimeout)
	}
	return &Server{srv: srv}, nil
}

// ClientURL is the address clients connect to.
func (s *Server) ClientURL() string { return s.srv.ClientURL() }

// Version is the nats-server version.
func (s *Server) Version() string { return server.VERSION }

// Shutdown stops the server and waits until it is gone.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}
