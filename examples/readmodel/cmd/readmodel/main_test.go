package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/jetstate/jetstate/examples/readmodel"
	"github.com/jetstate/jetstate/projections"
)

func TestParse(t *testing.T) {
	env := map[string]string{"PORT": "9999", "READMODEL_DB": "/data/view.db"}
	c, err := parse(nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil || c.Listen != "127.0.0.1:9999" || c.DB != "/data/view.db" {
		t.Fatalf("from the environment: %+v, %v", c, err)
	}
	c, err = parse([]string{"-listen", ":80", "-db", "x.db", "-reset"}, func(string) string { return "" }, &bytes.Buffer{})
	if err != nil || c.Listen != ":80" || c.DB != "x.db" || !c.Reset {
		t.Fatalf("from flags: %+v, %v", c, err)
	}
	for _, bad := range [][]string{{"-nope"}, {"extra"}} {
		if _, err := parse(bad, func(string) string { return "" }, &bytes.Buffer{}); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}

// TestWriteDescriptors: the file the command writes lets a projection send
// the cart's events as JSON.
func TestWriteDescriptors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cart.binpb")
	if err := run(t.Context(), []string{"-write-descriptors", path}, func(string) string { return "" }, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	set := new(descriptorpb.FileDescriptorSet)
	if err := proto.Unmarshal(b, set); err != nil {
		t.Fatal(err)
	}
	r, err := projections.NewResolver(set)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{readmodel.TypeItemAdded, readmodel.TypeItemRemoved} {
		if _, err := r.FindMessageByURL("type.googleapis.com/" + typ); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
}

// TestRunServes starts the command on a free port and queries it.
func TestRunServes(t *testing.T) {
	db := filepath.Join(t.TempDir(), "view.db")
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-db", db}, func(string) string { return "" }, &out)
	}()
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; time.Sleep(10 * time.Millisecond) {
		if s := out.String(); strings.Contains(s, "http://") {
			addr = strings.Fields(s[strings.Index(s, "http://"):])[0]
		}
		if time.Now().After(deadline) {
			t.Fatal("not serving")
		}
	}
	resp, err := http.Get(addr + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/stats = %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
