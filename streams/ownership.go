package streams

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// MaxShards bounds StoreConfig.Shards.
const MaxShards = 10_000

// shardsMetadata records a service's shard count in its shard bucket.
const shardsMetadata = "jetstate.shards"

// provisionOwnership creates the member and shard buckets. The shard count
// is fixed at first provisioning: entities would move between shards
// otherwise, so another count is refused.
func provisionOwnership(ctx context.Context, js jetstream.JetStream, cfg Config, sc StoreConfig, meta map[string]string) error {
	shardMeta := maps.Clone(meta)
	shardMeta[shardsMetadata] = strconv.Itoa(sc.Shards)
	if kv, err := js.KeyValue(ctx, cfg.ShardBucket()); err == nil {
		st, err := kv.Status(ctx)
		if err != nil {
			return fmt.Errorf("provision bucket %s: %w", cfg.ShardBucket(), err)
		}
		if have := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Metadata[shardsMetadata]; have != "" && have != shardMeta[shardsMetadata] {
			return fmt.Errorf("provision bucket %s: service %s has %s shards, not %d: the shard count is fixed per service",
				cfg.ShardBucket(), cfg.Service, have, sc.Shards)
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("provision bucket %s: %w", cfg.ShardBucket(), err)
	}
	for _, kv := range []jetstream.KeyValueConfig{
		{Bucket: cfg.ShardBucket(), Description: "jetstate shard owners of service " + cfg.Service, Metadata: shardMeta},
		{Bucket: cfg.MemberBucket(), Description: "jetstate sidecars of service " + cfg.Service, Metadata: meta,
			TTL: sc.MemberTTL, LimitMarkerTTL: sc.MemberTTL},
	} {
		kv.History = 1
		kv.Storage = sc.storageType()
		kv.Replicas = sc.Replicas
		if _, err := js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
			return fmt.Errorf("provision bucket %s: %w", kv.Bucket, err)
		}
	}
	return nil
}

// Ownership is where the sidecars of a service meet: a member bucket in
// which each live sidecar heartbeats (keys expire after the member TTL, and
// the expiry is visible to watchers), and a shard table holding the owner
// of each shard, written only with revision checks. It stores; deciding who
// should own what is the caller's business. It is safe for concurrent use.
type Ownership struct {
	cfg     Config
	members jetstream.KeyValue
	shards  jetstream.KeyValue
	w       casWriter
	ttl     time.Duration
	count   int
}

// NewOwnership binds the service's member and shard buckets and reads the
// shard count and member TTL they were provisioned with. It fails with
// ErrStreamNotFound if the service was not provisioned.
func NewOwnership(ctx context.Context, js jetstream.JetStream, cfg Config) (*Ownership, error) {
	shards, cfg, err := bindBucket(ctx, js, cfg, cfg.ShardBucket())
	if err != nil {
		return nil, err
	}
	members, _, err := bindBucket(ctx, js, cfg, cfg.MemberBucket())
	if err != nil {
		return nil, err
	}
	o := &Ownership{cfg: cfg, members: members, shards: shards,
		w: casWriter{js: js, stream: "KV_" + cfg.ShardBucket(), cfg: cfg}}
	st, err := shards.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", cfg.ShardBucket(), err)
	}
	n, err := strconv.Atoi(st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Metadata[shardsMetadata])
	if err != nil || n < 1 || n > MaxShards {
		return nil, fmt.Errorf("bind %s: %w: no valid shard count in its metadata", cfg.ShardBucket(), ErrCorrupt)
	}
	o.count = n
	mst, err := members.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", cfg.MemberBucket(), err)
	}
	if o.ttl = mst.TTL(); o.ttl < MinMemberTTL || mst.(*jetstream.KeyValueBucketStatus).LimitMarkerTTL() == 0 {
		return nil, fmt.Errorf("bind %s: %w: member bucket without TTL and expiry markers", cfg.MemberBucket(), ErrCorrupt)
	}
	return o, nil
}

// Shards is the service's shard count.
func (o *Ownership) Shards() int { return o.count }

// MemberTTL is how long a member stays after its last heartbeat.
func (o *Ownership) MemberTTL() time.Duration { return o.ttl }

// ShardOf maps an entity to its shard: FNV-1a (32 bit) of its type, a zero
// byte and its key, modulo the shard count. It never changes for a service.
func (o *Ownership) ShardOf(e Entity) int { return ShardOf(e, o.count) }

// ShardOf is Ownership.ShardOf for a given shard count.
func ShardOf(e Entity, shards int) int {
	h := fnv.New32a()
	h.Write([]byte(e.Type))
	h.Write([]byte{0})
	h.Write([]byte(e.Key))
	return int(h.Sum32() % uint32(shards))
}

// Heartbeat records member id as alive for another member TTL, with info
// (free-form, for operators) as its value. The write is acknowledged by
// the bucket's stream: when Heartbeat returns nil, id is a member until at
// least MemberTTL after Heartbeat was called.
func (o *Ownership) Heartbeat(ctx context.Context, id string, info []byte) error {
	if _, err := o.members.Put(ctx, EncodeToken(id), info); err != nil {
		return fmt.Errorf("heartbeat %s: %w", id, err)
	}
	return nil
}

// Leave removes member id at once (graceful shutdown).
func (o *Ownership) Leave(ctx context.Context, id string) error {
	if err := o.members.Purge(ctx, EncodeToken(id)); err != nil {
		return fmt.Errorf("leave %s: %w", id, err)
	}
	return nil
}

