package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
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

// errMoved reports a command that reached a sidecar not (or no longer)
// serving the entity's shard: the router tries again, at the owner.
var errMoved = errors.New("shard not served here")

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

// sharding keeps this sidecar's membership alive and its share of the
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
type sharding struct {
	own      *streams.Ownership
	nc       *nats.Conn
	cfg      streams.Config
	me       string
	info     []byte
	log      *slog.Logger
	margin   time.Duration
	interval time.Duration

	base     time.Time    // monotonic origin of leaseEnd
	leaseEnd atomic.Int64 // nanoseconds after base; 0: no lease
	states   []atomic.Int32
	serveFn  func(shard int, subject string) (*nats.Subscription, error)
	drop     func(shard int) // passivates the shard's entities, waiting for commands in flight

	mu    sync.Mutex // serialises the reconciler's writes with handoffs
	revs  []uint64   // our own last write to each shard's entry
	subs  []*nats.Subscription
	watch *streams.Watch
	kick  chan struct{}
	owned atomic.Int32

	frozen atomic.Bool // tests: keep the shard states as they are
}

func newSharding(own *streams.Ownership, nc *nats.Conn, cfg streams.Config, info MemberInfo, log *slog.Logger) *sharding {
	host, _ := os.Hostname()
	if info.Host == "" {
		info.Host = host
	}
	data, _ := json.Marshal(info)
	n := own.Shards()
	ttl := own.MemberTTL()
	return &sharding{
		own: own, nc: nc, cfg: cfg, me: host + "-" + nuid.Next(), info: data, log: log,
		margin: ttl / 4, interval: ttl / 4,
		base: time.Now(), states: make([]atomic.Int32, n), revs: make([]uint64, n), subs: make([]*nats.Subscription, n),
		kick: make(chan struct{}, 1),
	}
}

// serves reports whether commands of shard run on this sidecar now.
func (s *sharding) serves(shard int) bool {
	return s.states[shard].Load() == shardServing && s.leased()
}

func (s *sharding) leased() bool {
	end := s.leaseEnd.Load()
	return end != 0 && int64(time.Since(s.base)) < end
}

// guard is the last check before an entity's state change is stored.
func (s *sharding) guard(e streams.Entity) error {
	if !s.serves(s.own.ShardOf(e)) {
		return fmt.Errorf("%w: lease or shard lost before storing", errMoved)
	}
	return nil
}

// heartbeat renews the membership and the lease.
func (s *sharding) heartbeat(ctx context.Context) error {
	sent := time.Since(s.base)
	hctx, cancel := context.WithTimeout(ctx, s.own.MemberTTL()-s.margin)
	defer cancel()
	if err := s.own.Heartbeat(hctx, s.me, s.info); err != nil {
		return err
	}
	s.leaseEnd.Store(int64(sent + s.own.MemberTTL() - s.margin))
	return nil
}

