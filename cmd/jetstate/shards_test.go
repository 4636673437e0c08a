package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jetstate/jetstate/proxy/shard"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

func TestShardsCommand(t *testing.T) {
	srv := streamstest.RunServer(t)
	js := srv.JetStream(t)
	ctx := t.Context()
	cfg := streams.Config{Service: "cart"}
	if err := streams.Provision(ctx, js, cfg, streams.StoreConfig{Shards: 10, MemberTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	own, err := streams.NewOwnership(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := json.Marshal(shard.MemberInfo{Version: "v9", Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	if err := own.Heartbeat(ctx, "sidecar-a", info); err != nil {
		t.Fatal(err)
	}
	for shard, owner := range map[int]string{0: "sidecar-a", 1: "sidecar-a", 2: "sidecar-a", 5: "sidecar-a", 6: "gone"} {
		if _, err := own.SetOwner(ctx, shard, owner, 0); err != nil {
			t.Fatal(err)
		}
	}
	c, err := parseShards([]string{"-service", "cart"}, envMap{"NATS_URL": srv.ClientURL()}.get, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runShards(ctx, c, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"service cart: 10 shards, member TTL 1m0s, 1 live sidecars",
		"sidecar-a        4       2026-01-02T03:04:05Z  v9       0-2,5",
		"(no live owner)  6                                      3-4,6-9",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	if _, err := parseShards(nil, envMap{}.get, &bytes.Buffer{}); err == nil {
		t.Error("no service accepted")
	}
	c.Storage.Service = "nope"
	if err := runShards(ctx, c, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "not provisioned") {
		t.Errorf("unknown service: %v", err)
	}
}

type envMap map[string]string

func (m envMap) get(k string) string { return m[k] }
