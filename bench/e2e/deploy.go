package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/examples/shoppingcart"
	"github.com/jetstate/jetstate/streams"
)

// service is the jetstate service name the sidecars run under.
const service = "bench"

// sidecar is one running sidecar.
type sidecar struct {
	proc    *proc
	ingress string // host:port
	admin   string // host:port
}

// deployment is one scenario's processes: a nats-server, and per sidecar its cart function.
type deployment struct {
	group
	nats      *proc
	natsURL   string
	sidecars  []*sidecar // [0] takes the load; in a routed scenario [1] owns the carts' shards
	functions []*proc    // the cart function of each sidecar
	keys      []string   // the carts so far, one per load generator thread
	owner     string     // routed: the member id of sidecars[1]
	watch     *streams.Watch
	own       *streams.Ownership
	nc        *nats.Conn
	cancel    context.CancelFunc
}

// deploy starts the processes of s in dir: nats-server, the cart function and the sidecar,
// twice over for a routed scenario, and picks the carts.
func deploy(ctx context.Context, bins binaries, s Scenario, dir string) (_ *deployment, err error) {
	d := &deployment{group: group{dir: dir}}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	ports, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	// nats-server with its own store; fsync on every write for durability "always".
	sync := ""
	if s.Durability == "always" {
		sync = "  sync_interval: always\n"
	}
	conf := filepath.Join(dir, "nats.conf")
	store := filepath.Join(dir, "jetstream")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listen: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\njetstream {\n  store_dir: %q\n%s}\n",
		ports[0], ports[1], store, sync), 0o644); err != nil {
		return nil, err
	}
	if d.nats, err = startProc("nats-server", filepath.Join(dir, "nats-server.log"), nil, bins.NATS, "-c", conf); err != nil {
		return nil, err
	}
	d.add(d.nats)
	d.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", ports[0])
	if err := waitHTTP(ctx, &d.group, fmt.Sprintf("http://127.0.0.1:%d/healthz?js-enabled-only=true", ports[1]), 30*time.Second); err != nil {
		return nil, err
	}
	if err := checkSync(ctx, fmt.Sprintf("http://127.0.0.1:%d/varz", ports[1]), s.Durability == "always"); err != nil {
		return nil, err
	}

	start := func(i int, fnPort, ingressPort, adminPort int) error {
		fn, err := startProc(fmt.Sprintf("cart function %d", i), filepath.Join(dir, fmt.Sprintf("shoppingcart-%d.log", i)),
			[]string{"HOST=127.0.0.1", "PORT=" + itoa(fnPort)}, bins.Cart)
		if err != nil {
			return err
		}
		d.add(fn)
		d.functions = append(d.functions, fn)
		sc := &sidecar{ingress: fmt.Sprintf("127.0.0.1:%d", ingressPort), admin: fmt.Sprintf("127.0.0.1:%d", adminPort)}
		var env []string
		if s.Procs > 0 {
			env = []string{"GOMAXPROCS=" + itoa(s.Procs)}
		}
		sc.proc, err = startProc(fmt.Sprintf("sidecar %d", i), filepath.Join(dir, fmt.Sprintf("sidecar-%d.log", i)), env, bins.Jetstate,
			"proxy", "-nats-url", d.natsURL, "-provision", "-service", service, "-sync", s.Durability,
			"-host", "127.0.0.1", "-port", itoa(ingressPort), "-admin", sc.admin,
			"-user-function-host", "127.0.0.1", "-user-function-port", itoa(fnPort), "-pprof")
		if err != nil {
			return err
		}
		d.add(sc.proc)
		d.sidecars = append(d.sidecars, sc)
		return waitHTTP(ctx, &d.group, "http://"+sc.admin+"/ready", time.Minute)
	}
	if err := start(0, ports[2], ports[3], ports[4]); err != nil {
		return nil, err
	}
	if !s.Routed {
		return d, nil
	}

	// Routed: the first sidecar takes every shard; once the second has joined and the
	// shards are shared, the load goes to the second, for carts whose shard the first owns.
	if err := d.watchShards(ctx); err != nil {
		return nil, err
	}
	first, err := d.settled(ctx, 1)
	if err != nil {
		return nil, err
	}
	if err := start(1, ports[5], ports[6], ports[7]); err != nil {
		return nil, err
	}
	if _, err := d.settled(ctx, 2); err != nil {
		return nil, err
	}
	d.owner = first[0]
	d.sidecars[0], d.sidecars[1] = d.sidecars[1], d.sidecars[0]
	d.functions[0], d.functions[1] = d.functions[1], d.functions[0]
	return d, nil
}

