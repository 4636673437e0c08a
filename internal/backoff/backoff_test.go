package backoff

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestNextDoublesWithinJitter(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for i, w := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		w *= time.Millisecond
		if w > time.Second {
			w = time.Second
		}
		if d := b.Next(); d < w/2 || d > w {
			t.Errorf("wait %d = %v, want in [%v, %v]", i, d, w/2, w)
		}
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Errorf("after Reset: %v, want at most 100ms", d)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		b := Backoff{Min: time.Hour, Max: time.Hour}
		done := make(chan error)
		go func() { done <- b.Wait(ctx) }()
		time.Sleep(time.Minute)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait = %v, want context.Canceled", err)
		}
		if err := Sleep(t.Context(), time.Second); err != nil {
			t.Fatalf("Sleep = %v", err)
		}
	})
}
