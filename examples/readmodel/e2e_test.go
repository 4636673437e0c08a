package readmodel_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jetstate/jetstate/examples/readmodel"
	"github.com/jetstate/jetstate/examples/shoppingcart"
	"github.com/jetstate/jetstate/internal/systemtest"
	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/sdk"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// cartSystem is NATS, the cart function and its sidecar, all real, on
// loopback.
type cartSystem struct {
	t    *testing.T
	js   jetstream.JetStream
	conn *grpc.ClientConn
}

var storage = streams.Config{Service: "shoppingcart"}

func startCart(t *testing.T) *cartSystem {
	t.Helper()
	srv := streamstest.RunServer(t)
	s := &cartSystem{t: t, js: srv.JetStream(t)}
	p := systemtest.RunSidecar(t, s.js, proxy.Config{Storage: storage, Provision: &streams.StoreConfig{}, Listen: "127.0.0.1:0",
		UserFunction: systemtest.ServeFunction(t, sdk.Config{ServiceName: "shopping-cart"}, shoppingcart.Entity())})
	s.conn = systemtest.Dial(t, p.Addr().String())
	return s
}

const svc = "/com.example.shoppingcart.ShoppingCart/"

func (s *cartSystem) add(user, product string, qty int32) {
	s.t.Helper()
	in := &shoppingcart.AddLineItem{UserId: user, ProductId: product, Name: strings.ToUpper(product), Quantity: qty}
	if err := s.conn.Invoke(s.t.Context(), svc+"AddItem", in, &emptypb.Empty{}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *cartSystem) remove(user, product string) {
	s.t.Helper()
	in := &shoppingcart.RemoveLineItem{UserId: user, ProductId: product}
	if err := s.conn.Invoke(s.t.Context(), svc+"RemoveItem", in, &emptypb.Empty{}); err != nil {
		s.t.Fatal(err)
	}
}

// readModel is the read model's HTTP server on a database in a temp dir;
// codes counts its answers to CloudEvents by status.
type readModel struct {
	*httptest.Server
	store *readmodel.Store
	path  string
	mu    sync.Mutex
	codes map[int]int
}

func startReadModel(t *testing.T) *readModel {
	t.Helper()
	path := filepath.Join(t.TempDir(), "view.db")
	store, err := readmodel.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	rm := &readModel{store: store, path: path, codes: map[int]int{}}
	h := readmodel.NewServer(store, nil)
	rm.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		if r.Method == http.MethodPost && r.URL.Path == "/" {
			rm.mu.Lock()
			rm.codes[rec.code]++
			rm.mu.Unlock()
		}
	}))
	t.Cleanup(rm.Close)
	return rm
}

func (rm *readModel) count(code int) int {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.codes[code]
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// get returns the body of a GET on the read model.
func (rm *readModel) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get(rm.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
	}
	return strings.TrimSpace(string(b))
}

// view is everything the read model answers.
func (rm *readModel) view(t *testing.T) string {
	t.Helper()
	out := rm.get(t, "/carts") + "\n" + rm.get(t, "/products/top")
	var carts []readmodel.CartSummary
	if err := json.Unmarshal([]byte(rm.get(t, "/carts")), &carts); err != nil {
		t.Fatal(err)
	}
	for _, c := range carts {
		out += "\n" + rm.get(t, "/carts/"+c.CartID)
	}
	return out
}

// waitView waits until GET path answers want.
func (rm *readModel) waitView(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := rm.get(t, path)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s = %s, want %s", path, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tee records the events a sink accepted.
type tee struct {
	next projections.Sink
	mu   sync.Mutex
	evs  []event.Event
}

func (s *tee) Send(ctx context.Context, ev *event.Event) error {
	if err := s.next.Send(ctx, ev); err != nil {
		return err
	}
	s.mu.Lock()
	s.evs = append(s.evs, ev.Clone())
	s.mu.Unlock()
	return nil
}

func (s *tee) events() []event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event.Event(nil), s.evs...)
}

