// Package cartload puts the shopping cart under a steady, checkable load:
// one sequential client per user adds a product of its own (quantity 1) at
// a steady pace, every answer is recorded under the phase it happened in,
// and Check compares the answers with the carts afterwards. The kill test
// (processes killed under load) and the Kubernetes end-to-end run use it.
package cartload

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/examples/shoppingcart"
)

// Service is the cart's gRPC service path prefix.
const Service = "/com.example.shoppingcart.ShoppingCart/"

// Op is one add: a product of its own, quantity 1, and its answer.
type Op struct {
	User, Product, Phase string
	Err                  error
}

// Outcome is what an add's answer says about it.
type Outcome int

const (
	// Applied: acknowledged; it must be in the cart, once.
	Applied Outcome = iota
	// NotApplied: it never ran (the client could not reach the sidecar, or
	// the sidecar refused it before it ran); it must not be in the cart.
	NotApplied
	// Ambiguous: it may have run (the entity or the sidecar died with it);
	// it may be in the cart, at most once.
	Ambiguous
)

// Classify reads an add's answer. clear is false for an answer no failure
// of a process or a node should cause: UNKNOWN would be the cart refusing a
// valid add, a deadline a command nobody answered.
func Classify(err error) (o Outcome, clear bool) {
	st := status.Convert(err)
	switch st.Code() {
	case codes.OK:
		return Applied, true
	case codes.Unavailable:
		for _, refused := range []string{
			`connection error: desc = "transport: Error while dialing`, // grpc-go: no connection, nothing sent
			"no sidecar serves the entity's shard",                     // shard.ErrNoOwner
			"sidecar is stopping",                                      // entity.ErrStopping
		} {
			if strings.HasPrefix(st.Message(), refused) {
				return NotApplied, true
			}
		}
		return Ambiguous, true
	}
	return Ambiguous, false
}

// Config says whom to load and how fast.
type Config struct {
	// Conn reaches the cart's sidecar (or its Service).
	Conn grpc.ClientConnInterface
	// Users are the carts, one sequential client each.
	Users []string
	// Interval between one client's adds. Default 10 ms.
	Interval time.Duration
	// Timeout of one add. Default 30 s.
	Timeout time.Duration
	// Phase is the first phase's name. Default "start".
	Phase string
}

// Load is a running load.
type Load struct {
	cfg    Config
	notify chan struct{}

	mu    sync.Mutex
	phase string
	ops   []Op

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start starts one client per user, until Stop or ctx ends.
func Start(ctx context.Context, cfg Config) *Load {
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Phase == "" {
		cfg.Phase = "start"
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &Load{cfg: cfg, notify: make(chan struct{}, 1), phase: cfg.Phase, cancel: cancel}
	for _, user := range cfg.Users {
		l.wg.Go(func() { l.client(ctx, user) })
	}
	return l
}

func (l *Load) client(ctx context.Context, user string) {
	tick := time.NewTicker(l.cfg.Interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		product := fmt.Sprintf("%s-%d", user, i)
		l.mu.Lock()
		phase := l.phase
		l.mu.Unlock()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.Timeout)
		err := l.cfg.Conn.Invoke(cctx, Service+"AddItem",
			&shoppingcart.AddLineItem{UserId: user, ProductId: product, Name: strings.ToUpper(product), Quantity: 1}, &emptypb.Empty{})
		cancel()
		l.mu.Lock()
		l.ops = append(l.ops, Op{User: user, Product: product, Phase: phase, Err: err})
		l.mu.Unlock()
		select {
		case l.notify <- struct{}{}:
		default:
		}
	}
}

// SetPhase names the phase the adds sent from now on belong to.
func (l *Load) SetPhase(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase = name
}

// Stop stops the clients and waits for their adds in flight.
func (l *Load) Stop() {
	l.cancel()
	l.wg.Wait()
}

// Ops returns every add so far.
func (l *Load) Ops() []Op {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ops)
}

