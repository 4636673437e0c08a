package embedded_test

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/embedded"
)

// connect connects to s with the seed it made.
func connect(t *testing.T, s *embedded.Server) *nats.Conn {
	t.Helper()
	opt, err := nats.NkeyOptionFromSeed(s.SeedFile())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestStartServesJetStream(t *testing.T) {
	s, err := embedded.Start(embedded.Config{Port: -1, StoreDir: t.TempDir(), SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	js, err := jetstream.New(connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := streams.CheckServer(t.Context(), js); err != nil {
		t.Fatalf("CheckServer: %v", err)
	}
}

// TestAuthentication: the server admits only the nkey user whose seed it
// made at the first start (mode 0600) and reuses at the next.
func TestAuthentication(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.Start(embedded.Config{Port: -1, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()

	// Refused: no credentials, and an nkey of someone else.
	if nc, err := nats.Connect(s.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials was admitted")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("a client without credentials: %v, want an authorization violation", err)
	}
	other, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := other.PublicKey()
	if nc, err := nats.Connect(s.ClientURL(), nats.Nkey(pub, other.Sign)); err == nil {
		nc.Close()
		t.Fatal("a client with another nkey was admitted")
	}

	// The seed file: in the store directory, mode 0600, a user seed.
	if s.SeedFile() != filepath.Join(dir, embedded.SeedFileName) || embedded.SeedFile(dir) != s.SeedFile() {
		t.Fatalf("seed file %s, want it in %s", s.SeedFile(), dir)
	}
	fi, err := os.Stat(s.SeedFile())
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("seed file mode %v, want 0600", perm)
	}
	seed, err := os.ReadFile(s.SeedFile())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(seed), "SU") {
		t.Fatalf("seed file holds %.2q..., want a user seed", seed)
	}

	// Admitted with it: the streams work.
	js, err := jetstream.New(connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "kept", Subjects: []string{"kept"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), "kept", []byte("x")); err != nil {
		t.Fatal(err)
	}

	// The next start over the same store reuses the seed.
	s.Shutdown()
	s, err = embedded.Start(embedded.Config{Port: -1, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if again, err := os.ReadFile(s.SeedFile()); err != nil || string(again) != string(seed) {
		t.Fatalf("seed after a restart: %v (changed: %t)", err, string(again) != string(seed))
	}
	js, err = jetstream.New(connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := js.Stream(t.Context(), "kept"); err != nil || st.CachedInfo().State.Msgs != 1 {
		t.Fatalf("stream after a restart: %v", err)
	}
	if nc, err := nats.Connect(s.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("after a restart, a client without credentials was admitted")
	}
}

// TestStartRefusesExposedSeed: a seed file that others can read may be
// known; the server does not start with it.
func TestStartRefusesExposedSeed(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.Start(embedded.Config{Port: -1, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	if err := os.Chmod(embedded.SeedFile(dir), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := embedded.Start(embedded.Config{Port: -1, StoreDir: dir}); err == nil {
		s.Shutdown()
		t.Fatal("started with a seed file of mode 0644")
	} else if !strings.Contains(err.Error(), "can be read by others") {
		t.Fatalf("start with a seed file of mode 0644: %v", err)
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	if _, err := embedded.Start(embedded.Config{Port: -1}); err == nil {
		t.Fatal("Start without StoreDir succeeded")
	}
	first, err := embedded.Start(embedded.Config{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Shutdown()
	// The same port twice: the second must fail, not hang.
	u, err := url.Parse(first.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	if s, err := embedded.Start(embedded.Config{Port: port, StoreDir: t.TempDir(), ReadyTimeout: time.Second}); err == nil {
		s.Shutdown()
		t.Fatal("second server on the same port started")
	}
}
