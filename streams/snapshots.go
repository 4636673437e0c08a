package streams

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
)

// Snapshot is an entity's state as of a journal Version. Recovery loads the
// latest snapshot and replays the journal after snapshot.Version.
type Snapshot struct {
	Version
	// Data is the serialized state; the store does not look inside.
	Data []byte
}

// Snapshots stores the latest snapshot of each event-sourced entity of a
// service in a KV bucket. It is safe for concurrent use.
//
// A snapshot is derived data: loading a stale one (KV reads may be served
// by a lagging replica) only means replaying more of the journal, and
// writing from a deposed owner cannot corrupt anything because appends are
// fenced by the journal, not by snapshots.
type Snapshots struct {
	kv  jetstream.KeyValue
	cfg Config
}

// NewSnapshots binds the service's snapshot bucket. It fails with
// ErrStreamNotFound if the service was not provisioned.
func NewSnapshots(ctx context.Context, js jetstream.JetStream, cfg Config) (*Snapshots, error) {
	kv, cfg, err := bindBucket(ctx, js, cfg, cfg.SnapshotBucket())
	if err != nil {
		return nil, err
	}
	return &Snapshots{kv: kv, cfg: cfg}, nil
}

func bindBucket(ctx context.Context, js jetstream.JetStream, cfg Config, bucket string) (jetstream.KeyValue, Config, error) {
	if err := cfg.Validate(); err != nil {
		return nil, cfg, err
	}
	cfg = cfg.withDefaults()
	kv, err := js.KeyValue(ctx, bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, cfg, fmt.Errorf("bind %s: %w", bucket, ErrStreamNotFound)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		errors.Is(err, nats.ErrNoResponders):
		return nil, cfg, fmt.Errorf("bind %s: %w", bucket, ErrNoJetStream)
	case err != nil:
		return nil, cfg, fmt.Errorf("bind %s: %w", bucket, err)
	}
	return kv, cfg, nil
}

// Save stores snap as the entity's latest snapshot, replacing any older one.
func (s *Snapshots) Save(ctx context.Context, e Entity, snap Snapshot) error {
	if err := e.Validate(); err != nil {
		return err
	}
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, snap.Seq)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, snap.StreamSeq)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, snap.Data)
	if _, err := s.kv.Put(ctx, e.token(), b); err != nil {
		if errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
			err = fmt.Errorf("%w: %v", ErrTooLarge, err)
		}
		return fmt.Errorf("save snapshot %s: %w", e, err)
	}
	return nil
}

// Load returns the entity's latest snapshot, or found false if it has none.
func (s *Snapshots) Load(ctx context.Context, e Entity) (snap Snapshot, found bool, err error) {
	if err := e.Validate(); err != nil {
		return Snapshot{}, false, err
	}
	entry, err := s.kv.Get(ctx, e.token())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Snapshot{}, false, nil
	}
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("load snapshot %s: %w", e, err)
	}
	snap, err = decodeSnapshot(entry.Value())
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("load snapshot %s: %w", e, err)
	}
	return snap, true, nil
}

// Delete removes the entity's snapshot, if any.
func (s *Snapshots) Delete(ctx context.Context, e Entity) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if err := s.kv.Delete(ctx, e.token()); err != nil {
		return fmt.Errorf("delete snapshot %s: %w", e, err)
	}
	return nil
}

func decodeSnapshot(b []byte) (Snapshot, error) {
	var snap Snapshot
	err := walkFields(b, func(num protowire.Number, typ protowire.Type, v []byte) int {
		var n int
		switch {
		case num == 1 && typ == protowire.VarintType:
			snap.Seq, n = protowire.ConsumeVarint(v)
		case num == 2 && typ == protowire.VarintType:
			snap.StreamSeq, n = protowire.ConsumeVarint(v)
		case num == 3 && typ == protowire.BytesType:
			snap.Data, n = protowire.ConsumeBytes(v)
		default:
			return skipField
		}
		return n
	})
	if err != nil {
		return Snapshot{}, err
	}
	return snap, nil
}
