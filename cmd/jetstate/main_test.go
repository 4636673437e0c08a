package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"strconv"
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

// TestMalformedEnvIntRefused checks that every command reading a number
// from the environment refuses a value that is not one, naming the variable
// and the value, instead of falling back to the default or reading a prefix.
func TestMalformedEnvIntRefused(t *testing.T) {
	project := envMap{"NATS_URL": "nats://n:4222", "JETSTATE_SERVICE": "shop", "JETSTATE_PROJECTION": "view", "K_SINK": "nats:out"}
	withProject := func(k, v string) envMap {
		m := envMap{k: v}
		for pk, pv := range project {
			m[pk] = pv
		}
		return m
	}
	for _, tc := range []struct {
		name, key, value string
		parse            func(envMap) error
	}{
		{"run port letters", "JETSTATE_NATS_PORT", "abc", func(e envMap) error { _, err := parseRun(nil, e.get, io.Discard); return err }},
		{"run port suffix", "JETSTATE_NATS_PORT", "42x", func(e envMap) error { _, err := parseRun(nil, e.get, io.Discard); return err }},
		{"proxy http port", "HTTP_PORT", "90o0", func(e envMap) error { _, err := parseProxy(nil, e.get, io.Discard); return err }},
		{"proxy function port", "USER_FUNCTION_PORT", "8080x", func(e envMap) error { _, err := parseProxy(nil, e.get, io.Discard); return err }},
		{"proxy metrics port", "METRICS_PORT", "abc", func(e envMap) error { _, err := parseProxy(nil, e.get, io.Discard); return err }},
		{"proxy port out of range", "HTTP_PORT", "70000", func(e envMap) error { _, err := parseProxy(nil, e.get, io.Discard); return err }},
		{"project metrics port", "METRICS_PORT", "9 1", func(e envMap) error {
			_, err := parseProject(nil, withProject("METRICS_PORT", e["METRICS_PORT"]).get, io.Discard)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse(envMap{tc.key: tc.value})
			if err == nil {
				t.Fatalf("%s=%q accepted", tc.key, tc.value)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.key) || !strings.Contains(msg, strconv.Quote(tc.value)) {
				t.Fatalf("error %q does not name %s and %q", msg, tc.key, tc.value)
			}
		})
	}
	// Well-formed values still parse.
	if c, err := parseRun(nil, envMap{"JETSTATE_NATS_PORT": "-1"}.get, io.Discard); err != nil || c.Port != -1 {
		t.Errorf("JETSTATE_NATS_PORT=-1: port %d, %v", c.Port, err)
	}
	if c, err := parseRun(nil, envMap{}.get, io.Discard); err != nil || c.Port != 4222 {
		t.Errorf("no JETSTATE_NATS_PORT: port %d, %v", c.Port, err)
	}
	if c, err := parseProject(nil, project.get, io.Discard); err != nil || c.AdminListen != ":9091" {
		t.Errorf("no METRICS_PORT: admin %q, %v", c.AdminListen, err)
	}
}
