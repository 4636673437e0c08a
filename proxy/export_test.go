package proxy

import "time"

// ForceServe makes p believe it owns shard, whatever the shard table says
// (tests of fencing: two sidecars serving one shard must not fork a
// journal). p stops reconciling its shards. The lease is renewed far ahead so that nothing takes it back.
func ForceServe(p *Proxy, shard int) {
	p.sharding.frozen.Store(true)
	p.sharding.leaseEnd.Store(int64(time.Since(p.sharding.base) + time.Hour))
	p.sharding.states[shard].Store(shardServing)
}

// Serves reports whether p serves shard now.
func Serves(p *Proxy, shard int) bool { return p.sharding.serves(shard) }
