package eventing

import (
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

// FuzzTopicMessage feeds arbitrary messages to the topic decoder: it never
// panics, and what it accepts makes a command the function can be sent
// (metadata that marshals, a payload with a type) and whose JSON, string
// and bytes payloads publish back to the same body.
func FuzzTopicMessage(f *testing.F) {
	f.Add("application/json", "", "Greeting", []byte(`{"a":1}`))
	f.Add("application/protobuf; proto=x.Y", "", "", []byte{8, 1})
	f.Add("text/plain", "", "", []byte("hi"))
	f.Add("", "1.0", "t", []byte{0xff})
	f.Add("application/vnd.cloudstate.protobuf.any", "", "", []byte{10, 1, 'a'})
	f.Fuzz(func(t *testing.T, ct, specversion, ceType string, data []byte) {
		h := nats.Header{}
		if ct != "" {
			h.Set("Content-Type", ct)
		}
		if specversion != "" {
			h.Set("ce-specversion", specversion)
			h.Set("ce-id", "id")
			h.Set("ce-source", "src")
			h.Set("ce-type", ceType)
		}
		payload, ev, err := topicMessage(&nats.Msg{Subject: "s", Header: h, Data: data}, "in", "stream:1:0", time.Unix(1, 0))
		if err != nil {
			return
		}
		if payload.GetTypeUrl() == "" {
			t.Fatalf("payload without a type for %q", ct)
		}
		if _, err := proto.Marshal(eventMetadata(ev)); err != nil {
			t.Fatalf("metadata does not marshal: %v", err)
		}
		switch payload.GetTypeUrl() {
		case stringURL, bytesURL:
			_, _, back, err := dataOfAny(payload)
			if err != nil || string(back) != string(data) {
				t.Fatalf("%s round trip: %q -> %q (%v)", payload.GetTypeUrl(), data, back, err)
			}
			if payload.GetTypeUrl() == stringURL && !utf8.Valid(back) {
				t.Fatalf("string payload is not UTF-8: %q", back)
			}
		}
	})
}
