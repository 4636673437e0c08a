package shoppingcart_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/jetstate/jetstate/examples/shoppingcart/cartload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// TestKillsLoseNoAcknowledgedAdd runs the real binaries as processes: the
// cart function and `jetstate proxy` with its embedded NATS server, under a
// steady load of adds, and kills each of them with SIGKILL at random
// moments, three times, restarting it at once. Every add the sidecar
// acknowledged must be in its cart afterwards, once; an add refused before
// it ran must not be. Only the sidecar's flags and the cart's public API
// are used, so the test does not depend on how the embedded server is set
// up.
func TestKillsLoseNoAcknowledgedAdd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binaries")
	}
	bin := t.TempDir()
	jetstate := buildBinary(t, bin, "github.com/jetstate/jetstate/cmd/jetstate")
	cart := buildBinary(t, bin, "github.com/jetstate/jetstate/examples/shoppingcart/cmd/shoppingcart")
	ports := freePorts(t, 4)
	ingress, fn, admin, natsPort := ports[0], ports[1], ports[2], ports[3]
	function := newProcess(t, "cart", []string{cart}, []string{"HOST=127.0.0.1", "PORT=" + fn})
	sidecar := newProcess(t, "sidecar", []string{jetstate, "proxy",
		"-service", "shoppingcart", "-port", ingress, "-user-function-host", "127.0.0.1", "-user-function-port", fn,
		"-admin", "127.0.0.1:" + admin, "-embedded-nats-port", natsPort, "-data", t.TempDir(),
		// A killed sidecar's shards are free once its membership
		// expires; the restarted one waits that long.
		"-member-ttl", "2s", "-command-timeout", "5s", "-route-timeout", "10s",
	}, nil)
	function.start()
	sidecar.start()
	ready := func() bool {
		resp, err := http.Get("http://127.0.0.1:" + admin + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	waitFor(t.Context(), t, "ready sidecar", ready)

	conn, err := grpc.NewClient("127.0.0.1:"+ingress, grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect quickly to a restarted sidecar.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	users := []string{"ann", "ben", "cid"}
	load := cartload.Start(t.Context(), cartload.Config{Conn: conn, Users: users})
	t.Cleanup(load.Stop)
	// waitMore waits for n more adds that succeeded (ok) or failed (a
	// minute is a failsafe).
	waitMore := func(ok bool, n int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := load.WaitMore(ctx, ok, n); err != nil {
			t.Fatal(err)
		}
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	victims := []*process{sidecar, sidecar, sidecar, function, function, function}
	rng.Shuffle(len(victims), func(i, j int) { victims[i], victims[j] = victims[j], victims[i] })
	for _, p := range victims {
		// A random moment: after a random number of further acknowledged
		// adds.
		waitMore(true, 5+rng.IntN(40))
		acked := load.Count(true)
		p.kill9()
		killed := time.Now()
		// Adds run into the dead process before it comes back.
		waitMore(false, 1)
		p.start()
		if p == sidecar {
			waitFor(t.Context(), t, "ready sidecar", ready)
		}
		waitMore(true, 1)
		t.Logf("killed the %s after %d adds acknowledged; adds acknowledged again %v after the kill",
			p.name, acked, time.Since(killed).Round(time.Millisecond))
	}
	waitMore(true, 20) // and adds go through again
	load.Stop()

	var carts map[string]map[string]int32
	waitFor(t.Context(), t, "the carts", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		var err error
		if carts, err = cartload.Carts(ctx, conn, users); err != nil {
			t.Logf("reading the carts: %v", err)
			return false
		}
		return true
	})
	problems, phases := cartload.Check(load.Ops(), carts)
	for _, p := range problems {
		t.Error(p)
	}
	for _, s := range phases {
		t.Logf("%d adds: %d acknowledged, %d refused before running, %d of unknown outcome", s.Sent, s.Applied, s.NotApplied, s.Ambiguous)
		for e, n := range s.Errors {
			t.Logf("  %d x %s", n, e)
		}
	}
}
