package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to write and read from two goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runUntilServing runs `jetstate run` on dataDir until it serves, then
// stops it and returns what it printed.
func runUntilServing(t *testing.T, dataDir string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- dispatch(ctx, []string{"run", "-port", "-1", "-data", dataDir}, &out) }()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(out.String(), "serving on") {
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("run not serving after 30s:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	return out.String()
}

func TestRunDemoPersistsAcrossRuns(t *testing.T) {
	dir := t.TempDir()
	first := runUntilServing(t, dir)
	for _, want := range []string{
		"cart holds 0 events from earlier runs",
		"appended 2 events in one commit: now at event 2",
		"stale writer refused",
		"full replay: 3 events",
		"recovery: snapshot at event 2 + 1 tail event(s) = event 3",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("first run lacks %q:\n%s", want, first)
		}
	}
	second := runUntilServing(t, dir)
	for _, want := range []string{"cart holds 3 events from earlier runs", "full replay: 6 events"} {
		if !strings.Contains(second, want) {
			t.Errorf("second run lacks %q:\n%s", want, second)
		}
	}
}

func TestDispatchRejectsBadInput(t *testing.T) {
	var out bytes.Buffer
	if err := dispatch(t.Context(), nil, &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("no args = %v", err)
	}
	if err := dispatch(t.Context(), []string{"fly"}, &out); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command = %v", err)
	}
	if err := dispatch(t.Context(), []string{"run", "-sync", "sometimes"}, &out); err == nil || !strings.Contains(err.Error(), "-sync") {
		t.Errorf("bad -sync = %v", err)
	}
}
