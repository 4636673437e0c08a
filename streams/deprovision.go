package streams

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Deprovision deletes everything Provision created for cfg.Service: the
// journal and CRDT streams and the snapshot, value, discovery, member and shard
// buckets, with all the data in them. It is idempotent: what is already gone is skipped.
// Sidecars still running for the service fail their next write with
// ErrStreamNotFound. Other services under the same prefix are untouched.
func Deprovision(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("deprovision: %w", err)
	}
	cfg = cfg.withDefaults()
	var errs []error
	for _, s := range []string{cfg.JournalStream(), cfg.CRDTStream()} {
		if err := js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			errs = append(errs, fmt.Errorf("deprovision stream %s: %w", s, err))
		}
	}
	for _, b := range []string{cfg.SnapshotBucket(), cfg.ValueBucket(), cfg.DiscoveryBucket(), cfg.MemberBucket(), cfg.ShardBucket()} {
		if err := js.DeleteKeyValue(ctx, b); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			errs = append(errs, fmt.Errorf("deprovision bucket %s: %w", b, err))
		}
	}
	return errors.Join(errs...)
}
