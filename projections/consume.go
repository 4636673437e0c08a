package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// consume dispatches the consumer's messages to q until ctx ends (then it
// returns nil once its iterator is drained, so that q's Naks cannot come
// back to it) or the consumer is gone.
func (p *Projection) consume(ctx context.Context, cons jetstream.Consumer, gen int, d *delivery) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(min(p.cfg.MaxAckPending, 512)), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return fmt.Errorf("projection %s: consume: %w", p.cfg.Name, err)
	}
	// Drain, not Stop: Next returns the buffered messages and then
	// ErrMsgIteratorClosed once the server has dropped our interest.
	defer context.AfterFunc(ctx, it.Drain)()
	w := newWaker()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() { w.run(stop, idleWake) })
	defer wg.Wait()
	defer close(stop)
	for {
		msg, err := it.Next(w.option())
		switch {
		case err == nil:
			w.got.Add(1)
			if err := d.dispatch(msg); err != nil {
				// Nothing more is dispatched; what is held goes back.
				drain(it)
				return err
			}
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			if ctx.Err() != nil {
				return nil
			}
			return p.consumerGone(ctx, gen)
		case errors.Is(err, jetstream.ErrConsumerDeleted):
			it.Stop()
			return p.consumerGone(ctx, gen)
		case errors.Is(err, context.Canceled):
			// Woken after idleWake: Next asks for more if it must.
		default:
			// Heartbeat misses and leadership changes are reported but
			// the iterator carries on.
			p.log.DebugContext(ctx, "consume", "error", err)
		}
	}
}

// drain drains it, dropping what it still returns.
func drain(it jetstream.MessagesContext) {
	it.Drain()
	for {
		if _, err := it.Next(); errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return
		}
	}
}

// consumerGone explains why a generation's consumer disappeared.
func (p *Projection) consumerGone(ctx context.Context, gen int) error {
	sup, err := p.superseded(ctx, gen)
	if err != nil {
		return err
	}
	if sup {
		p.log.InfoContext(ctx, "generation superseded", "generation", gen)
		return ErrSuperseded
	}
	return fmt.Errorf("projection %s: consumer %s: %w", p.cfg.Name, p.ConsumerName(gen), jetstream.ErrConsumerDeleted)
}

// idleWake is how long consume lets Next wait after the last message
// before it calls Next once more. nats.go 1.55 asks the server for more
// messages only at the start of Next, and skips the request while the
// previous one is still being sent; when that happens in the call that
// then waits for the last messages asked for, nothing asks again until the
// heartbeat check gives up, twice the heartbeat (2.5 s) later: seen as 5 s
// stalls under load. Only once: each call starts that heartbeat check
// afresh, and it is what notices a pull request the server lost.
const idleWake = 100 * time.Millisecond

// waker hands out contexts for Next, and ends the current one once a
// message was followed by a period without any.
type waker struct {
	got atomic.Uint64 // messages Next returned
	cur atomic.Pointer[wakeContext]
}

type wakeContext struct {
	ctx    context.Context
	cancel context.CancelFunc
	opt    jetstream.NextOpt // NextContext(ctx), made once
}

func newWaker() *waker {
	w := new(waker)
	w.renew()
	return w
}

// context is the context for the next call of Next.
func (w *waker) context() context.Context { return w.cur.Load().ctx }

// option passes the context to Next.
func (w *waker) option() jetstream.NextOpt { return w.cur.Load().opt }

func (w *waker) renew() *wakeContext {
	ctx, cancel := context.WithCancel(context.Background())
	return w.cur.Swap(&wakeContext{ctx, cancel, jetstream.NextContext(ctx)})
}

// run ends the current context after the first period without a message
// that follows one, until stop is closed.
func (w *waker) run(stop <-chan struct{}, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	defer func() { w.cur.Load().cancel() }()
	last, woken := w.got.Load(), true
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		switch n := w.got.Load(); {
		case n != last:
			last, woken = n, false
		case !woken:
			w.renew().cancel()
			woken = true
		}
	}
}
