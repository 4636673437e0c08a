package cebinding

import (
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
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

// TestNATSWriterReuse renders a run of different events with one
// NATSWriter: each message must equal what NATSMsg renders for its event
// alone, whatever came before (another source, more extensions than the
// values' first array holds, structured mode, an event without subject).
func TestNATSWriterReuse(t *testing.T) {
	mk := func(source, subject string, exts int, data string) *event.Event {
		ev := event.New()
		ev.SetID("jetstate_shop_journal:1:0")
		ev.SetSource(source)
		ev.SetType("x.Y")
		if subject != "" {
			ev.SetSubject(subject)
		}
		for i := range exts {
			ev.SetExtension("ext"+string(rune('a'+i)), strings.Repeat("v", i+1))
		}
		_ = ev.SetData("application/protobuf", []byte(data))
		return &ev
	}
	evs := []struct {
		ev         *event.Event
		structured bool
	}{
		{mk("/jetstate/shop/cart", "k1", 1, "a"), false},
		{mk("/jetstate/shop/cart", "k 2%", 1, "b"), false},
		{mk("/jetstate/shop/order", "", 0, ""), false},
		{mk("/jetstate/shop/cart", "k3", 9, "c"), false},
		{mk("/jetstate/shop/cart", "k4", 1, "d"), true},
		{mk("/jetstate/shop/other path", "k5", 2, "e"), false},
		{mk("/jetstate/shop/cart", "k6", 0, "f"), false},
	}
	var w NATSWriter
	for i, e := range evs {
		want, err := NATSMsg("s"+string(rune('0'+i)), e.ev, e.structured)
		if err != nil {
			t.Fatal(err)
		}
		got, err := w.Msg("s"+string(rune('0'+i)), e.ev, e.structured)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(nats.Msg{})); diff != "" {
			t.Errorf("event %d (-NATSMsg +NATSWriter):\n%s", i, diff)
		}
	}
}
