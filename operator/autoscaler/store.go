package autoscaler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams"
)

// StoreConfig says where the autoscaler's state lives. A zero field means
// its documented default.
type StoreConfig struct {
	// Prefix is the storage prefix (default "jetstate"); the bucket is
	// <prefix>_autoscaler.
	Prefix string
	// Replicas of the bucket's stream (default 1). Use the store's stream
	// replicas so the state survives what the journals survive.
	Replicas int
}

// Bucket is the name of the KV bucket holding the state.
func (c StoreConfig) Bucket() string {
	if c.Prefix == "" {
		c.Prefix = streams.DefaultPrefix
	}
	return c.Prefix + "_autoscaler"
}

// Store keeps each service's State in a JetStream KV bucket, one key per
// service, as JSON (readable with `nats kv get`). Writes are conditional on
// the revision read, so two operators cannot silently overwrite each other.
// It is safe for concurrent use.
type Store struct {
	kv jetstream.KeyValue
}

// NewStore creates the bucket if it is missing (or updates its settings)
// and returns a Store on it.
func NewStore(ctx context.Context, js jetstream.JetStream, cfg StoreConfig) (*Store, error) {
	replicas := max(cfg.Replicas, 1)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket(),
		Description: "jetstate autoscaler: decision state per service",
		History:     1,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("autoscaler bucket %s: %w", cfg.Bucket(), err)
	}
	return &Store{kv: kv}, nil
}

func stateKey(service string) string { return streams.EncodeToken(service) }

// Load returns service's state and its revision; a service never saved
// has the zero State and revision 0.
func (s *Store) Load(ctx context.Context, service string) (State, uint64, error) {
	e, err := s.kv.Get(ctx, stateKey(service))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return State{}, 0, nil
	}
	if err != nil {
		return State{}, 0, fmt.Errorf("load state of %s: %w", service, err)
	}
	var st State
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return State{}, 0, fmt.Errorf("state of %s does not parse: %w", service, err)
	}
	return st, e.Revision(), nil
}

// Save writes service's state if the stored revision is still rev (0: not
// stored yet) and returns the new revision. A lost race is ErrConflict.
func (s *Store) Save(ctx context.Context, service string, st State, rev uint64) (uint64, error) {
	data, err := json.Marshal(st)
	if err != nil {
		return 0, err
	}
	var next uint64
	if rev == 0 {
		next, err = s.kv.Create(ctx, stateKey(service), data)
	} else {
		next, err = s.kv.Update(ctx, stateKey(service), data, rev)
	}
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return next, nil
	case errors.Is(err, jetstream.ErrKeyExists),
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
		return 0, fmt.Errorf("save state of %s at revision %d: %w", service, rev, ErrConflict)
	default:
		return 0, fmt.Errorf("save state of %s: %w", service, err)
	}
}

// Delete forgets service's state (the service was deleted); deleting a
// state that is not stored is not an error. A Runner still tracking the
// service writes it again on its next decision.
func (s *Store) Delete(ctx context.Context, service string) error {
	if err := s.kv.Purge(ctx, stateKey(service)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete state of %s: %w", service, err)
	}
	return nil
}
