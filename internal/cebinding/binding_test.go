package cebinding

import (
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
)

func TestPercentEncoding(t *testing.T) {
	for _, s := range []string{"", "plain", "c 2/é%", "line\r\nbreak", `quote"`, "\x00\x7f", "日本"} {
		enc := percentEncode(s)
		for i := 0; i < len(enc); i++ {
			if mustEscape(enc[i]) && enc[i] != '%' {
				t.Errorf("percentEncode(%q) = %q keeps byte %q", s, enc, enc[i])
			}
		}
		dec, err := percentDecode(enc)
		if err != nil || dec != s {
			t.Errorf("percentDecode(%q) = %q, %v; want %q", enc, dec, err, s)
		}
	}
	if got := percentEncode("jetstate_shop_journal:12:0"); got != "jetstate_shop_journal:12:0" {
		t.Errorf("an id was escaped: %q", got)
	}
	for _, bad := range []string{"%", "%4", "%zz", "%FF"} {
		if _, err := percentDecode(bad); err == nil {
			t.Errorf("percentDecode(%q) succeeded", bad)
		}
	}
}

// FuzzEventFromNATS feeds arbitrary messages to the decoder: it must not
// panic, and whatever it accepts must survive a binary round trip.
func FuzzEventFromNATS(f *testing.F) {
	ev := event.New()
	ev.SetID("jetstate_shop_journal:1:0")
	ev.SetSource("/jetstate/shop/cart")
	ev.SetType("x.Y")
	ev.SetSubject("c 2/é%\n")
	ev.SetExtension("jetstateseq", "1")
	_ = ev.SetData("application/protobuf", []byte{8, 1})
	for _, structured := range []bool{false, true} {
		m, err := NATSMsg("s", &ev, structured)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(headerText(m.Header), m.Data)
	}
	f.Add("ce-specversion: 1.0\nce-id: %zz", []byte{})
	f.Fuzz(func(t *testing.T, header string, data []byte) {
		m := &nats.Msg{Subject: "s", Header: nats.Header{}, Data: data}
		for line := range strings.SplitSeq(header, "\n") {
			if k, v, ok := strings.Cut(line, ": "); ok {
				m.Header[k] = append(m.Header[k], v)
			}
		}
		got, err := EventFromNATS(m)
		if err != nil {
			return
		}
		again, err := NATSMsg("s", got, false)
		if err != nil {
			t.Fatalf("re-encoding an accepted event: %v", err)
		}
		back, err := EventFromNATS(again)
		if err != nil {
			t.Fatalf("decoding a re-encoded event: %v", err)
		}
		// sdk-go's setters trim white space around id, type and subject;
		// its JSON decoder does not.
		same := func(a, b string) bool { return strings.TrimSpace(a) == strings.TrimSpace(b) }
		if !same(back.ID(), got.ID()) || !same(back.Subject(), got.Subject()) || !same(back.Type(), got.Type()) ||
			string(back.Data()) != string(got.Data()) {
			t.Fatalf("round trip changed the event:\n%v\n%v", got, back)
		}
	})
}

func headerText(h nats.Header) string {
	var b strings.Builder
	for k, vs := range h {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\n")
		}
	}
	return b.String()
}
