package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MaxReplicaLen is the longest CRDT replica id, in bytes. Replica ids are
// escaped into one subject token like keys; longer ids fail with
// ErrInvalidKey.
const MaxReplicaLen = 256

// tombstoneReplica is the replica id of an entity's tombstone: the empty
// id, which no sidecar has (Publish refuses it).
const tombstoneReplica = ""

// CRDTs stores the replicated state of a service's CRDT entities: for every
// (entity, replica) one message in the service's CRDT stream, the replica's
// latest whole state, which replaces its previous one (the stream keeps one
// message per subject, so an entity's storage never grows with its number of
// updates). Merging states is the caller's: they are opaque bytes here. It is
// safe for concurrent use.
//
// A deleted entity has a tombstone (the message of the empty replica id);
// once written it stays, and the entity is deleted for good.
type CRDTs struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	w      casWriter
	cfg    Config
}

// CRDTState is one replica's state of a CRDT entity as stored: Seq is the
// stream sequence of the message holding it, which increases with every
// state stored for the service.
type CRDTState struct {
	Replica string
	Data    []byte
	Seq     uint64
}

// NewCRDTs binds the service's CRDT stream. It fails with ErrStreamNotFound
// if the service was not provisioned (see Provision), ErrNoJetStream if the
// server has no JetStream.
func NewCRDTs(ctx context.Context, js jetstream.JetStream, cfg Config) (*CRDTs, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	name := cfg.CRDTStream()
	s, err := js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("bind %s: %w", name, ErrStreamNotFound)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("bind %s: %w", name, ErrNoJetStream)
	case err != nil:
		return nil, fmt.Errorf("bind %s: %w", name, err)
	}
	return &CRDTs{js: js, stream: s, w: casWriter{js: js, stream: name, cfg: cfg}, cfg: cfg}, nil
}

// validReplica checks a replica id: not empty (that is the tombstone's),
// at most MaxReplicaLen bytes.
func validReplica(replica string) error {
	switch {
	case replica == "":
		return fmt.Errorf("%w: empty replica id", ErrInvalidKey)
	case len(replica) > MaxReplicaLen:
		return fmt.Errorf("%w: replica id is %d bytes, limit %d", ErrInvalidKey, len(replica), MaxReplicaLen)
	}
	return nil
}

// Publish stores data as replica's whole state of e, replacing the state
// replica stored before, and returns its stream sequence once the server
// acknowledged it (with R3, once a majority stored it).
//
// An invalid entity or replica id ("" included) fails with ErrInvalidKey; a
// state larger than the stream takes fails so that TooLarge(err) is true.
// Transient refusals (no responders during an election, timeouts,
// reconnects) are retried until ctx is done; a retry whose first attempt
// landed stores the same state twice, the second replacing the first.
// Publishing after e's tombstone stores the state but e stays deleted.
func (c *CRDTs) Publish(ctx context.Context, e Entity, replica string, data []byte) (uint64, error) {
	if err := errors.Join(e.Validate(), validReplica(replica)); err != nil {
		return 0, err
	}
	return c.publish(ctx, e, replica, data)
}

func (c *CRDTs) publish(ctx context.Context, e Entity, replica string, data []byte) (uint64, error) {
	msg := nats.NewMsg(c.cfg.CRDTSubject(e, replica))
	msg.Data = data
	return c.w.send(ctx, msg, nil)
}

// Load returns the latest state of every replica of e (ordered by Seq),
// whether e is deleted (then states is empty), and a stream sequence last
// such that Follow(e, last) delivers every state published after Load
// read and none that Load returned. last is 0 when e has nothing stored.
//
// Load is linearizable: it reads from the stream leader (never a follower's
// Direct Get), so it sees every Publish acknowledged before it was called.
// It costs one round trip per replica, plus one.
func (c *CRDTs) Load(ctx context.Context, e Entity) (states []CRDTState, deleted bool, last uint64, err error) {
	if err := e.Validate(); err != nil {
		return nil, false, 0, err
	}
	head := c.cfg.crdtEntitySubject(e) + "."
	get := msgGetRequest{NextFor: head + "*", Seq: 1}
	for {
		m, err := leaderGetRetry(ctx, c.js, c.w.stream, get, c.cfg)
		if err != nil {
			return nil, false, 0, fmt.Errorf("load crdt %s: %w", e, err)
		}
		if m == nil {
			break
		}
		// The walk ends when the leader holds nothing on e's subjects after
		// last; whatever is stored later gets a later sequence, so
		// Follow(last) misses none of it.
		last, get.Seq = m.Sequence, m.Sequence+1
		replica, err := parseReplica(m.Subject, head)
		if err != nil {
			return nil, false, 0, fmt.Errorf("load crdt %s: %w", e, err)
		}
		if replica == tombstoneReplica {
			deleted = true
			continue
		}
		states = append(states, CRDTState{Replica: replica, Data: m.Data, Seq: m.Sequence})
	}
	if deleted {
		states = nil
	}
	return states, deleted, last, nil
}

