package shard

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPeersConnectionLoss(t *testing.T) {
	p := newPeers(time.Hour)
	before, stopBefore := p.lost("")
	defer stopBefore()
	p.disconnected()
	<-before.Done()
	if !errors.Is(context.Cause(before), errConnLost) {
		t.Fatalf("cause = %v, want errConnLost", context.Cause(before))
	}
	// Sent after the disconnection (buffered until reconnected): it waits
	// for the next one.
	after, stopAfter := p.lost("")
	if after.Err() != nil {
		t.Fatalf("a request sent after the disconnection ended: %v", context.Cause(after))
	}
	stopAfter()
	if !errors.Is(context.Cause(after), context.Canceled) {
		t.Fatalf("released: cause %v", context.Cause(after))
	}
}

func TestPeersOwnerGone(t *testing.T) {
	p := newPeers(time.Millisecond)
	p.seen(map[string][]byte{"a": nil, "b": nil})
	ctx, stop := p.lost("a")
	defer stop()
	other, stopOther := p.lost("b")
	defer stopOther()
	p.seen(map[string][]byte{"b": nil})
	<-ctx.Done()
	if !errors.Is(context.Cause(ctx), errOwnerGone) {
		t.Fatalf("cause = %v, want errOwnerGone", context.Cause(ctx))
	}
	if other.Err() != nil {
		t.Fatalf("a request to a member still there ended: %v", context.Cause(other))
	}
	// Sent to a member not in the view: its grace starts at once.
	gone, stopGone := p.lost("c")
	defer stopGone()
	<-gone.Done()
	if !errors.Is(context.Cause(gone), errOwnerGone) {
		t.Fatalf("cause = %v, want errOwnerGone", context.Cause(gone))
	}
}

func TestPeersOwnerBackWithinGrace(t *testing.T) {
	p := newPeers(time.Hour)
	p.seen(map[string][]byte{"a": nil})
	ctx, stop := p.lost("a")
	defer stop()
	p.seen(map[string][]byte{})
	p.mu.Lock()
	running := p.members["a"].timer != nil
	p.mu.Unlock()
	if !running {
		t.Fatal("no grace started for a member that left")
	}
	p.seen(map[string][]byte{"a": nil})
	p.mu.Lock()
	running = p.members["a"].timer != nil
	p.mu.Unlock()
	if running || ctx.Err() != nil {
		t.Fatalf("member back: grace running %v, request ended %v", running, ctx.Err())
	}
}
