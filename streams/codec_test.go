package streams

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestEntryRoundTrip(t *testing.T) {
	events := []Event{{Type: "a", Data: []byte("x")}, {Type: "", Data: nil}, {Type: "type.googleapis.com/p.M", Data: make([]byte, 300)}}
	first, got, err := decodeEntry(encodeEntry(nil, 42, events))
	if err != nil || first != 42 {
		t.Fatalf("decode = %d, %v", first, err)
	}
	if diff := cmp.Diff(events, got, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestDecodeEntryRejectsGarbage(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":       nil,
		"no sequence": encodeEntry(nil, 0, []Event{{Type: "a"}}),
		"truncated":   encodeEntry(nil, 7, []Event{{Type: "abc", Data: []byte("defg")}})[:6],
		"bad tag":     {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"json":        []byte(`{"seq":1}`),
	} {
		if _, _, err := decodeEntry(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: decodeEntry = %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzDecodeEntry feeds arbitrary stream message bodies to the decoder: it
// must never panic, and what it accepts must survive a re-encoding.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(nil, 1, []Event{{Type: "t", Data: []byte("d")}}))
	f.Add(encodeEntry(nil, 1<<40, nil))
	f.Add([]byte{0x08})
	f.Fuzz(func(t *testing.T, b []byte) {
		first, events, err := decodeEntry(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		first2, events2, err := decodeEntry(encodeEntry(nil, first, events))
		if err != nil || first2 != first || !cmp.Equal(events, events2, cmpopts.EquateEmpty()) {
			t.Fatalf("re-encoding changed the entry: %d %v -> %d %v, %v", first, events, first2, events2, err)
		}
	})
}

// FuzzDecodeSnapshot does the same for snapshot records read from KV.
func FuzzDecodeSnapshot(f *testing.F) {
	f.Add([]byte{0x08, 0x01, 0x10, 0x02, 0x1a, 0x01, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := decodeSnapshot(b); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v is not ErrCorrupt", err)
		}
	})
}
