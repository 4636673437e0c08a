package console_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/console"
	"github.com/jetstate/jetstate/examples/shoppingcart/persistence"
	"github.com/jetstate/jetstate/internal/eventingtest"
	"github.com/jetstate/jetstate/sdk"
	"github.com/jetstate/jetstate/streams"
)

// client follows no redirects, so that tests see them.
var client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func post(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := client.PostForm(u, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func entityURL(base, typ, key string) string {
	return base + "/s/" + service + "/entity?" + url.Values{"type": {typ}, "key": {key}}.Encode()
}

// TestHandlers: every page against a real sidecar's storage, the errors
// people can cause, escaping, and the read-only default.
func TestHandlers(t *testing.T) {
	s := startSystem(t)
	s.add("alice", "apple", 2)
	s.add("alice", "pear", 1)
	s.add("bob", "poison", 1) // the sink refuses it: a dead letter
	s.projected()
	ro := startConsole(t, s.js, console.Config{})
	rw := startConsole(t, s.js, console.Config{AllowWrites: true})

	t.Run("home leads to the only service", func(t *testing.T) {
		code, _ := get(t, ro+"/")
		if code != http.StatusSeeOther {
			t.Fatalf("GET / = %d, want 303", code)
		}
	})
	t.Run("service", func(t *testing.T) {
		code, body := get(t, ro+"/s/"+service+"/")
		if code != http.StatusOK {
			t.Fatalf("%d %s", code, body)
		}
		for _, want := range []string{
			"Find an entity", "shopping-cart", "event-sourced", "com.example.shoppingcart.ShoppingCart",
			"AddItem(com.example.shoppingcart.AddLineItem) returns (google.protobuf.Empty)",
			`type=shopping-cart&amp;key=alice`, `type=shopping-cart&amp;key=bob`, "Live sidecars: 1", "shards: 100",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("service page lacks %q", want)
			}
		}
	})
	t.Run("entity", func(t *testing.T) {
		code, body := get(t, entityURL(ro, "shopping-cart", "alice"))
		if code != http.StatusOK {
			t.Fatalf("%d %s", code, body)
		}
		rows := regexp.MustCompile(`data-seq="(\d+)"`).FindAllStringSubmatch(body, -1)
		if len(rows) != 2 || rows[0][1] != "1" || rows[1][1] != "2" {
			t.Fatalf("event rows %v, want seq 1 and 2", rows)
		}
		for _, want := range []string{"com.example.shoppingcart.persistence.ItemAdded", `&#34;productId&#34;: &#34;apple&#34;`, `&#34;productId&#34;: &#34;pear&#34;`, "2 events"} {
			if !strings.Contains(body, want) {
				t.Errorf("entity page lacks %q", want)
			}
		}
		if strings.Index(body, "apple") > strings.Index(body, "pear") {
			t.Error("events out of order")
		}
	})
	t.Run("follow", func(t *testing.T) {
		_, body := get(t, entityURL(ro, "shopping-cart", "alice"))
		m := regexp.MustCompile(`hx-get="([^"]+)"`).FindStringSubmatch(body)
		if m == nil {
			t.Fatal("no poller on the entity page")
		}
		poll := ro + strings.ReplaceAll(m[1], "&amp;", "&")
		if code, _ := get(t, poll); code != http.StatusNoContent {
			t.Fatalf("poll without new events = %d, want 204", code)
		}
		s.add("alice", "plum", 3)
		code, rows := get(t, poll)
		if code != http.StatusOK || !strings.Contains(rows, `data-seq="3"`) || strings.Contains(rows, `data-seq="2"`) || !strings.Contains(rows, "plum") {
			t.Fatalf("poll after an add = %d:\n%s", code, rows)
		}
		if !strings.Contains(rows, `hx-swap-oob="true"`) || !strings.Contains(rows, "seq=3") {
			t.Errorf("poll answer does not move the poller on:\n%s", rows)
		}
	})
	t.Run("projections", func(t *testing.T) {
		code, body := get(t, ro+"/s/"+service+"/projections")
		if code != http.StatusOK || !strings.Contains(body, projection) || !strings.Contains(body, "active") {
			t.Fatalf("%d %s", code, body)
		}
		if strings.Contains(body, `data-op="pause"`) {
			t.Error("a read-only console offers to pause")
		}
		if _, body := get(t, rw+"/s/"+service+"/projections"); !strings.Contains(body, `data-op="pause"`) {
			t.Error("a console with writes allowed offers no pause")
		}
	})
	t.Run("dead letters", func(t *testing.T) {
		code, body := get(t, ro+"/s/"+service+"/projections/"+projection)
		if code != http.StatusOK {
			t.Fatalf("%d %s", code, body)
		}
		for _, want := range []string{"shopping-cart/bob", "rejected", `&#34;productId&#34;: &#34;poison&#34;`} {
			if !strings.Contains(body, want) {
				t.Errorf("projection page lacks %q:\n%s", want, body)
			}
		}
	})
	t.Run("eventing", func(t *testing.T) {
		code, body := get(t, ro+"/s/"+service+"/eventing")
		if code != http.StatusOK || !strings.Contains(body, "subscribes to nothing") {
			t.Fatalf("%d %s", code, body)
		}
	})
	t.Run("read-only refuses writes", func(t *testing.T) {
		for _, op := range []string{"pause", "resume", "rebuild"} {
			code, body := post(t, ro+"/s/"+service+"/projections/"+projection+"/"+op)
			if code != http.StatusForbidden || !strings.Contains(body, "-allow-writes") {
				t.Errorf("POST %s on a read-only console = %d %s", op, code, body)
			}
		}
		if s.paused() {
			t.Fatal("a read-only console paused the projection")
		}
	})
	t.Run("pause and resume", func(t *testing.T) {
		if code, body := post(t, rw+"/s/"+service+"/projections/"+projection+"/pause"); code != http.StatusSeeOther {
			t.Fatalf("pause = %d %s", code, body)
		}
		if !s.paused() {
			t.Fatal("not paused")
		}
		if _, body := get(t, rw+"/s/"+service+"/projections"); !strings.Contains(body, `data-op="resume"`) {
			t.Error("a paused projection offers no resume")
		}
		if code, body := post(t, rw+"/s/"+service+"/projections/"+projection+"/resume"); code != http.StatusSeeOther {
			t.Fatalf("resume = %d %s", code, body)
		}
		if s.paused() {
			t.Fatal("still paused")
		}
	})
	t.Run("cross-origin writes are refused", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, rw+"/s/"+service+"/projections/"+projection+"/pause", nil)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || s.paused() {
			t.Fatalf("cross-site POST = %d, paused %v", resp.StatusCode, s.paused())
		}
	})

	bad := []struct {
		name, url string
		status    int
		want      string
	}{
		{"unknown type", entityURL(ro, "nope", "alice"), 404, `no event-sourced or value entity type &#34;nope&#34;`},
		{"no key", ro + "/s/" + service + "/entity?type=shopping-cart", 400, "enter the key"},
		{"no type", ro + "/s/" + service + "/entity?key=alice", 400, "choose an entity type"},
		{"huge key", entityURL(ro, "shopping-cart", strings.Repeat("k", streams.MaxKeyLen+1)), 400, "key is 513 bytes, limit 512"},
		{"huge type", entityURL(ro, strings.Repeat("t", 5000), "a"), 400, "invalid entity key"},
		{"unknown service", ro + "/s/nope/", 404, "not provisioned"},
		{"bad service name", ro + "/s/a.b/", 400, "invalid name"},
		{"unknown projection", ro + "/s/" + service + "/projections/nope", 404, "projection nope"},
		{"unknown page", ro + "/nope", 404, "no such page"},
		{"bad poll", entityURL(ro, "shopping-cart", "alice") + "&seq=x&after=1", 400, "bad input"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.url
			if tc.name == "bad poll" {
				u = strings.Replace(u, "/entity?", "/entity/events?", 1)
			}
			code, body := get(t, u)
			if code != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("GET %.120s = %d, want %d with %q:\n%.2000s", u, code, tc.status, tc.want, body)
			}
		})
	}

	t.Run("unknown operation", func(t *testing.T) {
		if code, body := post(t, rw+"/s/"+service+"/projections/"+projection+"/explode"); code != http.StatusBadRequest || !strings.Contains(body, "unknown operation") {
			t.Fatalf("POST explode = %d %s", code, body)
		}
		if code, body := post(t, rw+"/s/"+service+"/projections/nope/pause"); code != http.StatusNotFound {
			t.Fatalf("POST pause of an unknown projection = %d %s", code, body)
		}
	})

	// Keys that look like subjects are keys like any other: escaped, they
	// name one entity and never match others.
	for _, key := range []string{"a.b", "a b", "*", ">", "shopping-cart.>", "alice.*"} {
		t.Run("key "+key, func(t *testing.T) {
			code, body := get(t, entityURL(ro, "shopping-cart", key))
			if code != http.StatusOK || strings.Contains(body, `data-seq=`) || !strings.Contains(body, "No events stored") {
				t.Fatalf("GET key %q = %d:\n%s", key, code, body)
			}
		})
	}
	t.Run("escaping", func(t *testing.T) {
		key := `<script>alert("x")</script>`
		s.add(key, `<img src=x onerror=alert(1)>`, 1)
		code, body := get(t, entityURL(ro, "shopping-cart", key))
		if code != http.StatusOK || strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Fatalf("GET = %d, markup unescaped:\n%s", code, body)
		}
		if !strings.Contains(body, "&lt;script&gt;") {
			t.Errorf("key not shown escaped:\n%s", body)
		}
		_, body = get(t, entityURL(ro, `"><b>x</b>`, "k"))
		if strings.Contains(body, "<b>x</b>") {
			t.Errorf("type in an error page unescaped:\n%s", body)
		}
	})
}

