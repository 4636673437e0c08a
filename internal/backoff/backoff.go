// Package backoff paces retries: exponential back-off from a minimum to a
// maximum interval, each wait drawn at random from [w/2, w] so that many
// retriers spread out. The journal's compare-and-set retries, the
// projections' sink retries and the sidecar's eventing retries share it.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is one retry loop's pacing. The zero Min and Max make every wait
// zero; a Backoff is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

// Next returns the next wait, then doubles the interval up to Max.
func (b *Backoff) Next() time.Duration {
	if b.next == 0 {
		b.next = b.Min
	}
	d := Jitter(b.next)
	b.next = min(2*b.next, b.Max)
	return d
}

// Wait sleeps for Next, or until ctx ends (then it returns ctx's error).
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Reset starts again from Min.
func (b *Backoff) Reset() { b.next = 0 }

// Jitter returns a random duration in [d/2, d].
func Jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits for d, or until ctx ends (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
