package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestParseProxyFromEnvironment(t *testing.T) {
	env := map[string]string{
		"HTTP_PORT": "9100", "USER_FUNCTION_HOST": "uf", "USER_FUNCTION_PORT": "8181",
		"JETSTATE_SERVICE": "cart", "NATS_URL": "nats://n:4222", "PASSIVATION_TIMEOUT": "5s", "METRICS_PORT": "9191",
	}
	c, err := parseProxy(nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Proxy.Listen != ":9100" || c.Proxy.UserFunction != "uf:8181" || c.Proxy.Storage.Service != "cart" ||
		c.NATSURL != "nats://n:4222" || c.Proxy.PassivationTimeout != 5*time.Second || c.AdminListen != ":9191" {
		t.Fatalf("parsed %+v", c)
	}
	if c.Proxy.Provision != nil {
		t.Fatal("an external NATS is provisioned by the operator, not by default")
	}
	// Flags win over the environment; no NATS_URL means embedded + provision,
	// on loopback only.
	c, err = parseProxy([]string{"-port", "9200", "-service", "other"}, func(string) string { return "" }, &bytes.Buffer{})
	if err != nil || c.Proxy.Listen != "127.0.0.1:9200" || c.Proxy.Storage.Service != "other" || c.Proxy.Provision == nil {
		t.Fatalf("parsed %+v, %v", c, err)
	}
	c, err = parseProxy([]string{"-shards", "12", "-member-ttl", "3s", "-route-timeout", "9s", "-request-message-timeout", "2s", "-max-request-size", "4096"}, func(string) string { return "" }, &bytes.Buffer{})
	if err != nil || c.Proxy.Provision.Shards != 12 || c.Proxy.Provision.MemberTTL != 3*time.Second || c.Proxy.RouteTimeout != 9*time.Second ||
		c.Proxy.RequestMessageTimeout != 2*time.Second || c.Proxy.MaxRequestSize != 4096 {
		t.Fatalf("parsed %+v, %v", c, err)
	}
	c, err = parseProxy([]string{"-prefix", "p1", "-nats-url", "tls://n:4222"}, func(k string) string {
		return map[string]string{"NATS_TLS_CA": "/ca.pem", "NATS_TLS_CERT": "/c.pem", "NATS_TLS_KEY": "/k.pem"}[k]
	}, &bytes.Buffer{})
	if err != nil || c.Proxy.Storage.Prefix != "p1" || c.NATSTLS != (natsTLS{CA: "/ca.pem", Cert: "/c.pem", Key: "/k.pem"}) || len(c.NATSTLS.options()) != 2 {
		t.Fatalf("parsed %+v, %v", c, err)
	}
	for _, bad := range [][]string{{"-service", "a.b"}, {"-prefix", "a b"}, {"-replicas", "2"}, {"-nope"}, {"-shards", "-3"}, {"-member-ttl", "10ms"}, {"-max-request-size", "-1"}} {
		if _, err := parseProxy(bad, func(string) string { return "" }, &bytes.Buffer{}); err == nil {
			t.Errorf("parseProxy(%q) accepted", bad)
		}
	}
	if _, err := parseProxy(nil, func(k string) string { return map[string]string{"PASSIVATION_TIMEOUT": "soon"}[k] }, &bytes.Buffer{}); err == nil {
		t.Error("bad PASSIVATION_TIMEOUT accepted")
	}
}

// TestRunProxyWaitsForFunction runs the sidecar with its embedded NATS and
// no user function: it stays alive but not ready, and stops cleanly.
func TestRunProxyWaitsForFunction(t *testing.T) {
	admin := freeAddr(t)
	c, err := parseProxy([]string{"-data", t.TempDir(), "-admin", admin, "-port", "0", "-user-function-port", "1"},
		func(string) string { return "" }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() { done <- runProxy(ctx, c, &out) }()
	status := func(path string) int {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for deadline := time.Now().Add(20 * time.Second); status("/alive") != http.StatusOK; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("admin endpoint not up")
		}
	}
	if got := status("/ready"); got != http.StatusServiceUnavailable {
		t.Fatalf("/ready without a user function = %d, want 503", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runProxy: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("runProxy did not stop")
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