// SetOwner writes member as the owner of shard provided the shard's
// revision is still expected (0: never owned), and returns the new
// revision. An empty member releases the shard. A stale revision fails
// with a *ConflictError (errors.Is ErrConflict) and writes nothing.
func (o *Ownership) SetOwner(ctx context.Context, shard int, member string, expected uint64) (uint64, error) {
	if shard < 0 || shard >= o.count {
		return 0, fmt.Errorf("set owner of shard %d: no such shard (0..%d)", shard, o.count-1)
	}
	msg := nats.NewMsg("$KV." + o.cfg.ShardBucket() + "." + strconv.Itoa(shard))
	msg.Data = []byte(member)
	rev, err := o.w.publish(ctx, msg, nuid.Next(), expected)
	if err != nil {
		return 0, fmt.Errorf("set owner of shard %d: %w", shard, err)
	}
	return rev, nil
}

// Owner is a shard's entry in the shard table.
type Owner struct {
	// Member owns the shard; "" if nobody does.
	Member string
	// Revision is the entry's revision, for SetOwner; 0 if never written.
	Revision uint64
}

// View is one sidecar's knowledge of the members and the shard table.
type View struct {
	// Members maps each live member to its heartbeat info.
	Members map[string][]byte
	// Owners has one entry per shard.
	Owners []Owner
}

// Watch keeps a View current: it follows both buckets from the leader of
// their streams (ordered consumers), so a view is never older than a write
// the server acknowledged before the watch saw it, but it may lag behind
// the latest one.
type Watch struct {
	mu      sync.Mutex
	view    View
	changed chan struct{}
	ready   chan struct{}
	done    chan struct{}
	err     error
}

// Watch starts following the buckets until ctx ends. Ready is closed once
// the initial state of both buckets has arrived.
func (o *Ownership) Watch(ctx context.Context) (*Watch, error) {
	mw, err := o.members.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", o.cfg.MemberBucket(), err)
	}
	sw, err := o.shards.WatchAll(ctx)
	if err != nil {
		_ = mw.Stop()
		return nil, fmt.Errorf("watch %s: %w", o.cfg.ShardBucket(), err)
	}
	w := &Watch{
		view:    View{Members: map[string][]byte{}, Owners: make([]Owner, o.count)},
		changed: make(chan struct{}), ready: make(chan struct{}), done: make(chan struct{}),
	}
	go w.run(ctx, o, mw, sw)
	return w, nil
}

func (w *Watch) run(ctx context.Context, o *Ownership, mw, sw jetstream.KeyWatcher) {
	defer close(w.done)
	defer func() { _ = mw.Stop(); _ = sw.Stop() }()
	mInit, sInit := false, false
	for {
		var (
			e   jetstream.KeyValueEntry
			ok  bool
			mem bool
		)
		select {
		case <-ctx.Done():
			return
		case e, ok = <-mw.Updates():
			mem = true
		case e, ok = <-sw.Updates():
		}
		if !ok {
			w.mu.Lock()
			w.err = errors.New("watch ended")
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		switch {
		case e == nil && mem:
			mInit = true
		case e == nil:
			sInit = true
		case mem:
			id, err := DecodeToken(e.Key())
			if err == nil {
				if e.Operation() == jetstream.KeyValuePut {
					w.view.Members[id] = e.Value()
				} else {
					delete(w.view.Members, id)
				}
			}
		default:
			n, err := strconv.Atoi(e.Key())
			if err == nil && n >= 0 && n < o.count {
				owner := Owner{Revision: e.Revision()}
				if e.Operation() == jetstream.KeyValuePut {
					owner.Member = string(e.Value())
				}
				w.view.Owners[n] = owner
			}
		}
		if mInit && sInit {
			select {
			case <-w.ready:
			default:
				close(w.ready)
			}
			close(w.changed)
			w.changed = make(chan struct{})
		}
		w.mu.Unlock()
	}
}

// Ready is closed once the view holds the buckets' state as of the start.
func (w *Watch) Ready() <-chan struct{} { return w.ready }

// Done is closed when the watch stopped (its context ended or it failed).
func (w *Watch) Done() <-chan struct{} { return w.done }

// Owner is shard's entry in the shard table as the watch sees it now
// (zero for a shard out of range), without copying the view.
func (w *Watch) Owner(shard int) Owner {
	w.mu.Lock()
	defer w.mu.Unlock()
	if shard < 0 || shard >= len(w.view.Owners) {
		return Owner{}
	}
	return w.view.Owners[shard]
}

// View returns a copy of the current view and a channel closed at its next
// change.
func (w *Watch) View() (View, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return View{Members: maps.Clone(w.view.Members), Owners: append([]Owner(nil), w.view.Owners...)}, w.changed
}

// ShardRanges writes sorted shard numbers as runs joined by sep: "0-3, 7, 9-12"
// with sep ", ". jetstate shards and the console show ownership this way.
func ShardRanges(shards []int, sep string) string {
	var b strings.Builder
	for i := 0; i < len(shards); {
		j := i
		for j+1 < len(shards) && shards[j+1] == shards[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteString(sep)
		}
		if i == j {
			fmt.Fprint(&b, shards[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", shards[i], shards[j])
		}
		i = j + 1
	}
	return b.String()
}
