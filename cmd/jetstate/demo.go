package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams"
)

// demo walks through the journal's contract on a shopping cart: atomic
// multi-event commits, the CAS that refuses a stale writer, replay, and
// recovery from a snapshot plus the journal's tail. Its data persists, so
// every run continues the cart where the last one stopped.
func demo(ctx context.Context, js jetstream.JetStream, sc streams.Config, out io.Writer) error {
	j, err := streams.NewJournal(js, sc)
	if err != nil {
		return err
	}
	snaps, err := streams.NewSnapshots(ctx, js, sc)
	if err != nil {
		return err
	}
	cart := streams.Entity{Type: "com.example.shoppingcart.ShoppingCart", Key: "alice's cart"}
	fmt.Fprintf(out, "entity %s -> subject %s\n", cart, sc.Subject(cart))

	head, err := j.Head(ctx, cart)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "cart holds %d events from earlier runs\n", head.Seq)

	// One command, two events, committed atomically.
	v, err := j.Append(ctx, cart, head, []streams.Event{
		{Type: "ItemAdded", Data: []byte(`{"productId":"apple","quantity":2}`)},
		{Type: "ItemAdded", Data: []byte(`{"productId":"pear","quantity":1}`)},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "appended 2 events in one commit: now at event %d (stream seq %d)\n", v.Seq, v.StreamSeq)

	// A writer that still believes the old version is refused.
	_, err = j.Append(ctx, cart, head, []streams.Event{{Type: "ItemRemoved", Data: []byte(`{"productId":"apple"}`)}})
	if !errors.Is(err, streams.ErrConflict) {
		return fmt.Errorf("stale append was not refused: %v", err)
	}
	fmt.Fprintf(out, "stale writer refused: %v\n", err)

	if err := snaps.Save(ctx, cart, streams.Snapshot{Version: v, Data: fmt.Appendf(nil, "%d events", v.Seq)}); err != nil {
		return err
	}
	if v, err = j.Append(ctx, cart, v, []streams.Event{{Type: "ItemRemoved", Data: []byte(`{"productId":"pear"}`)}}); err != nil {
		return err
	}

	replayed := 0
	for _, err := range j.Read(ctx, cart, streams.Version{}) {
		if err != nil {
			return err
		}
		replayed++
	}
	fmt.Fprintf(out, "full replay: %d events\n", replayed)

	snap, _, err := snaps.Load(ctx, cart)
	if err != nil {
		return err
	}
	tail := 0
	for r, err := range j.Read(ctx, cart, snap.Version) {
		if err != nil {
			return err
		}
		tail++
		fmt.Fprintf(out, "  tail event %d: %s %s\n", r.Seq, r.Type, r.Data)
	}
	fmt.Fprintf(out, "recovery: snapshot at event %d + %d tail event(s) = event %d\n", snap.Seq, tail, snap.Seq+uint64(tail))
	return nil
}
