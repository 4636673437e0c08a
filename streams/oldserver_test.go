package streams_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams"
)

// TestRefusesOldServer runs a real nats-server older than MinAPILevel
// (Debian's 2.9 package, which .ci/run installs) and checks that jetstate
// refuses it with a clear error instead of misbehaving later.
func TestRefusesOldServer(t *testing.T) {
	bin := os.Getenv("JETSTATE_OLD_NATS_SERVER")
	if bin == "" {
		bin = "/usr/sbin/nats-server"
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("old nats-server %s missing in CI: %v", bin, err)
		}
		t.Skipf("no old nats-server at %s (apt-get install nats-server)", bin)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	var nc *nats.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		if nc, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old server did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = streams.CheckServer(t.Context(), js)
	if !errors.Is(err, streams.ErrUnsupportedServer) {
		t.Fatalf("CheckServer against %s = %v, want ErrUnsupportedServer", nc.ConnectedServerVersion(), err)
	}
	t.Logf("refused %s: %v", nc.ConnectedServerVersion(), err)
	if err := streams.Provision(t.Context(), js, streams.Config{Service: "old"}, streams.StoreConfig{}); !errors.Is(err, streams.ErrUnsupportedServer) {
		t.Fatalf("Provision = %v, want ErrUnsupportedServer", err)
	}
}