// projectionConfig sends the cart's events to url: binary mode with JSON
// data (the descriptors the readmodel command writes), or structured mode
// with protobuf data.
func projectionConfig(t *testing.T, name, url string, structured bool) (projections.Config, *tee) {
	t.Helper()
	sink, err := projections.NewHTTPSink(projections.HTTPSinkConfig{Target: url, Structured: structured})
	if err != nil {
		t.Fatal(err)
	}
	cfg := projections.Config{
		Storage: storage, Name: name, Sink: sink,
		InfoInterval: 50 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, MaxTries: 1000,
	}
	if !structured {
		r, err := projections.NewResolver(readmodel.Descriptors())
		if err != nil {
			t.Fatal(err)
		}
		cfg.Resolver = r
	}
	tt := &tee{next: sink}
	cfg.Sink = tt
	return cfg, tt
}

// running is a projection's Run or Rebuild in the background.
type running struct {
	done chan struct{} // closed when it returned
	err  error
}

// start runs f (a projection's Run or Rebuild) until the test ends.
func start(t *testing.T, f func(context.Context) error) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = f(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
		if r.err != nil && !errors.Is(r.err, projections.ErrSuperseded) {
			t.Errorf("projection: %v", r.err)
		}
	})
	return r
}

const (
	aliceCart = `{"cartId":"alice","items":[{"productId":"apple","name":"APPLE","quantity":5},{"productId":"kiwi","name":"KIWI","quantity":1}]}`
	bobCart   = `{"cartId":"bob smith","items":[{"productId":"apple","name":"APPLE","quantity":1},{"productId":"pear","name":"PEAR","quantity":4}]}`
	topThree  = `[{"productId":"apple","name":"APPLE","timesAdded":3,"quantityAdded":6},{"productId":"pear","name":"PEAR","timesAdded":2,"quantityAdded":5},{"productId":"kiwi","name":"KIWI","timesAdded":1,"quantityAdded":1}]`
)

