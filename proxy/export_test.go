package proxy

import "time"

// ForceServe makes p believe it owns shard, whatever the shard table says
// (tests of fencing: two sidecars serving one shard must not fork a
// journal). p stops reconciling its shards. The lease is renewed far ahead so that nothing takes it back.
func ForceServe(p *Proxy, shard int) {
	s := p.sharding
	s.frozen.Store(true)
	// Wait out a reconcile that began before the freeze: it could still
	// hand the shard away.
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaseEnd.Store(int64(time.Since(s.base) + time.Hour))
	s.states[shard].Store(shardServing)
}

// Serves reports whether p serves shard now.
func Serves(p *Proxy, shard int) bool { return p.sharding.serves(shard) }
