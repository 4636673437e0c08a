package shard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/jetstate/jetstate/streams"
)

// subscriptionLinger is how long a shard's route subscription stays after
// the shard stopped being served (see sharding.stop).
const subscriptionLinger = 500 * time.Millisecond

// Shard states of one sidecar.
const (
	shardIdle      int32 = iota // not ours
	shardServing                // ours: commands run here
	shardLeaving                // being handed off: commands are refused
	shardSuspended              // ours in the table, but our lease lapsed: to be confirmed
)

// MemberInfo is what a sidecar publishes about itself in the member bucket.
type MemberInfo struct {
	Host    string    `json:"host,omitempty"`
	Version string    `json:"version,omitempty"`
	Started time.Time `json:"started"`
}

// Sharding keeps this sidecar's membership alive and its share of the
// shards claimed, served and handed off. Who should own a shard is computed
// by every sidecar alike from the live members (assign); taking a shard is
// a fenced write in the shard table, and serving it needs a live lease.
//
// The lease: a sidecar serves only until its last acknowledged heartbeat,
// counted from when it was sent, plus the member TTL less a margin. The
// server expires the member's key no sooner than a TTL after storing that
// heartbeat, and only then may another sidecar claim the shard; so the old
// owner has stopped before the new one starts (clocks may drift by less
// than the margin in one TTL). The journal's CAS fences writes regardless.
type Sharding struct {
	own      *streams.Ownership
	nc       *nats.Conn
	cfg      Config
	me       string
	info     []byte
	log      *slog.Logger
	margin   time.Duration
	interval time.Duration
	m        *metrics

	base     time.Time    // monotonic origin of leaseEnd
	leaseEnd atomic.Int64 // nanoseconds after base; 0: no lease
	states   []atomic.Int32
	hmu      sync.Mutex     // guards hclosed and handlers.Add
	hclosed  bool           // Leave began waiting for the handlers
	handlers sync.WaitGroup // routed commands being handled here
	peers    *peers         // when answers of routed commands are lost

	mu   sync.Mutex // serialises the reconciler's writes with handoffs
	revs []uint64   // our own last write to each shard's entry
	subs []*nats.Subscription
	// drains are the route subscriptions let go of and still draining:
	// the commands they took are answered before the connection closes.
	drains map[*nats.Subscription]<-chan nats.SubStatus
	watch  *streams.Watch
	// current is watch, for readers outside Run (Members); joined is
	// closed once there is one.
	current  atomic.Pointer[streams.Watch]
	joined   chan struct{}
	joinOnce sync.Once
	kick     chan struct{}
	owned    atomic.Int32

	frozen atomic.Bool // ForceServe: keep the shard states as they are
}

// New returns the sharding of one sidecar; it takes part once Join
// succeeded.
func New(cfg Config) *Sharding {
	cfg = cfg.withDefaults()
	host, _ := os.Hostname()
	info := cfg.Info
	if info.Host == "" {
		info.Host = host
	}
	data, _ := json.Marshal(info)
	own := cfg.Ownership
	n := own.Shards()
	ttl := own.MemberTTL()
	return &Sharding{
		own: own, nc: cfg.Conn, cfg: cfg, me: host + "-" + nuid.Next(), info: data, log: cfg.Log,
		margin: ttl / 4, interval: ttl / 4, m: newMetrics(cfg.Registry),
		base: time.Now(), states: make([]atomic.Int32, n), revs: make([]uint64, n), subs: make([]*nats.Subscription, n),
		kick: make(chan struct{}, 1), joined: make(chan struct{}),
		peers: newPeers(cfg.OwnerGoneGrace), drains: map[*nats.Subscription]<-chan nats.SubStatus{},
	}
}

// Serves reports whether commands of shard run on this sidecar now.
func (s *Sharding) Serves(shard int) bool {
	return s.states[shard].Load() == shardServing && s.leased()
}

