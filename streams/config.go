package streams

import (
	"errors"
	"log/slog"
	"strconv"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultPrefix         = "jetstate"
	DefaultAttemptTimeout = 5 * time.Second
)

// Config says which service's storage a Journal, Snapshots or Values works
// on. A zero field means its documented default.
type Config struct {
	// Prefix is the first token of every subject and the first part of
	// every stream and bucket name, so several jetstate installations can
	// share one NATS account. Default "jetstate".
	Prefix string

	// Service names the jetstate service (a deployment of one user
	// function). Letters, digits, '-' and '_' only; required.
	Service string

	// AttemptTimeout bounds one request to the server inside a retried
	// operation (an append, a read page). The caller's context bounds the
	// whole operation. Default 5s.
	AttemptTimeout time.Duration

	// Logger receives retries and recoveries at debug level. Nil discards.
	Logger *slog.Logger
}

// withDefaults returns the config with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with the config at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	return errors.Join(validName("prefix", c.Prefix), validName("service", c.Service))
}

// JournalStream is the name of the stream holding the service's journals.
func (c Config) JournalStream() string {
	c = c.withDefaults()
	return c.Prefix + "_" + c.Service + "_journal"
}

// SnapshotBucket is the name of the KV bucket holding the service's
// event-sourced snapshots.
func (c Config) SnapshotBucket() string {
	c = c.withDefaults()
	return c.Prefix + "_" + c.Service + "_snapshots"
}

// ValueBucket is the name of the KV bucket holding the service's value
// entities.
func (c Config) ValueBucket() string {
	c = c.withDefaults()
	return c.Prefix + "_" + c.Service + "_values"
}

// DiscoveryBucket is the KV bucket holding the user function's latest
// answer to discovery (its entities and descriptors, see Discovery).
func (c Config) DiscoveryBucket() string {
	c = c.withDefaults()
	return c.Prefix + "_" + c.Service + "_discovery"
}

// MemberBucket is the KV bucket where the service's live sidecars
// heartbeat (one key per sidecar, expiring after the member TTL).
func (c Config) MemberBucket() string {
	c = c.withDefaults()
	return c.Prefix + "_" + c.Service + "_members"
}

// ShardBucket is the KV bucket holding the owner of each shard.
func (c Config) ShardBucket() string {
	c = c.withDefaults()
	return c.Prefix + "_" + c.Service + "_shards"
}

// CRDTStream is the name of the stream holding the service's CRDT entity
// states: one message per (entity, replica), the replica's latest state.
func (c Config) CRDTStream() string {
	c = c.withDefaults()
	return c.Prefix + "_" + c.Service + "_crdt"
}

// CRDTSubjects is the wildcard subject CRDTStream captures:
// "<prefix>_crdt.<service>.>". It is outside the journal's subjects.
func (c Config) CRDTSubjects() string {
	c = c.withDefaults()
	return c.Prefix + "_crdt." + c.Service + ".>"
}

// CRDTSubject is the subject of one replica's state of a CRDT entity:
// "<prefix>_crdt.<service>.<type>.<key>.<replica>" with type, key and
// replica each escaped by EncodeToken. The empty replica id ("=" escaped)
// is the entity's tombstone. It does not validate its arguments.
func (c Config) CRDTSubject(e Entity, replica string) string {
	return c.crdtEntitySubject(e) + "." + EncodeToken(replica)
}

// crdtEntitySubject is "<prefix>_crdt.<service>.<type>.<key>", the head of
// every subject of e's replicas; with ".*" it covers all of them.
func (c Config) crdtEntitySubject(e Entity) string {
	c = c.withDefaults()
	return c.Prefix + "_crdt." + c.Service + "." + e.token()
}

// CRDTSyncSubject is the core NATS subject on which the service's sidecars
// ask each other to confirm that they merged a CRDT entity's state (the
// write consistency ALL): <prefix>_crdtsync.<service>. Like the route
// subjects it is outside every stream.
func (c Config) CRDTSyncSubject() string {
	c = c.withDefaults()
	return c.Prefix + "_crdtsync." + c.Service
}

// RouteSubject is the subject on which the owner of shard n takes the
// commands of the entities in it: <prefix>_rpc.<service>.<n>. It is outside
// the journal's subjects, so no stream captures it.
func (c Config) RouteSubject(shard int) string {
	c = c.withDefaults()
	return c.Prefix + "_rpc." + c.Service + "." + strconv.Itoa(shard)
}

// LoadSubject is the core NATS subject on which the service's sidecars
// publish their load reports for the autoscaler: <prefix>_load.<service>.
// Like the route subjects it is outside every stream.
func (c Config) LoadSubject() string {
	c = c.withDefaults()
	return c.Prefix + "_load." + c.Service
}

// LoadSubjects is the wildcard covering the load reports of every service
// under c.Prefix (c.Service is ignored): <prefix>_load.*.
func (c Config) LoadSubjects() string {
	c = c.withDefaults()
	return c.Prefix + "_load.*"
}

// EventingStream is the stream of the prefix's eventing topics and dead
// letters (of eventing and of projections), shared by every service under
// c.Prefix (c.Service is ignored): <prefix>_eventing.
func (c Config) EventingStream() string {
	c = c.withDefaults()
	return c.Prefix + "_eventing"
}

// EventingSubjects are the subjects EventingStream captures:
// <prefix>_topic.> and <prefix>_deadletter.>.
func (c Config) EventingSubjects() []string {
	c = c.withDefaults()
	return []string{c.Prefix + "_topic.>", c.Prefix + "_deadletter.>"}
}

// JournalSubjects is the wildcard subject covering every journal of the
// service: "<prefix>.<service>.>".
func (c Config) JournalSubjects() string {
	c = c.withDefaults()
	return c.Prefix + "." + c.Service + ".>"
}

// Subject is the journal subject of one entity:
// "<prefix>.<service>.<type>.<key>" with type and key escaped by
// EncodeToken. It does not validate the entity.
func (c Config) Subject(e Entity) string {
	c = c.withDefaults()
	return c.Prefix + "." + c.Service + "." + e.token()
}

// ParseSubject inverts Subject: it returns the entity a journal subject of
// this service belongs to.
func (c Config) ParseSubject(subject string) (Entity, error) {
	c = c.withDefaults()
	head := c.Prefix + "." + c.Service + "."
	if len(subject) <= len(head) || subject[:len(head)] != head {
		return Entity{}, errors.New("subject " + subject + " is not a journal subject of " + c.Service)
	}
	return parseToken(subject[len(head):])
}

// parseToken decodes "<type>.<key>".
func parseToken(tok string) (Entity, error) {
	for i := 0; i < len(tok); i++ {
		if tok[i] != '.' {
			continue
		}
		typ, err := DecodeToken(tok[:i])
		if err != nil {
			return Entity{}, err
		}
		key, err := DecodeToken(tok[i+1:])
		if err != nil {
			return Entity{}, err
		}
		return Entity{Type: typ, Key: key}, nil
	}
	return Entity{}, errors.New("token " + tok + " has no type")
}
