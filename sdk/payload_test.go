package sdk

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	tm "github.com/jetstate/jetstate/sdk/internal/testmodel"
)

// FuzzDecodePayload feeds the payload decoder arbitrary type URLs and bytes, as a proxy could
// send them: it must return a message of the wanted type or an error, never panic, and what it
// decodes must survive a re-encoding.
func FuzzDecodePayload(f *testing.F) {
	valid, _ := proto.Marshal(&tm.Request{Id: "x", Actions: []*tm.RequestAction{{Action: &tm.RequestAction_Emit{Emit: &tm.Emit{Value: "A"}}}}})
	f.Add("type.googleapis.com/jetstate.sdk.testmodel.Request", valid)
	f.Add("type.googleapis.com/jetstate.sdk.testmodel.Persisted", []byte{0x0a, 0x01, 'A'})
	f.Add("type.googleapis.com/jetstate.sdk.testmodel.Request", []byte{0xff, 0xff})
	f.Add("p.cloudstate.io/string", []byte{0x0a, 0x01, 'A'})
	f.Add("jetstate.sdk.testmodel.Request", []byte{})
	f.Add("", []byte(nil))
	f.Fuzz(func(t *testing.T, typeURL string, value []byte) {
		a := &anypb.Any{TypeUrl: typeURL, Value: value}
		req, err := decodeAs[*tm.Request](a)
		if err != nil {
			return
		}
		if !strings.HasSuffix(typeURL, "jetstate.sdk.testmodel.Request") {
			t.Fatalf("decoded a %q payload as a Request", typeURL)
		}
		b, err := marshalAny(req)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := decodeAs[*tm.Request](b)
		if err != nil || !proto.Equal(req, again) {
			t.Fatalf("re-decoded %v, %v; want %v", again, err, req)
		}
	})
}

func TestDecodeAsAnyMessage(t *testing.T) {
	a, err := marshalAny(&tm.Persisted{Value: "A"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeAs[proto.Message](a)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := m.(*tm.Persisted); !ok || p.GetValue() != "A" {
		t.Fatalf("decoded %T %v", m, m)
	}
	if _, err := decodeAs[proto.Message](nil); err == nil || err.Error() != "no payload" {
		t.Fatalf("nil payload: %v", err)
	}
}