// TestReadModel: commands through the sidecar -> journal -> projection ->
// HTTP -> SQLite -> queries; a redelivered event changes nothing; the view
// rebuilt in place, and rebuilt from scratch into a new database, equals
// the first.
func TestReadModel(t *testing.T) {
	cart := startCart(t)
	rm := startReadModel(t)
	cfg, sent := projectionConfig(t, "cart-view", rm.URL, false)
	p, err := projections.New(cart.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run1 := start(t, p.Run)

	cart.add("alice", "apple", 2)
	cart.add("alice", "pear", 1)
	rm.waitView(t, "/carts/alice", `{"cartId":"alice","items":[{"productId":"apple","name":"APPLE","quantity":2},{"productId":"pear","name":"PEAR","quantity":1}]}`)
	cart.add("alice", "apple", 3)
	cart.remove("alice", "pear")
	cart.add("alice", "kiwi", 1)
	cart.add("bob smith", "apple", 1) // a key that binary mode percent-encodes
	cart.add("bob smith", "pear", 4)
	rm.waitView(t, "/carts/alice", aliceCart)
	rm.waitView(t, "/carts/bob%20smith", bobCart)
	rm.waitView(t, "/products/top?n=3", topThree)
	rm.waitView(t, "/stats", `{"eventsProcessed":7,"carts":2,"products":3}`)
	want := rm.view(t)
	if got := rm.get(t, "/carts/nobody"); got != `{"cartId":"nobody","items":[]}` {
		t.Errorf("unknown cart: %s", got)
	}

	// Redelivery: the same events again, in both modes, change nothing.
	evs := sent.events()
	if len(evs) != 7 {
		t.Fatalf("%d events sent, want 7", len(evs))
	}
	for _, structured := range []bool{false, true} {
		sink, _ := projections.NewHTTPSink(projections.HTTPSinkConfig{Target: rm.URL, Structured: structured})
		for _, ev := range evs {
			if err := sink.Send(t.Context(), &ev); err != nil {
				t.Fatalf("resend %s: %v", ev.ID(), err)
			}
		}
	}
	if got := rm.view(t); got != want {
		t.Fatalf("view after redelivery:\n%s\nwant:\n%s", got, want)
	}
	rm.waitView(t, "/stats", `{"eventsProcessed":7,"carts":2,"products":3}`)

	// Rebuild in place, as the README does it: pause, reset, rebuild, resume.
	ops, err := projections.New(cart.js, projections.Config{Storage: storage, Name: "cart-view"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ops.Pause(t.Context(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(rm.URL+"/admin/reset", "", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reset: %v %v", resp, err)
	}
	resp.Body.Close()
	if got := rm.get(t, "/stats"); got != `{"eventsProcessed":0,"carts":0,"products":0}` {
		t.Fatalf("stats after reset: %s", got)
	}
	if _, err := ops.Reset(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := ops.Resume(t.Context()); err != nil {
		t.Fatal(err)
	}
	rm.waitView(t, "/stats", `{"eventsProcessed":7,"carts":2,"products":3}`)
	if got := rm.view(t); got != want {
		t.Fatalf("view rebuilt in place:\n%s\nwant:\n%s", got, want)
	}

	// Rebuild from scratch into a new database beside the serving view
	// (structured mode, protobuf data), while carts keep changing.
	fresh := startReadModel(t)
	cfg2, _ := projectionConfig(t, "cart-view", fresh.URL, true)
	active := make(chan int, 1)
	cfg2.OnActive = func(gen int) { active <- gen }
	p2, err := projections.New(cart.js, cfg2)
	if err != nil {
		t.Fatal(err)
	}
	start(t, p2.Rebuild)
	cart.add("carol", "plum", 2)
	select {
	case <-active:
	case <-time.After(30 * time.Second):
		t.Fatal("the rebuild did not take over")
	}
	select {
	case <-run1.done:
		if !errors.Is(run1.err, projections.ErrSuperseded) {
			t.Errorf("the first projector: %v, want ErrSuperseded", run1.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the first projector still runs after the switch")
	}
	fresh.waitView(t, "/carts/carol", `{"cartId":"carol","items":[{"productId":"plum","name":"PLUM","quantity":2}]}`)
	rm.waitView(t, "/carts/carol", `{"cartId":"carol","items":[{"productId":"plum","name":"PLUM","quantity":2}]}`)
	if got, want := fresh.view(t), rm.view(t); got != want {
		t.Fatalf("view rebuilt from scratch:\n%s\nwant:\n%s", got, want)
	}
	if n := rm.count(http.StatusBadRequest) + fresh.count(http.StatusBadRequest); n != 0 {
		t.Errorf("%d events refused", n)
	}
}

// TestReadModelStoreFailure: while the database refuses a change (a
// trigger raises an error), the event is answered 500, not acknowledged,
// and the cart's later events wait behind it; once the database works,
// the redelivered event lands once and the rest follow in order. An event
// of a type the view ignores is acknowledged.
func TestReadModelStoreFailure(t *testing.T) {
	cart := startCart(t)
	rm := startReadModel(t)
	cfg, _ := projectionConfig(t, "cart-view", rm.URL, false)
	p, err := projections.New(cart.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	start(t, p.Run)

	// A second connection to the same file, as an operator's sqlite3 would be.
	db, err := sql.Open("sqlite", "file:"+rm.path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER boom BEFORE INSERT ON cart_items WHEN NEW.product_id = 'boom'
		BEGIN SELECT RAISE(ABORT, 'disk on fire'); END`); err != nil {
		t.Fatal(err)
	}
	cart.add("dave", "boom", 2)
	cart.add("dave", "apple", 1)
	deadline := time.Now().Add(30 * time.Second)
	for rm.count(http.StatusInternalServerError) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no failed deliveries")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := rm.get(t, "/carts/dave"); got != `{"cartId":"dave","items":[]}` {
		t.Fatalf("cart while the database fails: %s", got)
	}
	if got := rm.get(t, "/stats"); got != `{"eventsProcessed":0,"carts":0,"products":0}` {
		t.Fatalf("stats while the database fails: %s (a failed change must not record its id)", got)
	}
	if _, err := db.Exec(`DROP TRIGGER boom`); err != nil {
		t.Fatal(err)
	}
	rm.waitView(t, "/carts/dave", `{"cartId":"dave","items":[{"productId":"boom","name":"BOOM","quantity":2},{"productId":"apple","name":"APPLE","quantity":1}]}`)
	rm.waitView(t, "/stats", `{"eventsProcessed":2,"carts":1,"products":2}`)

	// An event of a type the view does not use (another entity type of the
	// service) is acknowledged, not retried or dead-lettered.
	j, err := streams.NewJournal(cart.js, storage)
	if err != nil {
		t.Fatal(err)
	}
	note, _ := anypb.New(wrapperspb.String("remember the milk"))
	if _, err := j.Append(t.Context(), streams.Entity{Type: "notes", Key: "dave"}, streams.Version{}, []streams.Event{{Type: note.TypeUrl, Data: note.Value}}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		st, err := p.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st[0].Pending == 0 && st[0].AckPending == 0 && st[0].AckFloor == st[0].Delivered && rm.count(http.StatusOK) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the foreign event is not acknowledged: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rm.waitView(t, "/stats", `{"eventsProcessed":2,"carts":1,"products":2}`)
	if n := rm.count(http.StatusBadRequest); n != 0 {
		t.Errorf("%d events refused", n)
	}
}

// TestReadModelBadInput: malformed CloudEvents and data are refused with
// 400 (the projection dead-letters them), events of other types are
// acknowledged and ignored; none changes the view.
func TestReadModelBadInput(t *testing.T) {
	rm := startReadModel(t)
	post := func(header map[string]string, body string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, rm.URL+"/", strings.NewReader(body))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	binary := func(typ, subject, ct string) map[string]string {
		return map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "x:1:0", "Ce-Source": "/jetstate/shoppingcart/shopping-cart",
			"Ce-Type": typ, "Ce-Subject": subject, "Content-Type": ct}
	}
	for _, tc := range []struct {
		name   string
		header map[string]string
		body   string
		want   int
	}{
		{"not a CloudEvent", map[string]string{"Content-Type": "application/json"}, `{}`, 400},
		{"structured, not JSON", map[string]string{"Content-Type": "application/cloudevents+json"}, `{"specversion":`, 400},
		{"structured, no id", map[string]string{"Content-Type": "application/cloudevents+json"},
			`{"specversion":"1.0","source":"/s","type":"` + readmodel.TypeItemAdded + `"}`, 400},
		{"bad percent-encoding", binary(readmodel.TypeItemAdded, "al%zzice", "application/json"), `{"item":{"productId":"a","quantity":1}}`, 400},
		{"data not JSON", binary(readmodel.TypeItemAdded, "alice", "application/json"), `{"item":`, 400},
		{"data not protobuf", binary(readmodel.TypeItemAdded, "alice", "application/protobuf"), "\xff\xff", 400},
		{"unknown content type", binary(readmodel.TypeItemAdded, "alice", "text/csv"), "a,1", 400},
		{"no subject", binary(readmodel.TypeItemRemoved, "", "application/json"), `{"productId":"a"}`, 400},
		{"no product", binary(readmodel.TypeItemAdded, "alice", "application/json"), `{"item":{"quantity":1}}`, 400},
		{"unknown type", binary("com.example.Unknown", "alice", "application/json"), `{"whatever":1}`, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := post(tc.header, tc.body); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
	if got := rm.get(t, "/stats"); got != `{"eventsProcessed":0,"carts":0,"products":0}` {
		t.Errorf("stats after bad input: %s", got)
	}
	// A good event in the same form is applied: the cases above failed
	// for the reason they name.
	if got := post(binary(readmodel.TypeItemAdded, "al%20ice", "application/json"), `{"item":{"productId":"a","name":"A","quantity":1}}`); got != 200 {
		t.Fatalf("good event: %d", got)
	}
	if got := rm.get(t, "/carts/al%20ice"); got != `{"cartId":"al ice","items":[{"productId":"a","name":"A","quantity":1}]}` {
		t.Errorf("cart after a good event: %s", got)
	}
	if code := post(map[string]string{"Content-Type": "application/json"}, ""); code != 400 {
		t.Errorf("empty body: %d", code)
	}
	huge := `{"item":{"productId":"a","name":"` + strings.Repeat("x", readmodel.MaxEventBytes) + `","quantity":1}}`
	if code := post(binary(readmodel.TypeItemAdded, "bob", "application/json"), huge); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized event: %d, want 413", code)
	}
	if got := rm.get(t, "/carts/bob"); got != `{"cartId":"bob","items":[]}` {
		t.Errorf("cart after an oversized event: %s", got)
	}
	resp, err := http.Get(rm.URL + "/products/top?n=0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("n=0: %d", resp.StatusCode)
	}
}

// TestOpenOddPath: a database path with the characters a file: URI gives
// meaning to ('?', '#', '%') opens that very file.
func TestOpenOddPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "view?mode=ro#x%41.db")
	store, err := readmodel.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Contains(names, "view?mode=ro#x%41.db") {
		t.Fatalf("files %q, want view?mode=ro#x%%41.db", names)
	}
}
