package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

func TestParseConsole(t *testing.T) {
	dir := t.TempDir()
	set := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{protodesc.ToFileDescriptorProto(emptypb.File_google_protobuf_empty_proto)}}
	b, _ := proto.Marshal(set)
	good := filepath.Join(dir, "set.binpb")
	if err := os.WriteFile(good, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := parseConsole([]string{"-allow-writes", "-descriptors", good}, envMap{"JETSTATE_SERVICE": "shop"}.get, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Console.AllowWrites || c.Console.Service != "shop" || len(c.Console.Descriptors) != 1 || c.Listen != DefaultConsoleListen {
		t.Errorf("parsed %+v", c)
	}
	if c, _ := parseConsole(nil, envMap{}.get, &bytes.Buffer{}); c.Console.AllowWrites {
		t.Error("writes allowed by default")
	}
	for _, args := range [][]string{{"-descriptors", filepath.Join(dir, "none")}, {"-prefix", "a.b"}, {"extra"}} {
		if _, err := parseConsole(args, envMap{}.get, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// TestConsoleCommand: `jetstate console` prints its address and serves
// the service's page.
func TestConsoleCommand(t *testing.T) {
	srv := streamstest.RunServer(t)
	if err := streams.Provision(t.Context(), srv.JetStream(t), streams.Config{Service: "shop"}, streams.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	c, err := parseConsole([]string{"-listen", "127.0.0.1:0", "-nats-url", srv.ClientURL()}, envMap{}.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- runConsole(ctx, c, pw); pw.Close() }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("console: %v", err)
		}
	})
	line := make([]byte, 256)
	n, err := pr.Read(line)
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	addr := regexp.MustCompile(`console: (http://\S+/)`).FindSubmatch(line[:n])
	if addr == nil {
		t.Fatalf("no address in %q", line[:n])
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(string(addr[1]))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Find an entity") {
		t.Fatalf("GET %s = %d:\n%s", addr[1], resp.StatusCode, body)
	}
}
