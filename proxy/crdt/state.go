package crdt

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/protocol/jetstate/crdtstate"
	"google.golang.org/protobuf/types/known/anypb"
)

// Env is what a state needs to know about its surroundings.
type Env struct {
	// Replica is the id of the sidecar replica making the change (Apply) or
	// reading the value (Value: a Vote's self_vote is this replica's vote).
	Replica string
	// NowMillis is the wall clock in ms, for LWWRegister's DEFAULT and
	// REVERSE clocks.
	NowMillis int64
	// Live is the set of live replicas (the membership), for Vote: only
	// their votes count. Nil means every replica that ever voted for, plus
	// Replica (a replica that only ever voted against leaves no entry).
	Live []string
}

// State is the replicated CRDT of one entity. A State is not safe for
// concurrent use. Merge is commutative, associative and idempotent, so
// states may be merged in any order, any number of times.
type State interface {
	// Apply makes the change the user function asked for in delta, as made
	// by env.Replica. On error the state is unchanged.
	Apply(env Env, delta *pb.CrdtDelta) error
	// Merge merges other (left unchanged) into the state. A state of another
	// type gives ErrWrongType and leaves the state unchanged.
	Merge(other State) error
	// Value is the state's current value as a full-value delta (what
	// CrdtInit carries), with elements sorted by canonical key.
	Value(env Env) *pb.CrdtDelta
	// Clone returns a deep copy.
	Clone() State

	kind() kind
	toProto() *crdtstate.State
}

type kind int

const (
	kindGCounter kind = iota + 1
	kindPNCounter
	kindGSet
	kindORSet
	kindLWWRegister
	kindFlag
	kindORMap
	kindVote
)

func (k kind) String() string {
	return [...]string{"none", "GCounter", "PNCounter", "GSet", "ORSet", "LWWRegister", "Flag", "ORMap", "Vote"}[max(0, min(int(k), 8))]
}

func kindOf(d *pb.CrdtDelta) kind {
	switch d.GetDelta().(type) {
	case *pb.CrdtDelta_Gcounter:
		return kindGCounter
	case *pb.CrdtDelta_Pncounter:
		return kindPNCounter
	case *pb.CrdtDelta_Gset:
		return kindGSet
	case *pb.CrdtDelta_Orset:
		return kindORSet
	case *pb.CrdtDelta_Lwwregister:
		return kindLWWRegister
	case *pb.CrdtDelta_Flag:
		return kindFlag
	case *pb.CrdtDelta_Ormap:
		return kindORMap
	case *pb.CrdtDelta_Vote:
		return kindVote
	}
	return 0
}

func newKind(k kind) State {
	switch k {
	case kindGCounter:
		return NewGCounter()
	case kindPNCounter:
		return NewPNCounter()
	case kindGSet:
		return NewGSet()
	case kindORSet:
		return NewORSet()
	case kindLWWRegister:
		return NewLWWRegister()
	case kindFlag:
		return NewFlag()
	case kindORMap:
		return NewORMap()
	case kindVote:
		return NewVote()
	}
	return nil
}

// New returns the empty State of delta's type, for the first delta of an
// entity (apply the delta to it next). An empty delta gives ErrInvalidDelta.
func New(delta *pb.CrdtDelta) (State, error) {
	s := newKind(kindOf(delta))
	if s == nil {
		return nil, fmt.Errorf("new state: %w: no delta", ErrInvalidDelta)
	}
	return s, nil
}

func wrongType(op string, s State, d *pb.CrdtDelta) error {
	return fmt.Errorf("%s %s: %w: got %s", op, s.kind(), ErrWrongType, kindOf(d))
}

func wrongState(s, o State) error {
	return fmt.Errorf("merge %s: %w: got %T", s.kind(), ErrWrongType, o)
}

// anyKey is an Any's canonical key: type URL and value bytes, which the
// user function's deterministic serialization makes stable.
func anyKey(a *anypb.Any) string {
	return a.GetTypeUrl() + "\x00" + string(a.GetValue())
}

// vv is a version vector or a per-replica count: replica -> counter.
type vv map[string]uint64

func (v vv) mergeMax(o vv) {
	for r, c := range o {
		if c > v[r] {
			v[r] = c
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func sortAnys(as []*anypb.Any) []*anypb.Any {
	slices.SortFunc(as, func(a, b *anypb.Any) int { return cmp.Compare(anyKey(a), anyKey(b)) })
	return as
}
