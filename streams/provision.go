package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MinAPILevel is the lowest JetStream API level jetstate works with. Level 1
// is nats-server 2.11, the first with batched Direct Get (journal replay)
// and with the fixes for clustered expected-sequence checks.
const MinAPILevel = 1

// Durability says when the server acknowledges a write.
type Durability string

const (
	// DurabilityFlush (the default) acknowledges a write once it is in the
	// operating system's buffers; the server fsyncs every sync_interval
	// (2 minutes by default). With R3 an acknowledged write is on a majority
	// of servers, so it survives any single server crash but not a power
	// loss of the majority.
	DurabilityFlush Durability = "flush"

	// DurabilityAlways acknowledges a write only after fsync. It is a
	// server-wide setting (`jetstream { sync_interval: always }`); the
	// stream records the intent in its metadata so operators can check.
	// Roughly 20x slower on R1 (see the README's performance section).
	DurabilityAlways Durability = "always"
)

// Storage is where a stream keeps its messages.
type Storage string

const (
	// FileStorage keeps messages on disk (the default).
	FileStorage Storage = "file"
	// MemoryStorage keeps messages in memory only: for tests and demos.
	MemoryStorage Storage = "memory"
)

// Defaults for StoreConfig fields left zero.
const (
	DefaultReplicas   = 1
	DefaultMaxMsgSize = 1 << 20
	DefaultShards     = 100
	DefaultMemberTTL  = 6 * time.Second
)

// MinMemberTTL is the shortest member TTL: the server expires keys at a
// granularity of about a second.
const MinMemberTTL = time.Second

// StoreConfig is how a service's streams and buckets are provisioned. A
// zero field means its documented default.
type StoreConfig struct {
	// Replicas is 1 (a single server) or 3 (a Raft group that survives the
	// loss of one server). Default 1.
	Replicas int
	// Storage defaults to FileStorage.
	Storage Storage
	// Durability defaults to DurabilityFlush.
	Durability Durability
	// MaxMsgSize bounds one command's events (and one value or snapshot),
	// in bytes. It cannot exceed the server's max_payload. Default 1 MiB.
	MaxMsgSize int32
	// MaxAge is how long journal entries are kept; 0 keeps them forever.
	MaxAge time.Duration
	// MaxBytes bounds the journal stream's size; 0 is unbounded. When full,
	// appends fail instead of old events being dropped.
	MaxBytes int64
	// Shards is the number of shards the service's entities are hashed to.
	// It is fixed when the service is first provisioned: provisioning with
	// another number fails. Default 100.
	Shards int
	// MemberTTL is how long a sidecar stays a member after its last
	// heartbeat: a sidecar that stops heartbeating loses its shards after
	// this long. Sidecars read it from the bucket. Default 6 s.
	MemberTTL time.Duration
}

func (s StoreConfig) withDefaults() StoreConfig {
	if s.Replicas == 0 {
		s.Replicas = DefaultReplicas
	}
	if s.Storage == "" {
		s.Storage = FileStorage
	}
	if s.Durability == "" {
		s.Durability = DurabilityFlush
	}
	if s.MaxMsgSize == 0 {
		s.MaxMsgSize = DefaultMaxMsgSize
	}
	if s.Shards == 0 {
		s.Shards = DefaultShards
	}
	if s.MemberTTL == 0 {
		s.MemberTTL = DefaultMemberTTL
	}
	return s
}

// Validate reports every problem with the store config at once.
func (s StoreConfig) Validate() error {
	s = s.withDefaults()
	var errs []error
	if s.Replicas != 1 && s.Replicas != 3 {
		errs = append(errs, fmt.Errorf("replicas must be 1 or 3, not %d", s.Replicas))
	}
	if s.Storage != FileStorage && s.Storage != MemoryStorage {
		errs = append(errs, fmt.Errorf("storage must be %q or %q, not %q", FileStorage, MemoryStorage, s.Storage))
	}
	if s.Durability != DurabilityFlush && s.Durability != DurabilityAlways {
		errs = append(errs, fmt.Errorf("durability must be %q or %q, not %q", DurabilityFlush, DurabilityAlways, s.Durability))
	}
	if s.MaxMsgSize < 0 || s.MaxAge < 0 || s.MaxBytes < 0 {
		errs = append(errs, errors.New("limits must not be negative"))
	}
	if s.Shards < 1 || s.Shards > MaxShards {
		errs = append(errs, fmt.Errorf("shards must be between 1 and %d, not %d", MaxShards, s.Shards))
	}
	if s.MemberTTL < MinMemberTTL {
		errs = append(errs, fmt.Errorf("member TTL must be at least %v, not %v", MinMemberTTL, s.MemberTTL))
	}
	return errors.Join(errs...)
}