// TestDescriptorsFlag: a service whose sidecars stored no discovery answer
// shows its events as bytes, and decoded with Config.Descriptors.
func TestDescriptorsFlag(t *testing.T) {
	s := startSystem(t)
	storage := streams.Config{Service: "raw"}
	if err := streams.Provision(t.Context(), s.js, storage, streams.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	j, err := streams.NewJournal(s.js, storage)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := anypb.New(&persistence.ItemAdded{Item: &persistence.LineItem{ProductId: "fig", Name: "FIG", Quantity: 4}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(t.Context(), streams.Entity{Type: "cart", Key: "carol"}, streams.Version{}, []streams.Event{{Type: ev.TypeUrl, Data: ev.Value}}); err != nil {
		t.Fatal(err)
	}
	u := func(base string) string {
		return base + "/s/raw/entity?" + url.Values{"type": {"cart"}, "key": {"carol"}}.Encode()
	}
	plain := startConsole(t, s.js, console.Config{})
	code, body := get(t, u(plain))
	if code != http.StatusOK || !strings.Contains(body, "no descriptor for com.example.shoppingcart.persistence.ItemAdded") {
		t.Fatalf("without descriptors: %d\n%s", code, body)
	}
	withSet := startConsole(t, s.js, console.Config{Descriptors: []*descriptorpb.FileDescriptorSet{fileSet(persistence.File_shoppingcart_persistence_domain_proto)}})
	code, body = get(t, u(withSet))
	if code != http.StatusOK || !strings.Contains(body, `&#34;productId&#34;: &#34;fig&#34;`) {
		t.Fatalf("with descriptors: %d\n%s", code, body)
	}
	// Two services now: the start page lists them.
	if code, body := get(t, plain+"/"); code != http.StatusOK || !strings.Contains(body, `href="/s/raw/"`) || !strings.Contains(body, `href="/s/shoppingcart/"`) {
		t.Fatalf("GET / = %d\n%s", code, body)
	}
}

// fileSet is a FileDescriptorSet of f and its imports.
func fileSet(f protoreflect.FileDescriptor) *descriptorpb.FileDescriptorSet {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imports := f.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(f)
	return set
}

// TestEventingPage: a function's event-log subscriptions with their
// consumer's lag, and the dead letter of the event it refused.
func TestEventingPage(t *testing.T) {
	s := startSystem(t)
	conn := startSidecar(t, s.js, "events", sdk.Config{ServiceName: "events"}, eventingtest.Entities()...)
	for _, refuse := range []bool{false, true} {
		id := "kept"
		if refuse {
			id = "refused"
		}
		if err := conn.Invoke(t.Context(), "/"+eventingtest.EntityOne+"/EmitEvent", eventingtest.Emit(id, refuse), &emptypb.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	base := startConsole(t, s.js, console.Config{})
	var body string
	waitUntil(t, "the refused event dead-lettered", func() bool {
		var code int
		code, body = get(t, base+"/s/events/eventing")
		return code == http.StatusOK && strings.Contains(body, eventingtest.PersistenceOne+"/refused")
	})
	for _, want := range []string{
		"event_log:" + eventingtest.PersistenceOne, "event_log:" + eventingtest.PersistenceTwo,
		"ProcessEventOne, ProcessEventTwo", "ProcessAnyEvent", "eventing=_", "jetstate_deadletter.events",
		`&#34;message&#34;: &#34;refuse&#34;`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("eventing page lacks %q:\n%s", want, body)
		}
	}
	// The entity types of a function with an action: the action is listed,
	// not offered to the finder.
	_, body = get(t, base+"/s/events/")
	if !strings.Contains(body, eventingtest.Subscriber) || !strings.Contains(body, "action") || strings.Contains(body, `<option value="`+eventingtest.Subscriber) {
		t.Errorf("events service page:\n%s", body)
	}
}
