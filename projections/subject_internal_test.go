package projections

import (
	"net/url"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

func TestSubjectTemplate(t *testing.T) {
	ev := event.New()
	ev.SetSource("/jetstate/shop/" + url.PathEscape("wish list"))
	ev.SetSubject("al.ice")
	ev.SetType("com.example.ItemAdded")
	for _, tc := range []struct{ template, want string }{
		{"cart.events", "cart.events"},
		{"cart.{type}.{key}", "cart.wish=20list.al=2Eice"},
		{"cart.{event}", "cart.com.example.ItemAdded"},
		{"x-{key}.{type}.{event}.y", "x-al=2Eice.wish=20list.com.example.ItemAdded.y"},
	} {
		tmpl, err := parseSubject(tc.template)
		if err != nil {
			t.Errorf("%s: %v", tc.template, err)
			continue
		}
		if got, err := tmpl.expand(&ev); err != nil || got != tc.want {
			t.Errorf("%s = %q, %v; want %q", tc.template, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "a.*", "a.>", "a..{key}", "a.{nope}", "a.{key", "a.key}", "a b.{key}"} {
		if _, err := parseSubject(bad); err == nil {
			t.Errorf("parseSubject(%q) accepted", bad)
		}
	}
	// An entity key that is empty still gives a valid token.
	ev.SetSubject("")
	tmpl, _ := parseSubject("c.{key}")
	if got, _ := tmpl.expand(&ev); got != "c.=" {
		t.Errorf("empty key: %q", got)
	}
}
