package shoppingcart_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/examples/shoppingcart"
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
	load := startCartLoad(t, conn, []string{"ann", "ben", "cid"})

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	victims := []*process{sidecar, sidecar, sidecar, function, function, function}
	rng.Shuffle(len(victims), func(i, j int) { victims[i], victims[j] = victims[j], victims[i] })
	for _, p := range victims {
		// A random moment: after a random number of further acknowledged
		// adds.
		load.waitAcked(5 + rng.IntN(40))
		acked := load.count(true)
		p.kill9()
		killed := time.Now()
		// Adds run into the dead process before it comes back.
		load.waitFailed(1)
		p.start()
		if p == sidecar {
			waitFor(t.Context(), t, "ready sidecar", ready)
		}
		load.waitAcked(1)
		t.Logf("killed the %s after %d adds acknowledged; adds acknowledged again %v after the kill",
			p.name, acked, time.Since(killed).Round(time.Millisecond))
	}
	load.waitAcked(20) // and adds go through again
	load.stop()

	carts := map[string]map[string]int32{}
	for _, user := range load.users {
		waitFor(t.Context(), t, "cart of "+user, func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var c shoppingcart.Cart
			if err := conn.Invoke(ctx, svc+"GetCart", &shoppingcart.GetShoppingCart{UserId: user}, &c); err != nil {
				t.Logf("GetCart %s: %v", user, err)
				return false
			}
			carts[user] = map[string]int32{}
			for _, it := range c.GetItems() {
				carts[user][it.GetProductId()] = it.GetQuantity()
			}
			return true
		})
	}
	load.check(carts)
}

// cartOp is one add of the load: a product of its own, quantity 1.
type cartOp struct {
	user, product string
	err           error
}

// cartLoad runs one sequential client per user, adding a new product at a
// steady pace, and records every answer.
type cartLoad struct {
	t      *testing.T
	conn   *grpc.ClientConn
	users  []string
	notify chan struct{}

	mu  sync.Mutex
	ops []cartOp

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startCartLoad(t *testing.T, conn *grpc.ClientConn, users []string) *cartLoad {
	ctx, cancel := context.WithCancel(t.Context())
	l := &cartLoad{t: t, conn: conn, users: users, notify: make(chan struct{}, 1), cancel: cancel}
	for _, user := range users {
		l.wg.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				product := fmt.Sprintf("%s-%d", user, i)
				cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := conn.Invoke(cctx, svc+"AddItem",
					&shoppingcart.AddLineItem{UserId: user, ProductId: product, Name: strings.ToUpper(product), Quantity: 1}, &emptypb.Empty{})
				cancel()
				l.mu.Lock()
				l.ops = append(l.ops, cartOp{user: user, product: product, err: err})
				l.mu.Unlock()
				select {
				case l.notify <- struct{}{}:
				default:
				}
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

func (l *cartLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

// count is the number of adds so far that succeeded (ok) or failed.
func (l *cartLoad) count(ok bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, o := range l.ops {
		if (o.err == nil) == ok {
			n++
		}
	}
	return n
}

// waitAcked waits for n more acknowledged adds, waitFailed for n more
// failed ones; each re-checks after every answer (a minute is a failsafe).
func (l *cartLoad) waitAcked(n int)  { l.t.Helper(); l.waitMore(true, n) }
func (l *cartLoad) waitFailed(n int) { l.t.Helper(); l.waitMore(false, n) }

func (l *cartLoad) waitMore(ok bool, n int) {
	l.t.Helper()
	target := l.count(ok) + n
	failsafe := time.NewTimer(time.Minute)
	defer failsafe.Stop()
	for l.count(ok) < target {
		select {
		case <-l.notify:
		case <-failsafe.C:
			l.t.Fatalf("%d more adds with ok=%v not seen within a minute (%d ok, %d failed)", n, ok, l.count(true), l.count(false))
		}
	}
}

// cartOutcome reads an add's answer: applied (OK), notApplied (it never
// ran: the client could not reach the sidecar, or the sidecar refused it
// before it ran: no owner for its shard, stopping), or ambiguous (it may
// have run: the entity or the sidecar died with it). clear is false for an
// answer no kill should cause: UNKNOWN would be the cart refusing a valid
// add, a client deadline a command the sidecar never answered.
func cartOutcome(err error) (o outcome, clear bool) {
	st := status.Convert(err)
	switch st.Code() {
	case codes.OK:
		return applied, true
	case codes.Unavailable:
		for _, refused := range []string{
			`connection error: desc = "transport: Error while dialing`, // grpc-go: no connection, nothing sent
			"no sidecar serves the entity's shard",                     // shard.ErrNoOwner
			"sidecar is stopping",                                      // entity.ErrStopping
		} {
			if strings.HasPrefix(st.Message(), refused) {
				return notApplied, true
			}
		}
		return ambiguous, true
	}
	return ambiguous, false
}

type outcome int

const (
	applied outcome = iota
	notApplied
	ambiguous
)

// check compares the answers with the carts: an acknowledged add is in its
// cart with quantity 1, an add refused before it ran is not, one of
// unknown outcome is there at most once, and nothing else is.
func (l *cartLoad) check(carts map[string]map[string]int32) {
	t := l.t
	t.Helper()
	l.mu.Lock()
	ops := slices.Clone(l.ops)
	l.mu.Unlock()
	sent := map[string]bool{}
	counts := map[outcome]int{}
	examples := map[string]int{}
	for _, o := range ops {
		sent[o.product] = true
		outcome, clear := cartOutcome(o.err)
		counts[outcome]++
		if o.err != nil {
			examples[fmt.Sprintf("%v", o.err)]++
		}
		if !clear {
			t.Errorf("add %s: unclear answer %v", o.product, o.err)
		}
		qty, in := carts[o.user][o.product]
		switch {
		case in && qty != 1:
			t.Errorf("add %s is in the cart with quantity %d: applied more than once", o.product, qty)
		case outcome == applied && !in:
			t.Errorf("add %s was acknowledged but is not in the cart", o.product)
		case outcome == notApplied && in:
			t.Errorf("add %s answered %v (it never ran) is in the cart", o.product, o.err)
		}
	}
	for user, items := range carts {
		for product := range items {
			if !sent[product] {
				t.Errorf("cart of %s holds %s, which was never added", user, product)
			}
		}
	}
	t.Logf("%d adds: %d acknowledged, %d refused before running, %d of unknown outcome", len(ops), counts[applied], counts[notApplied], counts[ambiguous])
	for e, n := range examples {
		t.Logf("  %d x %s", n, e)
	}
}
