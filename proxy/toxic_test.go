package proxy_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// toxicLink is a fault-injecting TCP proxy between two parts under test:
// toxiproxy run in-process through its Go API (no HTTP server). Clients
// connect to Addr instead of the upstream; toxics added to the link act on
// every connection through it, open or new, until they are removed.
type toxicLink struct {
	t testing.TB
	p *toxiproxy.Proxy
}

var quietToxiproxy sync.Once

func newToxicLink(t testing.TB, name, upstream string) *toxicLink {
	t.Helper()
	// Some toxics log through zerolog's global logger.
	quietToxiproxy.Do(func() { zerolog.SetGlobalLevel(zerolog.Disabled) })
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy %s: %v", name, err)
	}
	t.Cleanup(p.Stop)
	return &toxicLink{t: t, p: p}
}

// Addr is where clients connect (host:port).
func (l *toxicLink) Addr() string { return l.p.Listen }

// toxic is one toxiproxy toxic: its type ("latency", "bandwidth",
// "reset_peer", "timeout", "limit_data", ...), the direction it acts on
// ("upstream": client to server, "downstream": server to client) and its
// attributes as toxiproxy's API takes them.
type toxic struct {
	Type   string
	Stream string
	Attrs  map[string]any
}

// add adds the toxics, each under the name <type>_<stream>.
func (l *toxicLink) add(toxics ...toxic) {
	l.t.Helper()
	for _, tx := range toxics {
		body, err := json.Marshal(map[string]any{
			"name": tx.Type + "_" + tx.Stream, "type": tx.Type, "stream": tx.Stream, "toxicity": 1.0, "attributes": tx.Attrs,
		})
		if err != nil {
			l.t.Fatal(err)
		}
		if _, err := l.p.Toxics.AddToxicJson(strings.NewReader(string(body))); err != nil {
			l.t.Fatalf("toxiproxy %s: add %s: %v", l.p.Name, body, err)
		}
	}
}

// remove removes the toxics added with add. Removing a timeout toxic closes
// the connections it held (toxiproxy's behaviour).
func (l *toxicLink) remove(toxics ...toxic) {
	l.t.Helper()
	for _, tx := range toxics {
		if err := l.p.Toxics.RemoveToxic(l.t.Context(), tx.Type+"_"+tx.Stream); err != nil {
			l.t.Fatalf("toxiproxy %s: remove %s_%s: %v", l.p.Name, tx.Type, tx.Stream, err)
		}
	}
}
