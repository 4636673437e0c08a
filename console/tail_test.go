package console_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/console"
	"github.com/jetstate/jetstate/examples/shoppingcart/persistence"
	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
)

// TestLongHistoryAndOwnDeadLetterSubjects: the page of an entity with a
// long journal shows its latest 500 events, up to the last; a projection
// whose projector was given a dead-letter subject of its own shows the
// dead letters stored there, the latest 50 of more; one whose subject no
// stream stores says so.
func TestLongHistoryAndOwnDeadLetterSubjects(t *testing.T) {
	s := startSystem(t)
	ctx := t.Context()
	s.add("long", "p0", 1) // through the sidecar, which provisions and stores its discovery
	j, err := streams.NewJournal(s.js, streams.Config{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	e := streams.Entity{Type: "shopping-cart", Key: "long"}
	v, err := j.Head(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	const commands = 300 // of two events each: 601 events in all
	for i := range commands {
		var evs []streams.Event
		for k := range 2 {
			a, err := anypb.New(&persistence.ItemAdded{Item: &persistence.LineItem{ProductId: fmt.Sprintf("p%d-%d", i+1, k), Quantity: 1}})
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, streams.Event{Type: a.GetTypeUrl(), Data: a.GetValue()})
		}
		if v, err = j.Append(ctx, e, v, evs); err != nil {
			t.Fatal(err)
		}
	}

	// A stream of the user's own for dead letters (Direct Get allowed),
	// a projection that refuses every event of the long cart into it, and
	// one whose dead letters go where no stream stores them.
	if _, err := s.js.CreateStream(ctx, jetstream.StreamConfig{Name: "VIEWS", Subjects: []string{"views.>"}, Storage: jetstream.MemoryStorage, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	own := runProjection(t, s, "own-dl", "views.dead.own", func(ev *event.Event) error {
		if strings.HasSuffix(ev.Subject(), "long") {
			return projections.ErrRejected
		}
		return nil
	})
	runProjection(t, s, "lost-dl", "nowhere.dead", func(*event.Event) error { return nil })
	waitUntil(t, "the projection caught up", func() bool {
		st, err := own.Status(ctx)
		return err == nil && len(st) == 1 && st[0].Pending == 0 && st[0].AckPending == 0
	})

	ro := startConsole(t, s.js, console.Config{})
	code, body := get(t, entityURL(ro, "shopping-cart", "long"))
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	rows := regexp.MustCompile(`data-seq="(\d+)"`).FindAllStringSubmatch(body, -1)
	if len(rows) != 500 || rows[0][1] != "102" || rows[499][1] != "601" {
		t.Fatalf("%d event rows from %v to %v, want 500 from 102 to 601", len(rows), rows[0], rows[len(rows)-1])
	}
	for _, want := range []string{"Showing the latest 500 of 601 events", `&#34;productId&#34;: &#34;p300-1&#34;`} {
		if !strings.Contains(body, want) {
			t.Errorf("entity page lacks %q", want)
		}
	}

	code, body = get(t, ro+"/s/"+service+"/projections/own-dl")
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	for _, want := range []string{"<code>views.dead.own</code> (stream <code>VIEWS</code>): 601, the latest 50 shown", `&#34;productId&#34;: &#34;p300-1&#34;`} {
		if !strings.Contains(body, want) {
			t.Errorf("projection page lacks %q:\n%s", want, body)
		}
	}
	// The 50 shown are the latest: the first is the 552nd event, p276-0.
	products := regexp.MustCompile(`&#34;productId&#34;: &#34;(p\d+-\d)&#34;`).FindAllStringSubmatch(body, -1)
	if len(products) != 50 || products[0][1] != "p276-0" || products[49][1] != "p300-1" {
		t.Errorf("%d dead letters shown, from %v to %v; want 50 from p276-0 to p300-1", len(products), products[0], products[len(products)-1])
	}
	if _, body := get(t, ro+"/s/"+service+"/projections"); !regexp.MustCompile(`data-projection="own-dl".*<td>601</td>`).MatchString(body) {
		t.Errorf("projections page lacks own-dl's 601 dead letters:\n%s", body)
	}
	code, body = get(t, ro+"/s/"+service+"/projections/lost-dl")
	if code != http.StatusOK || !strings.Contains(body, "<code>nowhere.dead</code>: no stream stores this subject") {
		t.Errorf("lost-dl page = %d:\n%s", code, body)
	}
}
