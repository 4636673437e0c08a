// Package embedded runs a nats-server with JetStream inside the jetstate
// process, for the one-machine set-up (`make run`) where nothing else is
// installed. Production deployments use a NATS cluster instead.
//
// The server admits one client identity only: an nkey user whose seed is
// made at the first start and kept in the store directory (SeedFile, mode
// 0600), then reused. A client proves it holds the seed by signing the
// server's nonce (the seed never crosses the wire): nats.go's
// NkeyOptionFromSeed(SeedFile(dir)), `nats --nkey <file>`. Any other
// connection is refused, so a local process that cannot read the store
// directory cannot read or write the streams.
package embedded

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// SeedFileName is the file in the store directory holding the seed of the
// nkey user the server admits.
const SeedFileName = "nats.nkey"

// SeedFile is the file holding the seed of the nkey user that the embedded
// server with store directory storeDir admits.
func SeedFile(storeDir string) string { return filepath.Join(storeDir, SeedFileName) }

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
	srv  *server.Server
	seed string
}

// Start starts the server and returns once it accepts clients: those that
// sign with the seed in SeedFile(cfg.StoreDir), which is made (mode 0600)
// if it does not exist yet.
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
	seed := SeedFile(cfg.StoreDir)
	user, err := loadOrCreateUser(seed)
	if err != nil {
		return nil, fmt.Errorf("embedded: credentials: %w", err)
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
		Nkeys:      []*server.NkeyUser{{Nkey: user}},
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(cfg.ReadyTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded: server on %s:%d not ready within %v (port in use?)", cfg.Host, cfg.Port, cfg.ReadyTimeout)
	}
	return &Server{srv: srv, seed: seed}, nil
}

// ClientURL is the address clients connect to.
func (s *Server) ClientURL() string { return s.srv.ClientURL() }

// SeedFile is the file with the seed that clients sign with.
func (s *Server) SeedFile() string { return s.seed }

// Version is the nats-server version.
func (s *Server) Version() string { return server.VERSION }

// Shutdown stops the server and waits until it is gone.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// loadOrCreateUser returns the public key of the nkey user whose seed is
// in path, making a new user (mode 0600, written whole or not at all) if
// the file does not exist. A file that others may read is refused: its
// seed may be known.
func loadOrCreateUser(path string) (string, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		// Made here, or by a process starting beside us (fs.ErrExist).
		if err := createUser(path); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", err
		}
		fi, err = os.Stat(path)
	}
	if err != nil {
		return "", err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return "", fmt.Errorf("%s can be read by others (mode %v): remove it to make new credentials, or chmod 600 it", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	defer clear(b)
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}

// createUser writes the seed of a new nkey user to path, which must not
// exist (fs.ErrExist otherwise), with mode 0600: a temporary file in the
// same directory is written and synced, then linked to path.
func createUser(path string) error {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return err
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), SeedFileName+".*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(seed, '\n'))
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Link(tmp.Name(), path)
}