// join heartbeats until it succeeds and starts the watch.
func (s *sharding) join(ctx context.Context) error {
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

// run heartbeats and reconciles until ctx ends. join must have succeeded.
func (s *sharding) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
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
func (s *sharding) rewatch(ctx context.Context) bool {
	for {
		w, err := s.own.Watch(ctx)
		if err == nil {
			select {
			case <-w.Ready():
				s.watch = w
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

func (s *sharding) poke() {
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
func (s *sharding) reconcile(ctx context.Context, view streams.View) {
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
func (s *sharding) claim(ctx context.Context, shard int, rev uint64) {
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
	if s.serveFn != nil && s.subs[shard] == nil { // else: still lingering, reused
		sub, err := s.serveFn(shard, s.cfg.RouteSubject(shard))
		if err != nil {
			s.log.Warn("cannot take routed commands", "shard", shard, "error", err)
		}
		s.subs[shard] = sub
	}
	s.states[shard].Store(shardServing)
	s.owned.Add(1)
	s.log.Debug("serving shard", "shard", shard)
}

// handoff stops serving shard (refusing its new commands, finishing those
// in flight, passivating its entities) and writes to as its owner.
func (s *sharding) handoff(ctx context.Context, shard int, to string, rev uint64) {
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
func (s *sharding) stop(shard int, next int32) {

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
				_ = sub.Drain()
				s.subs[shard] = nil
			}
		})
	}
	if prev == shardServing {
		s.owned.Add(-1)
	}
	if s.drop != nil {
		s.drop(shard)
	}
}

// leave hands every shard to the members that remain (or frees it if none
// does) and removes this sidecar from the members: graceful shutdown.
func (s *sharding) leave(ctx context.Context) {
	s.handOffAll(ctx)
	// Let the route subscriptions linger out (see stop), then drain them.
	time.Sleep(subscriptionLinger)
	s.mu.Lock()
	defer s.mu.Unlock()
	for shard, sub := range s.subs {
		if sub != nil {
			_ = sub.Drain()
			s.subs[shard] = nil
		}
	}
}

// handOffAll hands every shard this sidecar holds to its successor and
// removes this sidecar from the members.
func (s *sharding) handOffAll(ctx context.Context) {
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

// liveMembers lists the view's members but except.
func liveMembers(v streams.View, except string) []string {
	out := make([]string, 0, len(v.Members))
	for m := range v.Members {
		if m != except {
			out = append(out, m)
		}
	}
	return out
}

func owners(v streams.View) []string {
	out := make([]string, len(v.Owners))
	for i, o := range v.Owners {
		out[i] = o.Member
	}
	return out
}

// assign is who should own each of n shards given the live members and
// the current owners (current[shard], "" or a member that is gone for a
// shard without a live owner). It is sticky: a shard stays with its live
// owner unless that owner holds more than its share, so a member joining
// moves only the joiner's share and a member leaving moves only its own
// shards. Shares differ by at most one (n/members rounded down or up; the
// members holding most now keep the larger shares). Shards to place go
// by rendezvous hashing: of all (shard, member with room) pairs, the
// highest score (FNV-1a of both) first. Every sidecar computes the same
// table from the same view.
func assign(n int, members []string, current []string) []string {
	out := make([]string, n)
	if len(members) == 0 {
		return out
	}
	members = slices.Clone(members)
	slices.Sort(members)
	index := make(map[string]int, len(members))
	for i, m := range members {
		index[m] = i
	}
	score := func(shard, m int) uint64 {
		h := fnv.New64a()
		h.Write([]byte(members[m]))
		h.Write([]byte{0, byte(shard >> 24), byte(shard >> 16), byte(shard >> 8), byte(shard)})
		return h.Sum64()
	}
	// Keep live owners' shards, then cut each owner down to its share.
	held := make([][]int, len(members))
	for shard := range n {
		if shard < len(current) {
			if m, ok := index[current[shard]]; ok {
				held[m] = append(held[m], shard)
			}
		}
	}
	order := make([]int, len(members)) // who gets the larger shares
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(held[b]) - len(held[a]) })
	share := make([]int, len(members))
	for rank, m := range order {
		share[m] = n / len(members)
		if rank < n%len(members) {
			share[m]++
		}
	}
	load := make([]int, len(members))
	for m, shards := range held {
		// Keep the shards this member ranks highest.
		slices.SortFunc(shards, func(a, b int) int { return cmpDesc(score(a, m), score(b, m)) })
		for _, shard := range shards[:min(len(shards), share[m])] {
			out[shard] = members[m]
			load[m]++
		}
	}
	// Place the rest.
	type pair struct {
		score    uint64
		shard, m int
	}
	var pairs []pair
	for shard := range n {
		if out[shard] != "" {
			continue
		}
		for m := range members {
			if load[m] < share[m] {
				pairs = append(pairs, pair{score(shard, m), shard, m})
			}
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := cmpDesc(a.score, b.score); c != 0 {
			return c
		}
		return a.shard - b.shard
	})
	for _, p := range pairs {
		if out[p.shard] == "" && load[p.m] < share[p.m] {
			out[p.shard] = members[p.m]
			load[p.m]++
		}
	}
	return out
}

func cmpDesc(a, b uint64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}
