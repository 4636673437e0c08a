package payload

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestRoundTrip: Wrap writes what protobuf's own BytesValue/StringValue
// (field 1) writes, and Unwrap reads those back; bad wire data fails.
func TestRoundTrip(t *testing.T) {
	for _, v := range [][]byte{nil, []byte("x"), []byte(`{"a":1}`), bytes.Repeat([]byte{0}, 300)} {
		want, err := proto.Marshal(wrapperspb.Bytes(v))
		if err != nil {
			t.Fatal(err)
		}
		if got := Wrap(v); !bytes.Equal(got, want) {
			t.Errorf("Wrap(%q) = %x, want %x", v, got, want)
		}
		s, _ := proto.Marshal(wrapperspb.String(string(v)))
		if got, err := Unwrap(s); err != nil || !bytes.Equal(got, v) {
			t.Errorf("Unwrap(StringValue %q) = %q, %v", v, got, err)
		}
	}
	// Other fields are skipped; the last field 1 wins.
	b := append(append(Wrap([]byte("first")), 0x10, 0x05), Wrap([]byte("last"))...)
	if got, err := Unwrap(b); err != nil || string(got) != "last" {
		t.Errorf("Unwrap with other fields = %q, %v", got, err)
	}
	if _, err := Unwrap([]byte{0x0a, 0x05, 'a'}); err == nil {
		t.Error("Unwrap of a truncated field: no error")
	}
}
