package console

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jetstate/jetstate/internal/payload"
)

// FuzzDecode: whatever a journal, a snapshot or a dead letter holds, the
// console shows JSON or a note with the bytes, and never panics.
func FuzzDecode(f *testing.F) {
	r, err := newResolver(nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	s, _ := proto.Marshal(wrapperspb.String("x"))
	f.Add("type.googleapis.com/google.protobuf.StringValue", s)
	f.Add(payload.JSONPrefix+"cart", payload.Wrap([]byte(`{"a":1}`)))
	f.Add(payload.PrimitivePrefix+"string", payload.Wrap([]byte("hi")))
	f.Add(payload.PrimitivePrefix+"bytes", payload.Wrap([]byte{0, 1}))
	f.Add("type.googleapis.com/unknown.Type", []byte{1, 2, 3})
	f.Add("", []byte(nil))
	f.Fuzz(func(t *testing.T, typeURL string, data []byte) {
		d := r.decode(typeURL, data)
		if d.JSON == "" && d.Note == "" {
			t.Fatalf("decode(%q, %x): neither JSON nor a note", typeURL, data)
		}
		a, _ := proto.Marshal(&anypb.Any{TypeUrl: typeURL, Value: data})
		if d := r.decodeAny(a); d.JSON == "" && d.Note == "" {
			t.Fatalf("decodeAny: neither JSON nor a note")
		}
		if d := r.decodeAny(data); d.JSON == "" && d.Note == "" {
			t.Fatalf("decodeAny of raw bytes: neither JSON nor a note")
		}
	})
}