func (s *Sharding) leased() bool {
	end := s.leaseEnd.Load()
	return end != 0 && int64(time.Since(s.base)) < end
}

// ShardOf is the shard of entity e.
func (s *Sharding) ShardOf(e streams.Entity) int { return s.own.ShardOf(e) }

// Check is the last check before an entity's state change is stored
// (entity.Guard): an error if this sidecar no longer serves e's shard.
func (s *Sharding) Check(e streams.Entity) error {
	if shard := s.own.ShardOf(e); !s.Serves(shard) {
		return fmt.Errorf("lease or shard %d lost before storing", shard)
	}
	return nil
}

// Member is this sidecar's id in the member bucket.
func (s *Sharding) Member() string { return s.me }

// Members lists the live members of the service, as this sidecar's watch
// of the member bucket sees them (this sidecar included once it joined),
// and a channel closed when the view changes (entity.Members). Before Join
// the list is this sidecar alone.
func (s *Sharding) Members() ([]string, <-chan struct{}) {
	w := s.current.Load()
	if w == nil {
		return []string{s.me}, s.joined
	}
	v, changed := w.View()
	return slices.Sorted(maps.Keys(v.Members)), changed
}

// Owned is the number of shards this sidecar serves now.
func (s *Sharding) Owned() int { return int(s.owned.Load()) }

// heartbeat renews the membership and the lease.
func (s *Sharding) heartbeat(ctx context.Context) error {
	sent := time.Since(s.base)
	hctx, cancel := context.WithTimeout(ctx, s.own.MemberTTL()-s.margin)
	defer cancel()
	if err := s.own.Heartbeat(hctx, s.me, s.info); err != nil {
		return err
	}
	s.leaseEnd.Store(int64(sent + s.own.MemberTTL() - s.margin))
	return nil
}

// Join heartbeats until it succeeds and starts the watch.
func (s *Sharding) Join(ctx context.Context) error {
	for {
		err := s.heartbeat(ctx)
		if err == nil {
			break
		}
		s.log.Warn("cannot join the service's members yet", "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.interval):
		}
	}
	// The watch is retried like the heartbeat: right after a NATS node
	// restarts, creating it can time out while the bucket elects a leader.
	if !s.rewatch(ctx) {
		return ctx.Err()
	}
	s.log.Info("joined", "member", s.me, "shards", s.own.Shards(), "member_ttl", s.own.MemberTTL())
	return nil
}

// Run heartbeats and reconciles until ctx ends. Join must have succeeded.
func (s *Sharding) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.peers.follow(ctx, s.nc) })
	wg.Go(func() {
		t := time.NewTicker(s.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			had := s.leased()
			if err := s.heartbeat(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("heartbeat failed", "error", err, "lease_left", time.Duration(s.leaseEnd.Load()-int64(time.Since(s.base))))
			}
			if had != s.leased() {
				s.poke()
			}
		}
	})
	for {
		view, changed := s.watch.View()
		s.peers.seen(view.Members)
		s.reconcile(ctx, view)
		var leaseLapse <-chan time.Time
		if s.leased() {
			leaseLapse = time.After(time.Duration(s.leaseEnd.Load()-int64(time.Since(s.base))) + time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-s.kick:
		case <-leaseLapse:
		case <-s.watch.Done():
			// The watch ended (it should not): start another.
			if !s.rewatch(ctx) {
				return
			}
		}
	}
}

// rewatch starts the ownership watch (or replaces an ended one), retrying
// every interval; it returns false when ctx ends first.
func (s *Sharding) rewatch(ctx context.Context) bool {
	for {
		w, err := s.own.Watch(ctx)
		if err == nil {
			select {
			case <-w.Ready():
				s.watch = w
				s.current.Store(w)
				s.joinOnce.Do(func() { close(s.joined) })
				return true
			case <-ctx.Done():
				return false
			}
		}
		if ctx.Err() != nil {
			return false
		}
		s.log.Warn("ownership watch failed; retrying", "error", err)
		select {
		case <-time.After(s.interval):
		case <-ctx.Done():
			return false
		}
	}
}

