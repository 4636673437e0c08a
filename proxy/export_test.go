package proxy

import (
	"context"
	"time"

	"github.com/jetstate/jetstate/proxy/load"
)

// ForceServe makes p believe it owns shard, whatever the shard table says
// (tests of fencing: two sidecars serving one shard must not fork a
// journal). p stops reconciling its shards.
func ForceServe(p *Proxy, shard int) { p.shards.Load().ForceServe(shard) }

// Serves reports whether p serves shard now.
func Serves(p *Proxy, shard int) bool { return p.shards.Load().Serves(shard) }

// StartLoadReports starts a second reporter of p's load, every period
// (Run's reports every second; each measurement goes into exactly one of
// the two), and returns the function that stops it.
func StartLoadReports(ctx context.Context, p *Proxy, period time.Duration) (stop func()) {
	return load.Start(ctx, load.NewReporter(p.nc, p.cfg.Storage, MemberID(p), p.load, period))
}

// MemberID is p's id in the member bucket and in its load reports.
func MemberID(p *Proxy) string { return p.shards.Load().Member() }

// ActiveCRDTs is the number of CRDT entities active on p.
func ActiveCRDTs(p *Proxy) int {
	n := 0
	for _, rt := range p.crdts {
		n += rt.Active()
	}
	return n
}