// Delete writes e's tombstone, acknowledged as Publish is, and then purges
// every replica's state of e stored before it; it returns the tombstone's
// stream sequence. From then on Load reports e deleted, whatever is
// published later. Deleting again writes a new tombstone and purges again.
func (c *CRDTs) Delete(ctx context.Context, e Entity) (uint64, error) {
	if err := e.Validate(); err != nil {
		return 0, err
	}
	seq, err := c.publish(ctx, e, tombstoneReplica, nil)
	if err != nil {
		return 0, fmt.Errorf("delete crdt %s: %w", e, err)
	}
	// Purge below the tombstone: it stays, states published after it too.
	if err := c.purge(ctx, jetstream.WithPurgeSubject(c.cfg.crdtEntitySubject(e)+".*"), jetstream.WithPurgeSequence(seq)); err != nil {
		return seq, fmt.Errorf("delete crdt %s: tombstone at %d: %w", e, seq, err)
	}
	return seq, nil
}

// Forget purges replica's state of e: for a replica that is gone, once the
// state a live replica published includes it. It does not check that.
// Forgetting a state that is not stored succeeds.
func (c *CRDTs) Forget(ctx context.Context, e Entity, replica string) error {
	if err := errors.Join(e.Validate(), validReplica(replica)); err != nil {
		return err
	}
	if err := c.purge(ctx, jetstream.WithPurgeSubject(c.cfg.CRDTSubject(e, replica))); err != nil {
		return fmt.Errorf("forget crdt %s of %s: %w", replica, e, err)
	}
	return nil
}

// purge purges what opts select, retrying transient refusals until ctx is
// done.
func (c *CRDTs) purge(ctx context.Context, opts ...jetstream.StreamPurgeOpt) error {
	bo := newBackoff()
	for {
		actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
		err := c.stream.Purge(actx, opts...)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("purge: %w (last attempt: %v)", ctx.Err(), err)
		case errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("purge: %w: %s", ErrStreamNotFound, c.w.stream)
		case errors.Is(err, nats.ErrNoResponders):
			if err := streamExists(ctx, c.js, c.w.stream, c.cfg.AttemptTimeout); err != nil {
				return fmt.Errorf("purge: %w", err)
			}
		case !transient(err):
			return fmt.Errorf("purge: %w", err)
		}
		c.cfg.Logger.DebugContext(ctx, "purge retry", "stream", c.w.stream, "error", err)
		if err := bo.Wait(ctx); err != nil {
			return fmt.Errorf("purge: %w", err)
		}
	}
}

// MaxPayload is the largest state one Publish can store: the server's
// max_payload, or the CRDT stream's max message size if that is smaller,
// less MessageOverhead. It asks the server for the stream's configuration;
// ErrStreamNotFound if it does not exist.
func (c *CRDTs) MaxPayload(ctx context.Context) (int, error) {
	return maxPayload(ctx, c.js, c.w.stream)
}

// parseReplica returns the replica id of a subject of e (whose head is
// "<entity subject>."), or an error for any other subject.
func parseReplica(subject, head string) (string, error) {
	if !strings.HasPrefix(subject, head) {
		return "", fmt.Errorf("%w: subject %s is not under %s", ErrCorrupt, subject, head)
	}
	replica, err := DecodeToken(subject[len(head):])
	if err != nil {
		return "", fmt.Errorf("%w: subject %s: %v", ErrCorrupt, subject, err)
	}
	return replica, nil
}

// parseCRDTSubject returns the entity and replica of a CRDT subject of the
// service (whose head is "<prefix>_crdt.<service>."): the three tokens
// type, key and replica after it.
func parseCRDTSubject(subject, head string) (Entity, string, error) {
	rest, ok := strings.CutPrefix(subject, head)
	toks := strings.Split(rest, ".")
	if !ok || len(toks) != 3 {
		return Entity{}, "", fmt.Errorf("%w: subject %s is not a CRDT subject under %s", ErrCorrupt, subject, head)
	}
	var dec [3]string
	for i, tok := range toks {
		v, err := DecodeToken(tok)
		if err != nil {
			return Entity{}, "", fmt.Errorf("%w: subject %s: %v", ErrCorrupt, subject, err)
		}
		dec[i] = v
	}
	return Entity{Type: dec[0], Key: dec[1]}, dec[2], nil
}
