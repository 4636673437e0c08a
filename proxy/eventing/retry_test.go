package eventing

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestRetrySchedule checks the back-off between tries in fake time: each
// wait is within [w/2, w] of a w that doubles from RetryMin up to RetryMax,
// the last error comes back after MaxTries, and a success stops at once.
func TestRetrySchedule(t *testing.T) {
	cfg := Config{MaxTries: 7, RetryMin: 100 * time.Millisecond, RetryMax: time.Second}.withDefaults()
	boom := errors.New("boom")
	t.Run("gives up after MaxTries", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var at []time.Time
			var failed int
			n, err := retry(t.Context(), cfg, func() error { at = append(at, time.Now()); return boom }, func(int, error) { failed++ })
			if n != 7 || !errors.Is(err, boom) || failed != 7 {
				t.Fatalf("retry = %d, %v (failed called %d times); want 7, boom, 7", n, err, failed)
			}
			w := cfg.RetryMin
			for i := 1; i < len(at); i++ {
				if d := at[i].Sub(at[i-1]); d < w/2 || d > w {
					t.Errorf("wait %d = %v, want within [%v, %v]", i, d, w/2, w)
				}
				w = min(2*w, cfg.RetryMax)
			}
		})
	})
	t.Run("stops at the first success", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			calls := 0
			n, err := retry(t.Context(), cfg, func() error {
				if calls++; calls < 3 {
					return boom
				}
				return nil
			}, func(int, error) {})
			if n != 3 || err != nil {
				t.Fatalf("retry = %d, %v; want 3, nil", n, err)
			}
		})
	})
	t.Run("ends with the context", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(250*time.Millisecond, cancel)
			start := time.Now()
			n, err := retry(ctx, cfg, func() error { return boom }, func(int, error) {})
			if !errors.Is(err, context.Canceled) || time.Since(start) != 250*time.Millisecond || n < 2 {
				t.Fatalf("retry = %d, %v after %v; want canceled after 250ms", n, err, time.Since(start))
			}
		})
	})
}