func (s StoreConfig) storageType() jetstream.StorageType {
	if s.Storage == MemoryStorage {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// CheckServer asks the server for its JetStream API level and refuses a
// server without JetStream (ErrNoJetStream) or older than MinAPILevel
// (ErrUnsupportedServer). It returns the level.
func CheckServer(ctx context.Context, js jetstream.JetStream) (int, error) {
	info, err := js.AccountInfo(ctx)
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		errors.Is(err, nats.ErrNoResponders):
		return 0, fmt.Errorf("check server: %w", ErrNoJetStream)
	case err != nil:
		return 0, fmt.Errorf("check server: %w", err)
	}
	if info.API.Level < MinAPILevel {
		return info.API.Level, fmt.Errorf("check server: %w: JetStream API level %d, jetstate needs %d (nats-server 2.11 or newer)",
			ErrUnsupportedServer, info.API.Level, MinAPILevel)
	}
	return info.API.Level, nil
}

// Provision creates the journal stream, the CRDT stream and the snapshot,
// value, discovery, member and shard buckets of cfg.Service (and the prefix's eventing
// stream), or updates them to sc if they exist. It is idempotent and
// checks the server first (see CheckServer).
func Provision(ctx context.Context, js jetstream.JetStream, cfg Config, sc StoreConfig) error {
	if err := errors.Join(cfg.Validate(), sc.Validate()); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	cfg, sc = cfg.withDefaults(), sc.withDefaults()
	if _, err := CheckServer(ctx, js); err != nil {
		return err
	}
	meta := map[string]string{
		"jetstate.service":    cfg.Service,
		"jetstate.durability": string(sc.Durability),
		"jetstate.format":     "1",
	}
	discard := jetstream.DiscardOld
	if sc.MaxBytes > 0 {
		discard = jetstream.DiscardNew // never drop history to make room
	}
	journal := jetstream.StreamConfig{
		Name:              cfg.JournalStream(),
		Description:       "jetstate journals of service " + cfg.Service,
		Subjects:          []string{cfg.JournalSubjects()},
		Retention:         jetstream.LimitsPolicy,
		Discard:           discard,
		MaxAge:            sc.MaxAge,
		MaxBytes:          orUnlimited(sc.MaxBytes),
		MaxMsgs:           -1,
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        sc.MaxMsgSize,
		Storage:           sc.storageType(),
		Replicas:          sc.Replicas,
		AllowDirect:       true,
		DenyDelete:        true,
		Metadata:          meta,
	}
	if _, err := js.CreateOrUpdateStream(ctx, journal); err != nil {
		return fmt.Errorf("provision stream %s: %w", journal.Name, err)
	}
	crdt := jetstream.StreamConfig{
		Name:              cfg.CRDTStream(),
		Description:       "jetstate CRDT entity states of service " + cfg.Service,
		Subjects:          []string{cfg.CRDTSubjects()},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgs:           -1,
		MaxBytes:          -1, // the journal's MaxAge and MaxBytes would drop live states
		MaxMsgsPerSubject: 1,  // a replica's new state replaces its previous one
		MaxMsgSize:        sc.MaxMsgSize,
		Storage:           sc.storageType(),
		Replicas:          sc.Replicas,
		AllowDirect:       true,
		DenyDelete:        true,
		Metadata:          meta,
	}
	if _, err := js.CreateOrUpdateStream(ctx, crdt); err != nil {
		return fmt.Errorf("provision stream %s: %w", crdt.Name, err)
	}
	for _, kv := range []jetstream.KeyValueConfig{
		{Bucket: cfg.SnapshotBucket(), Description: "jetstate snapshots of service " + cfg.Service},
		{Bucket: cfg.ValueBucket(), Description: "jetstate value entities of service " + cfg.Service},
		{Bucket: cfg.DiscoveryBucket(), Description: "jetstate: what the user function of service " + cfg.Service + " answered to discovery"},
	} {
		kv.History = 1
		kv.MaxValueSize = sc.MaxMsgSize
		kv.Storage = sc.storageType()
		kv.Replicas = sc.Replicas
		kv.Metadata = meta
		if _, err := js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
			return fmt.Errorf("provision bucket %s: %w", kv.Bucket, err)
		}
	}
	if err := provisionOwnership(ctx, js, cfg, sc, meta); err != nil {
		return err
	}
	return EnsureEventingStream(ctx, js, cfg, sc, 0)
}

// DefaultTopicMaxAge is how long the eventing stream keeps topic messages
// and dead letters unless told otherwise.
const DefaultTopicMaxAge = 7 * 24 * time.Hour

// EnsureEventingStream creates the prefix's eventing stream (topics and dead
// letters, see Config.EventingStream) with the store's replicas and storage
// unless it exists. It is shared by every service of the prefix, so an
// existing one is left as it is: whoever created it chose its limits.
// maxAge 0 means DefaultTopicMaxAge.
func EnsureEventingStream(ctx context.Context, js jetstream.JetStream, cfg Config, sc StoreConfig, maxAge time.Duration) error {
	sc = sc.withDefaults()
	if maxAge <= 0 {
		maxAge = DefaultTopicMaxAge
	}
	name := cfg.EventingStream()
	if _, err := js.Stream(ctx, name); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("eventing stream %s: %w", name, err)
	}
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "jetstate eventing: topics and dead letters",
		Subjects:    cfg.EventingSubjects(),
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      maxAge,
		MaxMsgSize:  sc.MaxMsgSize,
		Storage:     sc.storageType(),
		Replicas:    sc.Replicas,
		Duplicates:  min(2*time.Minute, maxAge),
		// The console finds the latest dead letters with Direct Get
		// (TailStart) instead of reading them all.
		AllowDirect: true,
		Metadata:    map[string]string{"jetstate.format": "1"},
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create eventing stream %s: %w", name, err)
	}
	return nil
}

func orUnlimited(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}
