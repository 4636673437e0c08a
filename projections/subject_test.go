package projections_test

import (
	"testing"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
)

// TestNATSSinkSubjectTemplate: with "out.{type}.{key}.{event}" each entity's
// events reach only the subscribers of its subject, in order.
func TestNATSSinkSubjectTemplate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	nc := e.srv.Connect(t)
	k0 := subscribe(t, nc, "out.cart.k0.>")
	all := subscribe(t, nc, "out.>")
	wish := subscribe(t, nc, "out.wish=20list.k=2E1.google.protobuf.StringValue")
	sink, err := projections.NewNATSSink(e.srv.Connect(t), projections.NATSSinkConfig{Subject: "out.{type}.{key}.{event}"})
	if err != nil {
		t.Fatal(err)
	}
	appendMany(t, e, 2, 3)
	e.appendEvents(t, streams.Entity{Type: "wish list", Key: "k.1"}, strEvent("w"))
	p, err := projections.New(e.js, e.config("view", sink))
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)
	all.waitCount(t, 7)
	got := k0.waitCount(t, 3)
	checkOrder(t, got, map[string]uint64{"k0": 3})
	for _, ev := range got {
		if ev.Subject() != "k0" {
			t.Errorf("subscriber of k0 got an event of %s", ev.Subject())
		}
	}
	if ev := wish.waitCount(t, 1)[0]; ev.Subject() != "k.1" {
		t.Errorf("the odd entity's subject carried %q", ev.Subject())
	}
	if _, err := projections.NewNATSSink(nc, projections.NATSSinkConfig{Subject: "out.{entity}"}); err == nil {
		t.Error("an unknown placeholder accepted")
	}
}
