package main

import (
	"io"
	"strings"
	"testing"

	"github.com/jetstate/jetstate/streams"
)

// TestProxySync: -sync (JETSTATE_SYNC) says when the embedded server
// fsyncs, and provisioning records it; flush by default.
func TestProxySync(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  envMap
		want streams.Durability
	}{
		{"default", nil, envMap{}, streams.DurabilityFlush},
		{"flag", []string{"-sync", "always"}, envMap{}, streams.DurabilityAlways},
		{"environment", nil, envMap{"JETSTATE_SYNC": "always"}, streams.DurabilityAlways},
		{"provisioning a cluster", []string{"-provision", "-sync", "always"}, envMap{"NATS_URL": "nats://n:4222"}, streams.DurabilityAlways},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseProxy(tc.args, tc.env.get, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.Sync != tc.want || c.Proxy.Provision == nil || c.Proxy.Provision.Durability != tc.want {
				t.Fatalf("sync %q, provisioning %+v; want %q", c.Sync, c.Proxy.Provision, tc.want)
			}
		})
	}
	if _, err := parseProxy([]string{"-sync", "sometimes"}, envMap{}.get, io.Discard); err == nil || !strings.Contains(err.Error(), "-sync") {
		t.Fatalf("-sync sometimes: %v", err)
	}
}
