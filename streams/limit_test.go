package streams_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// MaxPayload follows the smaller of the server's max_payload and the
// streams' max message size, and a payload of that size, with a long type,
// is stored: MessageOverhead covers what a write adds to it.
func TestMaxPayload(t *testing.T) {
	for _, c := range []struct {
		name       string
		maxPayload int32 // 0: the server's default, 1 MiB
		maxMsgSize int32 // 0: the store's default, 1 MiB
		want       int
	}{
		{"server and store defaults", 0, 0, 1<<20 - streams.MessageOverhead},
		{"store smaller", 0, 64 << 10, 64<<10 - streams.MessageOverhead},
		{"server smaller", 16 << 10, 0, 16<<10 - streams.MessageOverhead},
	} {
		t.Run(c.name, func(t *testing.T) {
			var opts []streamstest.Option
			if c.maxPayload > 0 {
				opts = append(opts, streamstest.WithMaxPayload(c.maxPayload))
			}
			js := streamstest.RunServer(t, opts...).JetStream(t)
			cfg := streams.Config{Service: "limits"}
			if err := streams.Provision(t.Context(), js, cfg, streams.StoreConfig{MaxMsgSize: c.maxMsgSize}); err != nil {
				t.Fatal(err)
			}
			j, err := streams.NewJournal(js, cfg)
			if err != nil {
				t.Fatal(err)
			}
			v, err := streams.NewValues(t.Context(), js, cfg)
			if err != nil {
				t.Fatal(err)
			}
			jmax, err := j.MaxPayload(t.Context())
			if err != nil || jmax != c.want {
				t.Fatalf("Journal.MaxPayload = %d, %v; want %d", jmax, err, c.want)
			}
			vmax, err := v.MaxPayload(t.Context())
			if err != nil || vmax != c.want {
				t.Fatalf("Values.MaxPayload = %d, %v; want %d", vmax, err, c.want)
			}
			// The longest key, an 800-byte type URL, and the whole payload.
			e := streams.Entity{Type: "t", Key: strings.Repeat("k", streams.MaxKeyLen)}
			ev := streams.Event{Type: "type.googleapis.com/" + strings.Repeat("T", 780), Data: bytes.Repeat([]byte{1}, jmax)}
			if _, err := j.Append(t.Context(), e, streams.Version{}, []streams.Event{ev}); err != nil {
				t.Fatalf("append of MaxPayload bytes: %v", err)
			}
			if _, err := v.Put(t.Context(), e, bytes.Repeat([]byte{1}, vmax), 0); err != nil {
				t.Fatalf("put of MaxPayload bytes: %v", err)
			}
		})
	}
}

func TestMaxPayloadOfMissingStream(t *testing.T) {
	js := streamstest.RunServer(t).JetStream(t)
	j, err := streams.NewJournal(js, streams.Config{Service: "nowhere"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.MaxPayload(t.Context()); !errors.Is(err, streams.ErrStreamNotFound) {
		t.Fatalf("MaxPayload of an unprovisioned journal = %v, want ErrStreamNotFound", err)
	}
}
