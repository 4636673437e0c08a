package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"

	"github.com/jetstate/jetstate/examples/shoppingcart"
	"github.com/jetstate/jetstate/sdk"
	"github.com/jetstate/jetstate/streams/embedded"
)

// lines passes on each line written to it.
type lines chan string

func (l lines) Write(p []byte) (int, error) {
	s := bufio.NewScanner(bytes.NewReader(p))
	for s.Scan() {
		select {
		case l <- s.Text():
		default:
		}
	}
	return len(p), nil
}

// TestEmbeddedServerCredentials runs what `make run` runs: the cart
// function, `jetstate proxy` with its embedded server, `jetstate shards`
// and `jetstate project` with no NATS credentials (JETSTATE_DATA names the
// sidecar's data directory, as its default does for `make run`). The
// server refuses a client without credentials; the commands sign in with
// the seed the sidecar made there.
func TestEmbeddedServerCredentials(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	data := t.TempDir()
	env := envMap{"JETSTATE_DATA": data}

	cart, err := sdk.New(sdk.Config{ServiceName: "shopping-cart"}, shoppingcart.Entity())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cartDone := make(chan error, 1)
	go func() { cartDone <- cart.Serve(ctx, lis) }()
	t.Cleanup(func() { cancel(); <-cartDone })

	_, ufPort, _ := net.SplitHostPort(lis.Addr().String())
	ingress, admin := freeAddr(t), freeAddr(t)
	_, port, _ := net.SplitHostPort(ingress)
	c, err := parseProxy([]string{"-service", "shoppingcart", "-port", port, "-user-function-port", ufPort, "-admin", admin}, env.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != data {
		t.Fatalf("data directory %s, want JETSTATE_DATA %s", c.DataDir, data)
	}
	out := make(lines, 10)
	proxyDone := make(chan error, 1)
	go func() { proxyDone <- runProxy(ctx, c, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-proxyDone; err != nil {
			t.Errorf("runProxy: %v", err)
		}
	})
	var url string
	for failsafe := time.After(time.Minute); url == ""; {
		select {
		case <-failsafe:
			t.Fatal("the embedded server did not start within a minute")
		case line := <-out:
			if rest, ok := strings.CutPrefix(line, "embedded NATS "); ok {
				_, rest, _ = strings.Cut(rest, " at ")
				url, _, _ = strings.Cut(rest, " ")
			}
		case err := <-proxyDone:
			t.Fatalf("runProxy ended: %v", err)
		}
	}
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("embedded server at %q, want a loopback nats:// URL", url)
	}

	// No credentials, or another nkey: refused.
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("the embedded server admitted a client without credentials")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("a client without credentials: %v, want an authorization violation", err)
	}
	if _, err := os.Stat(filepath.Join(data, embedded.SeedFileName)); err != nil {
		t.Fatalf("the seed is not in the data directory: %v", err)
	}

	// The sidecar works: a command is stored.
	waitUntil(t, "a cart command through the sidecar", func() bool {
		resp, err := http.Post("http://"+ingress+"/cart/alice/items/add", "application/json",
			strings.NewReader(`{"productId":"apple","name":"Apple","quantity":2}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// `jetstate shards` with no NATS flags sees the sidecar.
	sc, err := parseShards([]string{"-service", "shoppingcart", "-nats-url", url}, env.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var shards bytes.Buffer
	if err := runShards(ctx, sc, &shards); err != nil {
		t.Fatalf("jetstate shards: %v", err)
	}
	if !strings.Contains(shards.String(), "1 live sidecars") {
		t.Fatalf("jetstate shards:\n%s", shards.String())
	}
	// Without the seed it cannot sign in, and says why.
	sc.NATS.Seeds = []string{filepath.Join(t.TempDir(), embedded.SeedFileName)}
	if err := runShards(ctx, sc, io.Discard); err == nil || !strings.Contains(err.Error(), "wants credentials") {
		t.Fatalf("jetstate shards without the seed: %v", err)
	}

	// `jetstate project` with no NATS flags delivers the cart's event.
	events := make(chan string, 10)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		events <- ev.Subject()
	}))
	defer sink.Close()
	pc, err := parseProject([]string{"-service", "shoppingcart", "-name", "view", "-nats-url", url, "-sink", sink.URL, "-admin", freeAddr(t)}, env.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	projectDone := make(chan error, 1)
	pctx, stopProject := context.WithCancel(ctx)
	go func() { projectDone <- runProject(pctx, pc, io.Discard) }()
	select {
	case subject := <-events:
		if subject != "alice" {
			t.Fatalf("projected an event of %q, want alice", subject)
		}
	case err := <-projectDone:
		t.Fatalf("jetstate project ended: %v", err)
	case <-time.After(time.Minute): // a failsafe
		t.Fatal("nothing projected within a minute")
	}
	stopProject()
	if err := <-projectDone; err != nil {
		t.Fatalf("jetstate project: %v", err)
	}
}