// Count is the number of adds so far that succeeded (ok) or failed.
func (l *Load) Count(ok bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, o := range l.ops {
		if (o.Err == nil) == ok {
			n++
		}
	}
	return n
}

// WaitMore waits for n more adds that succeeded (ok) or failed, re-checking
// after every answer, until ctx ends.
func (l *Load) WaitMore(ctx context.Context, ok bool, n int) error {
	target := l.Count(ok) + n
	for l.Count(ok) < target {
		select {
		case <-l.notify:
		case <-ctx.Done():
			return fmt.Errorf("%d more adds with ok=%v not seen (%d ok, %d failed): %w", n, ok, l.Count(true), l.Count(false), ctx.Err())
		}
	}
	return nil
}

// Carts reads the users' carts: product -> quantity.
func Carts(ctx context.Context, conn grpc.ClientConnInterface, users []string) (map[string]map[string]int32, error) {
	carts := map[string]map[string]int32{}
	for _, user := range users {
		var c shoppingcart.Cart
		if err := conn.Invoke(ctx, Service+"GetCart", &shoppingcart.GetShoppingCart{UserId: user}, &c); err != nil {
			return nil, fmt.Errorf("cart of %s: %w", user, err)
		}
		carts[user] = map[string]int32{}
		for _, it := range c.GetItems() {
			carts[user][it.GetProductId()] = it.GetQuantity()
		}
	}
	return carts, nil
}

// requestID matches the request id the sidecar adds to the messages of
// errors whose details it logs: one error text per kind, not per add.
var requestID = regexp.MustCompile(` \(request [0-9A-Za-z]+\)`)

// Summary counts one phase's adds by outcome.
type Summary struct {
	Phase                                string
	Sent, Applied, NotApplied, Ambiguous int
	Unclear                              int            // answers no failure should cause
	Errors                               map[string]int // error text -> count
}

// Check compares the adds with the carts: an acknowledged add is in its
// cart with quantity 1, an add refused before it ran is not, one of
// unknown outcome is there at most once, nothing else is there, and every
// answer is clear. It returns what is wrong, and per phase (in the order
// they first appeared) what happened.
func Check(ops []Op, carts map[string]map[string]int32) (problems []string, phases []Summary) {
	sent := map[string]bool{}
	index := map[string]int{}
	for _, o := range ops {
		sent[o.Product] = true
		i, ok := index[o.Phase]
		if !ok {
			i = len(phases)
			index[o.Phase] = i
			phases = append(phases, Summary{Phase: o.Phase, Errors: map[string]int{}})
		}
		s := &phases[i]
		s.Sent++
		outcome, clear := Classify(o.Err)
		switch outcome {
		case Applied:
			s.Applied++
		case NotApplied:
			s.NotApplied++
		case Ambiguous:
			s.Ambiguous++
		}
		if o.Err != nil {
			s.Errors[requestID.ReplaceAllString(o.Err.Error(), "")]++
		}
		if !clear {
			s.Unclear++
			problems = append(problems, fmt.Sprintf("add %s: unclear answer %v", o.Product, o.Err))
		}
		qty, in := carts[o.User][o.Product]
		switch {
		case in && qty != 1:
			problems = append(problems, fmt.Sprintf("add %s is in the cart with quantity %d: applied more than once", o.Product, qty))
		case outcome == Applied && !in:
			problems = append(problems, fmt.Sprintf("add %s was acknowledged but is not in the cart", o.Product))
		case outcome == NotApplied && in:
			problems = append(problems, fmt.Sprintf("add %s answered %v (it never ran) is in the cart", o.Product, o.Err))
		}
	}
	for user, items := range carts {
		for product := range items {
			if !sent[product] {
				problems = append(problems, fmt.Sprintf("cart of %s holds %s, which was never added", user, product))
			}
		}
	}
	return problems, phases
}