// cartKeys is the carts of n load generator threads, the same for the first threads at every
// step: cart-<i>, or in a routed scenario the first cart-<i>-<j> whose shard the owner sidecar
// owns.
func (d *deployment) cartKeys(n int) []string {
	for i := len(d.keys); i < n; i++ {
		key := fmt.Sprintf("cart-%d", i)
		for j := 0; d.owner != "" && d.ownerOf(key) != d.owner; j++ {
			key = fmt.Sprintf("cart-%d-%d", i, j)
		}
		d.keys = append(d.keys, key)
	}
	return d.keys[:n]
}

// watchShards follows the service's member and shard buckets.
func (d *deployment) watchShards(ctx context.Context) error {
	nc, err := nats.Connect(d.natsURL, nats.Name("jetstate bench-e2e"))
	if err != nil {
		return err
	}
	d.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	if d.own, err = streams.NewOwnership(ctx, js, streams.Config{Service: service}); err != nil {
		return err
	}
	if d.watch, err = d.own.Watch(wctx); err != nil {
		return err
	}
	select {
	case <-d.watch.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// settled waits until n sidecars are live members and own every shard, in shares that
// differ by at most one (what they assign themselves), and returns the members.
func (d *deployment) settled(ctx context.Context, n int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		view, changed := d.watch.View()
		if members, ok := balanced(view, n); ok {
			return members, nil
		}
		if err := d.died(); err != nil {
			return nil, err
		}
		select {
		case <-changed:
		case <-d.watch.Done():
			return nil, errors.New("the shard watch stopped")
		case <-time.After(time.Second): // look at the processes again
		case <-ctx.Done():
			return nil, fmt.Errorf("shards not shared by %d sidecars: %w", n, ctx.Err())
		}
	}
}

// balanced reports whether view has n live members owning every shard in near-equal shares.
func balanced(view streams.View, n int) ([]string, bool) {
	if len(view.Members) != n || len(view.Owners) == 0 {
		return nil, false
	}
	count := map[string]int{}
	for _, o := range view.Owners {
		if _, live := view.Members[o.Member]; !live {
			return nil, false
		}
		count[o.Member]++
	}
	lo, hi := len(view.Owners)/n, (len(view.Owners)+n-1)/n
	var members []string
	for m := range view.Members {
		if count[m] < lo || count[m] > hi {
			return nil, false
		}
		members = append(members, m)
	}
	return members, true
}

// ownerOf is the member owning the shard of the event-sourced cart key.
func (d *deployment) ownerOf(key string) string {
	return d.watch.Owner(d.own.ShardOf(streams.Entity{Type: shoppingcart.PersistenceID, Key: key})).Member
}

// routedIntact reports whether every cart's shard is still owned by the sidecar that does not
// take the load (a routed scenario's premise); true for other scenarios.
func (d *deployment) routedIntact() bool {
	if d.owner == "" {
		return true
	}
	for _, k := range d.keys {
		if d.ownerOf(k) != d.owner {
			return false
		}
	}
	return true
}

// close stops the shard watch and every process.
func (d *deployment) close() {
	if d.cancel != nil {
		d.cancel()
	}
	if d.nc != nil {
		d.nc.Close()
	}
	d.stopAll()
}

// checkSync asks nats-server's monitoring endpoint (varz) whether JetStream fsyncs every
// write, and fails unless that is what the scenario asked for.
func checkSync(ctx context.Context, varz string, always bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, varz, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var v struct {
		JetStream struct {
			Config struct {
				SyncAlways bool `json:"sync_always"`
			} `json:"config"`
		} `json:"jetstream"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return fmt.Errorf("%s: %w", varz, err)
	}
	if got := v.JetStream.Config.SyncAlways; got != always {
		return fmt.Errorf("nats-server's sync_always is %v, want %v", got, always)
	}
	return nil
}
