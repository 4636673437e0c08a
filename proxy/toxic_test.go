package proxy_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
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
	quietToxiproxy.Do(func() {
		// Some toxics log through zerolog's global logger.
		zerolog.SetGlobalLevel(zerolog.Disabled)
		toxics.Register("strand", new(strandToxic))
	})
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

// strand strands every connection through the link, open or opened until
// heal is called, for ever (see strandToxic); connections opened after heal
// work. The toxic stays on the link.
func (l *toxicLink) strand() (heal func()) {
	l.t.Helper()
	fault := fmt.Sprintf("%s-%p", l.p.Name, l)
	healed := new(atomic.Bool)
	strandHealed.Store(fault, healed)
	l.add(toxic{"strand", "upstream", map[string]any{"fault": fault}}, toxic{"strand", "downstream", map[string]any{"fault": fault}})
	return func() { healed.Store(true) }
}

// strandToxic makes half-open connections as a peer that vanished without
// a FIN or RST leaves them (a crashed host, a dropped NAT or conntrack
// entry): a stranded connection takes everything and delivers nothing, and
// is never closed; the others pass data through. Which connections are
// stranded is fixed when the toxic meets them: all open ones when it is
// added, and new ones until its fault is healed. toxiproxy's own toxics
// cannot heal this way: a toxic acts on every connection alike, and
// removing the timeout toxic closes the connections it held, which tells
// the client to reconnect.
type strandToxic struct {
	Fault string `json:"fault"` // key in strandHealed
}

// strandHealed maps a strandToxic's fault to whether it is healed.
var strandHealed sync.Map

type strandState struct{ stranded bool }

// NewState is called for each connection the toxic meets.
func (t *strandToxic) NewState() any {
	healed, ok := strandHealed.Load(t.Fault)
	return &strandState{stranded: !ok || !healed.(*atomic.Bool).Load()}
}

func (t *strandToxic) Pipe(stub *toxics.ToxicStub) {
	stranded := stub.State.(*strandState).stranded
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if !stranded {
				stub.Output <- c
			}
		}
	}
}