func (s *Sharding) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// reconcile moves this sidecar's shards toward the assignment computed from
// view: it suspends everything without a lease, releases shards assigned
// to another live member, claims shards assigned to it that are free or
// held by a member that is gone, and confirms shards it held before its
// lease lapsed.
func (s *Sharding) reconcile(ctx context.Context, view streams.View) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen.Load() {
		return
	}
	if !s.leased() {
		for shard := range s.states {
			if st := s.states[shard].Load(); st == shardServing {
				s.log.Warn("lease lapsed: suspending shard", "shard", shard)
				s.stop(shard, shardSuspended)
			}
		}
		return
	}
	if _, ok := view.Members[s.me]; !ok {
		return // our own heartbeat is not in the view yet
	}
	desired := assign(len(s.states), liveMembers(view, ""), owners(view))
	for shard, cur := range view.Owners {
		if ctx.Err() != nil {
			return
		}
		st := s.states[shard].Load()
		_, curAlive := view.Members[cur.Member]
		switch {
		case (st == shardServing || st == shardSuspended) && cur.Member != s.me && cur.Revision >= s.revs[shard]:
			// Someone took it (we were deemed gone): let go.
			s.log.Warn("shard taken over", "shard", shard, "by", cur.Member)
			s.stop(shard, shardIdle)
		case cur.Member == s.me && desired[shard] != s.me:
			s.handoff(ctx, shard, desired[shard], max(cur.Revision, s.revs[shard]))
		case cur.Member == s.me && st != shardServing:
			// Ours in the table but not served: after a lapsed lease, or
			// a view that lags our own write. Confirm with a fenced write.
			s.claim(ctx, shard, max(cur.Revision, s.revs[shard]))
		case desired[shard] == s.me && st == shardIdle && (cur.Member == "" || !curAlive):
			s.claim(ctx, shard, cur.Revision)
		}
	}
}

// claim writes us as the shard's owner (fenced by rev) and serves it.
func (s *Sharding) claim(ctx context.Context, shard int, rev uint64) {
	wctx, cancel := context.WithTimeout(ctx, s.own.MemberTTL())
	defer cancel()

	nrev, err := s.own.SetOwner(wctx, shard, s.me, rev)
	if err != nil {
		if !errors.Is(err, streams.ErrConflict) && ctx.Err() == nil {
			s.log.Warn("claim failed", "shard", shard, "error", err)
		}
		return // the view will show what happened
	}
	s.revs[shard] = nrev
	if s.subs[shard] == nil { // else: still lingering, reused
		sub, err := s.serve(shard)
		if err != nil {
			s.log.Warn("cannot take routed commands", "shard", shard, "error", err)
		}
		s.subs[shard] = sub
	}
	s.states[shard].Store(shardServing)
	s.owned.Add(1)
	s.m.owned.Inc()
	s.log.Debug("serving shard", "shard", shard)
}

// handoff stops serving shard (refusing its new commands, finishing those
// in flight, passivating its entities) and writes to as its owner.
func (s *Sharding) handoff(ctx context.Context, shard int, to string, rev uint64) {
	if s.states[shard].Load() != shardIdle {
		s.stop(shard, shardLeaving)
	}
	wctx, cancel := context.WithTimeout(ctx, s.own.MemberTTL())
	defer cancel()
	nrev, err := s.own.SetOwner(wctx, shard, to, rev)
	if err != nil {
		if !errors.Is(err, streams.ErrConflict) && ctx.Err() == nil {
			s.log.Warn("handoff failed", "shard", shard, "to", to, "error", err)
		}
	} else {
		s.revs[shard] = nrev
		s.log.Debug("handed off", "shard", shard, "to", to)
	}
	s.states[shard].Store(shardIdle)
}

