package crdt

import (
	"fmt"
	"maps"

	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"google.golang.org/protobuf/types/known/anypb"
)

// GSet is a grow-only set of Anys, compared by canonical key.
type GSet struct{ elems map[string]*anypb.Any }

// NewGSet returns an empty GSet.
func NewGSet() *GSet { return &GSet{elems: map[string]*anypb.Any{}} }

func (s *GSet) kind() kind { return kindGSet }

// Apply adds the delta's elements.
func (s *GSet) Apply(_ Env, d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Gset)
	if !ok {
		return wrongType("apply", s, d)
	}
	if err := checkAnys(x.Gset.GetAdded()); err != nil {
		return fmt.Errorf("apply GSet: %w", err)
	}
	for _, a := range x.Gset.GetAdded() {
		s.elems[anyKey(a)] = a
	}
	return nil
}

// Merge is the union.
func (s *GSet) Merge(o State) error {
	os, ok := o.(*GSet)
	if !ok {
		return wrongState(s, o)
	}
	maps.Copy(s.elems, os.elems)
	return nil
}

// Value lists the elements.
func (s *GSet) Value(Env) *pb.CrdtDelta {
	added := make([]*anypb.Any, 0, len(s.elems))
	for _, k := range sortedKeys(s.elems) {
		added = append(added, s.elems[k])
	}
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Gset{Gset: &pb.GSetDelta{Added: added}}}
}

// Clone returns a copy (the Anys are shared: they are never modified).
func (s *GSet) Clone() State { return &GSet{elems: maps.Clone(s.elems)} }

func checkAnys(as []*anypb.Any) error {
	for _, a := range as {
		if a == nil {
			return fmt.Errorf("%w: nil element", ErrInvalidDelta)
		}
	}
	return nil
}

// ORSet is an add-wins observed-remove set of Anys (see orKeys): a remove
// wins over the adds it has seen, a concurrent add wins over the remove.
type ORSet struct{ keys orKeys }

// NewORSet returns an empty ORSet.
func NewORSet() *ORSet { return &ORSet{keys: newORKeys()} }

func (s *ORSet) kind() kind { return kindORSet }

// Apply clears (first), removes, then adds, as made by env.Replica.
func (s *ORSet) Apply(env Env, d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Orset)
	if !ok {
		return wrongType("apply", s, d)
	}
	if err := checkAnys(append(x.Orset.GetRemoved(), x.Orset.GetAdded()...)); err != nil {
		return fmt.Errorf("apply ORSet: %w", err)
	}
	if x.Orset.GetCleared() {
		clear(s.keys.elems)
	}
	for _, a := range x.Orset.GetRemoved() {
		delete(s.keys.elems, anyKey(a))
	}
	for _, a := range x.Orset.GetAdded() {
		s.keys.add(env.Replica, a)
	}
	return nil
}

// Merge is the add-wins OR-set merge.
func (s *ORSet) Merge(o State) error {
	os, ok := o.(*ORSet)
	if !ok {
		return wrongState(s, o)
	}
	s.keys.merge(os.keys)
	return nil
}

// Value lists the live elements.
func (s *ORSet) Value(Env) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Orset{Orset: &pb.ORSetDelta{Added: s.keys.sortedAnys()}}}
}

// Clone returns a deep copy.
func (s *ORSet) Clone() State { return &ORSet{keys: s.keys.clone()} }
