package streams

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// discoveryKey is the one key of the discovery bucket.
const discoveryKey = "spec"

// Discovery keeps what a service's user function answered to discovery, so
// that tools reading the service's storage without its function (the
// console) can name its entity types and decode its events. The store does
// not look inside: the sidecar writes the marshalled CloudState EntitySpec.
// Only the latest answer is kept. It is safe for concurrent use.
type Discovery struct {
	kv jetstream.KeyValue
}

// NewDiscovery binds the service's discovery bucket. It fails with
// ErrStreamNotFound if the service was not provisioned, or was provisioned
// by a jetstate that did not make the bucket yet.
func NewDiscovery(ctx context.Context, js jetstream.JetStream, cfg Config) (*Discovery, error) {
	kv, _, err := bindBucket(ctx, js, cfg, cfg.DiscoveryBucket())
	if err != nil {
		return nil, err
	}
	return &Discovery{kv: kv}, nil
}

// Put stores spec as the latest answer. An answer equal to the stored one
// is not written again, so sidecars restarting with the same function
// cost one read each.
func (d *Discovery) Put(ctx context.Context, spec []byte) error {
	old, found, err := d.Get(ctx)
	if err != nil {
		return err
	}
	if found && bytes.Equal(old, spec) {
		return nil
	}
	if _, err := d.kv.Put(ctx, discoveryKey, spec); err != nil {
		if errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
			err = fmt.Errorf("%w: %v", ErrTooLarge, err)
		}
		return fmt.Errorf("put discovery: %w", err)
	}
	return nil
}

// Get returns the latest answer, or found false if no sidecar stored one.
func (d *Discovery) Get(ctx context.Context) (spec []byte, found bool, err error) {
	e, err := d.kv.Get(ctx, discoveryKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("get discovery: %w", err)
	}
	return e.Value(), true, nil
}
