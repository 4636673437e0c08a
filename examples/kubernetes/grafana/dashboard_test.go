// Package grafana_test checks the Grafana dashboard of the Kubernetes
// example against the metrics jetstate really exports.
package grafana_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/examples/shoppingcart"
	"github.com/jetstate/jetstate/internal/eventingtest"
	"github.com/jetstate/jetstate/internal/systemtest"
	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/proxy/eventing"
	"github.com/jetstate/jetstate/sdk"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// dashboard is the part of Grafana's dashboard JSON the test reads.
type dashboard struct {
	UID, Title string
	Panels     []panel
	Templating struct {
		List []struct {
			Name       string
			Definition string
		}
	}
}

type panel struct {
	ID         int
	Type       string
	Title      string
	Datasource *struct{ Type, UID string }
	Targets    []struct{ Expr, RefID string }
	GridPos    struct{ H, W, X, Y int }
}

var metricName = regexp.MustCompile(`\bjetstate_[a-z_]+\b`)

// queried returns every jetstate_* metric name the dashboard's queries
// (panels and template variables) use.
func queried(t *testing.T, d dashboard) []string {
	t.Helper()
	var names []string
	exprs := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: data source %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			found := metricName.FindAllString(tg.Expr, -1)
			if len(found) == 0 {
				t.Errorf("panel %q: query %q names no jetstate metric", p.Title, tg.Expr)
			}
			names = append(names, found...)
		}
	}
	for _, v := range d.Templating.List {
		names = append(names, metricName.FindAllString(v.Definition, -1)...)
	}
	if exprs < 10 {
		t.Errorf("only %d queries", exprs)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("jetstate-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q", d.UID, d.Title)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q is wider than the grid: %+v", p.Title, p.GridPos)
		}
	}
	return d
}

// TestDashboardMetricsExist: every metric the dashboard queries is on the
// /metrics of a real sidecar (the cart, and a function with eventing
// subscriptions) or of a real projector, once a few commands made the
// lazily created series appear: commands, an eventing event accepted and
// one dead-lettered, a projected event and a dead-lettered one.
func TestDashboardMetricsExist(t *testing.T) {
	d := loadDashboard(t)
	want := queried(t, d)
	js := streamstest.RunServer(t).JetStream(t)

	// One active entity at most, passivated after 100 ms: bob's cart evicts
	// alice's, and bob's is passivated.
	cart := startSidecar(t, js, proxy.Config{Storage: streams.Config{Service: "shoppingcart"}, MaxActiveEntities: 1, PassivationTimeout: 100 * time.Millisecond},
		sdk.Config{ServiceName: "shopping-cart"}, shoppingcart.Entity())
	if err := cart.conn.Invoke(t.Context(), "/com.example.shoppingcart.ShoppingCart/AddItem",
		&shoppingcart.AddLineItem{UserId: "alice", ProductId: "apple", Name: "Apple", Quantity: 1}, &emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := cart.conn.Invoke(t.Context(), "/com.example.shoppingcart.ShoppingCart/AddItem",
		&shoppingcart.AddLineItem{UserId: "bob", ProductId: "poison", Name: "Poison", Quantity: 1}, &emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}

	ev := startSidecar(t, js, proxy.Config{Storage: streams.Config{Service: "events"}}, sdk.Config{ServiceName: "events"}, eventingtest.Entities()...)
	for _, refuse := range []bool{false, true} {
		if err := ev.conn.Invoke(t.Context(), "/"+eventingtest.EntityOne+"/EmitEvent", eventingtest.Emit("a", refuse), &emptypb.Empty{}); err != nil {
			t.Fatal(err)
		}
	}

	projector := startProjector(t, js)

	var missing []string
	waitUntil(t, "every queried metric exported", func() bool {
		have := map[string]bool{}
		for _, url := range []string{cart.metrics, ev.metrics, projector} {
			for _, n := range scrape(t, url) {
				have[n] = true
			}
		}
		missing = missing[:0]
		for _, n := range want {
			if !have[n] && !have[n+"_bucket"] {
				missing = append(missing, n)
			}
		}
		return len(missing) == 0
	}, func() string { return "missing: " + strings.Join(missing, ", ") })
	t.Logf("%d metrics queried, all exported", len(want))
}

// sidecar is a running sidecar: its ingress and its /metrics.
type sidecar struct {
	conn    *grpc.ClientConn
	metrics string
}

// startSidecar runs a function with entities and a sidecar (cfg, on
// loopback, provisioning, eventing events tried once) in front of it, with
// its own registry served as `jetstate proxy` serves it.
func startSidecar(t *testing.T, js jetstream.JetStream, cfg proxy.Config, fcfg sdk.Config, entities ...sdk.Entity) sidecar {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Provision, cfg.Listen, cfg.Registry = &streams.StoreConfig{}, "127.0.0.1:0", reg
	cfg.UserFunction = systemtest.ServeFunction(t, fcfg, entities...)
	cfg.Eventing = eventing.Config{MaxTries: 1}
	p := systemtest.RunSidecar(t, js, cfg)
	admin := httptest.NewServer(p.AdminHandler(reg))
	t.Cleanup(admin.Close)
	conn := systemtest.Dial(t, p.Addr().String())
	return sidecar{conn: conn, metrics: admin.URL + "/metrics"}
}

// startProjector projects the cart's journal into a sink that refuses
// the poison (a dead letter) and returns its /metrics.
func startProjector(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	sink := projections.SinkFunc(func(_ context.Context, ev *event.Event) error {
		if strings.Contains(string(ev.Data()), "poison") {
			return projections.ErrRejected
		}
		return nil
	})
	p, err := projections.New(js, projections.Config{Storage: streams.Config{Service: "shoppingcart"}, Name: "cart-view", Sink: sink, Registry: reg, InfoInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("projection: %v", err)
		}
	})
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// scrape returns the sample names on a /metrics page.
func scrape(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var names []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names = append(names, line[:i])
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return names
}

// waitUntil polls ok until it holds or 20 s pass, then fails with why().
func waitUntil(t *testing.T, what string, ok func() bool, why func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20s: %s; %s", what, why())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
