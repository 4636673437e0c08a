package streams

import (
	"context"
	"math/rand/v2"
	"time"
)

// Retry pacing for transient JetStream refusals.
const (
	backoffMin = 5 * time.Millisecond
	backoffMax = 500 * time.Millisecond
)

// backoff is exponential with full jitter; the zero value is ready to use.
type backoff struct{ next time.Duration }

// wait sleeps for the next interval or until ctx is done.
func (b *backoff) wait(ctx context.Context) error {
	if b.next == 0 {
		b.next = backoffMin
	}
	d := b.next/2 + rand.N(b.next/2+1)
	b.next = min(2*b.next, backoffMax)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