// stop stops serving shard: new commands are refused at once, routed ones
// stop arriving, and its active entities are passivated.
func (s *Sharding) stop(shard int, next int32) {

	prev := s.states[shard].Swap(next)
	if sub := s.subs[shard]; sub != nil {
		// The subscription lingers, answering MOVED, before it is
		// drained: in a NATS cluster, interest travels between servers
		// asynchronously, and a request another server still forwards
		// here after an immediate unsubscribe would be dropped unanswered
		// (the requester would wait out its timeout, not knowing whether
		// the command ran). A new claim meanwhile reuses it.
		time.AfterFunc(subscriptionLinger, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.subs[shard] == sub && s.states[shard].Load() != shardServing {
				s.drain(sub)
				s.subs[shard] = nil
			}
		})
	}
	if prev == shardServing {
		s.owned.Add(-1)
		s.m.owned.Dec()
	}
	s.cfg.Local.PassivateShard(shard)
}

// Leave hands every shard to the members that remain (or frees it if none
// does), removes this sidecar from the members and waits for the routed
// commands it is handling: graceful shutdown.
func (s *Sharding) Leave(ctx context.Context) {
	s.handOffAll(ctx)
	// Let the route subscriptions linger out (see stop), then drain them.
	time.Sleep(subscriptionLinger)
	s.mu.Lock()
	for shard, sub := range s.subs {
		if sub != nil {
			s.drain(sub)
			s.subs[shard] = nil
		}
	}
	drains := slices.Collect(maps.Values(s.drains))
	s.mu.Unlock()
	// Routed commands still arriving are refused as STOPPING, which their
	// senders retry at the next owner; those taken finish. Every command
	// a subscription took is answered before Leave returns (and the
	// connection may close): one dropped unanswered would leave its
	// sender waiting out the command timeout.
	s.hmu.Lock()
	s.hclosed = true
	s.hmu.Unlock()
	for _, closed := range drains {
		select {
		case <-closed:
		case <-ctx.Done():
		}
	}
	s.handlers.Wait()
}

// drain lets go of a route subscription: the commands it holds are still
// handled. s.mu is held.
func (s *Sharding) drain(sub *nats.Subscription) {
	for old := range s.drains {
		if !old.IsValid() {
			delete(s.drains, old)
		}
	}
	closed := sub.StatusChanged(nats.SubscriptionClosed)
	if err := sub.Drain(); err != nil {
		return // closed already (the connection is gone)
	}
	s.drains[sub] = closed
}

// handOffAll hands every shard this sidecar holds to its successor and
// removes this sidecar from the members.
func (s *Sharding) handOffAll(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	view, _ := s.watch.View()
	members := liveMembers(view, s.me)
	desired := assign(len(s.states), members, owners(view))
	var wg sync.WaitGroup
	for shard := range s.states {
		if s.states[shard].Load() == shardIdle && view.Owners[shard].Member != s.me {
			continue
		}
		to := ""
		if len(members) > 0 {
			to = desired[shard]
		}
		rev := max(view.Owners[shard].Revision, s.revs[shard])
		wg.Go(func() { s.handoff(ctx, shard, to, rev) })
	}
	wg.Wait()
	if err := s.own.Leave(ctx, s.me); err != nil {
		s.log.Warn("leave failed; the membership expires by itself", "error", err)
	}
	s.leaseEnd.Store(0)
}

// ForceServe makes s serve shard whatever the shard table says, and stops
// its reconciling, with a lease renewed far ahead so that nothing takes the
// shard back. It exists for tests of fencing (two sidecars serving one
// shard must not fork a journal); a real sidecar never calls it.
func (s *Sharding) ForceServe(shard int) {
	s.frozen.Store(true)
	// Wait out a reconcile that began before the freeze: it could still
	// hand the shard away.
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaseEnd.Store(int64(time.Since(s.base) + time.Hour))
	s.states[shard].Store(shardServing)
}
