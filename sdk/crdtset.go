package sdk

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
)

// Set elements and map keys are Any values, equal when their type URLs and bytes are: encode
// them deterministically (the primitive helpers such as String do; use MarshalAny for messages).

// anyKey is an Any's identity: its type URL and bytes.
func anyKey(a *anypb.Any) string { return a.GetTypeUrl() + "\x00" + string(a.GetValue()) }

// compareAny orders Anys by type URL, then primitive strings by their text, then by bytes.
func compareAny(a, b *anypb.Any) int {
	if c := strings.Compare(a.GetTypeUrl(), b.GetTypeUrl()); c != 0 {
		return c
	}
	if sa, ok := StringValue(a); ok {
		if sb, ok := StringValue(b); ok {
			return strings.Compare(sa, sb)
		}
	}
	return bytes.Compare(a.GetValue(), b.GetValue())
}

func cloneAny(a *anypb.Any) *anypb.Any {
	if a == nil {
		return nil
	}
	return proto.Clone(a).(*anypb.Any)
}

// anySet is a set of Anys by identity.
type anySet map[string]*anypb.Any

// sorted is the elements in compareAny order; nil when empty.
func (s anySet) sorted() []*anypb.Any {
	if len(s) == 0 {
		return nil
	}
	return slices.SortedFunc(maps.Values(s), compareAny)
}

// GSet is a grow-only set of Any values.
type GSet struct {
	elems, added anySet
}

// NewGSet returns an empty set.
func NewGSet() *GSet { return &GSet{elems: anySet{}, added: anySet{}} }

// Elements are the set's elements, sorted by type URL, then primitive strings by text, then by
// bytes. They must not be modified.
func (s *GSet) Elements() []*anypb.Any { return s.elems.sorted() }

// Contains reports whether x is in the set.
func (s *GSet) Contains(x *anypb.Any) bool { _, ok := s.elems[anyKey(x)]; return ok }

// Size is the number of elements.
func (s *GSet) Size() int { return len(s.elems) }

// Add adds a copy of x and reports whether it was not in the set yet. A nil x is not added.
func (s *GSet) Add(x *anypb.Any) bool {
	k := anyKey(x)
	if _, ok := s.elems[k]; ok || x == nil {
		return false
	}
	x = cloneAny(x)
	s.elems[k], s.added[k] = x, x
	return true
}

func (s *GSet) kind() string { return "gset" }

func (s *GSet) delta() *pb.CrdtDelta {
	if len(s.added) == 0 {
		return nil
	}
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Gset{Gset: &pb.GSetDelta{Added: s.added.sorted()}}}
}

func (s *GSet) full() *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Gset{Gset: &pb.GSetDelta{Added: s.elems.sorted()}}}
}

func (s *GSet) reset() { s.added = anySet{} }

func (s *GSet) apply(d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Gset)
	if !ok {
		return wrongDelta(s, d)
	}
	for _, a := range x.Gset.GetAdded() {
		s.elems[anyKey(a)] = a
	}
	return nil
}

func (s *GSet) clone() CRDT { return &GSet{elems: maps.Clone(s.elems), added: maps.Clone(s.added)} }

func (s *GSet) restore(from CRDT) { *s = *from.clone().(*GSet) }

// ORSet is an observed-remove set of Any values: elements can be added and removed, and an add
// concurrent with a remove wins.
type ORSet struct {
	elems, added, removed anySet
	cleared               bool
}

// NewORSet returns an empty set.
func NewORSet() *ORSet { return &ORSet{elems: anySet{}, added: anySet{}, removed: anySet{}} }

// Elements are the set's elements, in the order of GSet.Elements. They must not be modified.
func (s *ORSet) Elements() []*anypb.Any { return s.elems.sorted() }

// Contains reports whether x is in the set.
func (s *ORSet) Contains(x *anypb.Any) bool { _, ok := s.elems[anyKey(x)]; return ok }

// Size is the number of elements.
func (s *ORSet) Size() int { return len(s.elems) }

// Add adds a copy of x and reports whether it was not in the set yet. A nil x is not added.
func (s *ORSet) Add(x *anypb.Any) bool {
	k := anyKey(x)
	if _, ok := s.elems[k]; ok || x == nil {
		return false
	}
	x = cloneAny(x)
	s.elems[k] = x
	if _, ok := s.removed[k]; ok {
		delete(s.removed, k) // removed and re-added by the same command: no change
	} else {
		s.added[k] = x
	}
	return true
}

// Remove removes x and reports whether it was in the set.
func (s *ORSet) Remove(x *anypb.Any) bool {
	k := anyKey(x)
	e, ok := s.elems[k]
	if !ok {
		return false
	}
	delete(s.elems, k)
	if _, ok := s.added[k]; ok {
		delete(s.added, k) // added and removed by the same command: no change
	} else {
		s.removed[k] = e
	}
	return true
}

// Clear removes every element.
func (s *ORSet) Clear() {
	if len(s.elems) == 0 {
		return
	}
	s.elems, s.added, s.removed, s.cleared = anySet{}, anySet{}, anySet{}, true
}

func (s *ORSet) kind() string { return "orset" }

func (s *ORSet) delta() *pb.CrdtDelta {
	if !s.cleared && len(s.added) == 0 && len(s.removed) == 0 {
		return nil
	}
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Orset{Orset: &pb.ORSetDelta{
		Cleared: s.cleared, Removed: s.removed.sorted(), Added: s.added.sorted(),
	}}}
}

func (s *ORSet) full() *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Orset{Orset: &pb.ORSetDelta{Added: s.elems.sorted()}}}
}

func (s *ORSet) reset() { s.added, s.removed, s.cleared = anySet{}, anySet{}, false }

func (s *ORSet) apply(d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Orset)
	if !ok {
		return wrongDelta(s, d)
	}
	if x.Orset.GetCleared() {
		s.elems = anySet{}
	}
	for _, a := range x.Orset.GetRemoved() {
		delete(s.elems, anyKey(a))
	}
	for _, a := range x.Orset.GetAdded() {
		s.elems[anyKey(a)] = a
	}
	return nil
}

func (s *ORSet) clone() CRDT {
	return &ORSet{elems: maps.Clone(s.elems), added: maps.Clone(s.added), removed: maps.Clone(s.removed), cleared: s.cleared}
}

func (s *ORSet) restore(from CRDT) { *s = *from.clone().(*ORSet) }

// ORMap is an observed-remove map from Any keys to CRDT values of any type, ORMaps included.
// Changes to a value through Get or GetOrCreate are changes of the map.
type ORMap struct {
	entries map[string]*mapEntry
	added   map[string]bool // keys added by the current command
	removed anySet          // keys the proxy had that the current command removed
	cleared bool
}

type mapEntry struct {
	key   *anypb.Any
	value CRDT
}

// NewORMap returns an empty map.
func NewORMap() *ORMap {
	return &ORMap{entries: map[string]*mapEntry{}, added: map[string]bool{}, removed: anySet{}}
}

// Keys are the map's keys, in the order of GSet.Elements. They must not be modified.
func (m *ORMap) Keys() []*anypb.Any {
	keys := make(anySet, len(m.entries))
	for k, e := range m.entries {
		keys[k] = e.key
	}
	return keys.sorted()
}

// Size is the number of entries.
func (m *ORMap) Size() int { return len(m.entries) }

// Get returns the value of key, or nil.
func (m *ORMap) Get(key *anypb.Any) CRDT {
	if e, ok := m.entries[anyKey(key)]; ok {
		return e.value
	}
	return nil
}

// GetOrCreate returns the value of key, adding the value create returns if there is none. A
// new entry is sent to the proxy with its whole value. If key is nil or create returns nil,
// nothing is added and GetOrCreate returns nil.
func (m *ORMap) GetOrCreate(key *anypb.Any, create func() CRDT) CRDT {
	k := anyKey(key)
	if e, ok := m.entries[k]; ok {
		return e.value
	}
	if key == nil || create == nil {
		return nil
	}
	v := create()
	if v == nil {
		return nil
	}
	m.entries[k] = &mapEntry{key: cloneAny(key), value: v}
	m.added[k] = true
	return v
}

// Remove removes key and reports whether it was in the map.
func (m *ORMap) Remove(key *anypb.Any) bool {
	k := anyKey(key)
	e, ok := m.entries[k]
	if !ok {
		return false
	}
	delete(m.entries, k)
	if m.added[k] {
		delete(m.added, k) // added by this command: the proxy never had it (or removed says so)
	} else {
		m.removed[k] = e.key
	}
	return true
}

// Clear removes every entry.
func (m *ORMap) Clear() {
	if len(m.entries) == 0 {
		return
	}
	m.entries, m.added, m.removed, m.cleared = map[string]*mapEntry{}, map[string]bool{}, anySet{}, true
}

func (m *ORMap) kind() string { return "ormap" }

// delta lists removed keys, then the changes of the values the proxy has, then the new entries
// with their whole values; the proxy applies them in that order (cleared first). A key removed
// and added again by one command is in both removed and added.
func (m *ORMap) delta() *pb.CrdtDelta {
	d := &pb.ORMapDelta{Cleared: m.cleared, Removed: m.removed.sorted()}
	for _, key := range m.Keys() {
		k := anyKey(key)
		e := m.entries[k]
		if m.added[k] {
			d.Added = append(d.Added, &pb.ORMapEntryDelta{Key: e.key, Delta: e.value.full()})
		} else if vd := e.value.delta(); vd != nil {
			d.Updated = append(d.Updated, &pb.ORMapEntryDelta{Key: e.key, Delta: vd})
		}
	}
	if !d.Cleared && len(d.Removed) == 0 && len(d.Updated) == 0 && len(d.Added) == 0 {
		return nil
	}
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Ormap{Ormap: d}}
}

func (m *ORMap) full() *pb.CrdtDelta {
	d := &pb.ORMapDelta{}
	for _, key := range m.Keys() {
		e := m.entries[anyKey(key)]
		d.Added = append(d.Added, &pb.ORMapEntryDelta{Key: e.key, Delta: e.value.full()})
	}
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Ormap{Ormap: d}}
}

func (m *ORMap) reset() {
	for _, e := range m.entries {
		e.value.reset()
	}
	m.added, m.removed, m.cleared = map[string]bool{}, anySet{}, false
}

func (m *ORMap) apply(d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Ormap)
	if !ok {
		return wrongDelta(m, d)
	}
	if x.Ormap.GetCleared() {
		m.entries = map[string]*mapEntry{}
	}
	for _, key := range x.Ormap.GetRemoved() {
		delete(m.entries, anyKey(key))
	}
	for _, u := range x.Ormap.GetUpdated() {
		e, ok := m.entries[anyKey(u.GetKey())]
		if !ok {
			continue // the proxy ignores updates of absent keys too
		}
		if err := e.value.apply(u.GetDelta()); err != nil {
			return fmt.Errorf("ormap entry %s: %w", u.GetKey().GetTypeUrl(), err)
		}
	}
	for _, a := range x.Ormap.GetAdded() {
		k := anyKey(a.GetKey())
		if e, ok := m.entries[k]; ok {
			if err := e.value.apply(a.GetDelta()); err != nil {
				return fmt.Errorf("ormap entry %s: %w", a.GetKey().GetTypeUrl(), err)
			}
			continue
		}
		v, err := fromDelta(a.GetDelta())
		if err != nil {
			return fmt.Errorf("ormap entry %s: %w", a.GetKey().GetTypeUrl(), err)
		}
		m.entries[k] = &mapEntry{key: a.GetKey(), value: v}
	}
	return nil
}

func (m *ORMap) clone() CRDT {
	n := &ORMap{entries: make(map[string]*mapEntry, len(m.entries)), added: maps.Clone(m.added), removed: maps.Clone(m.removed), cleared: m.cleared}
	for k, e := range m.entries {
		n.entries[k] = &mapEntry{key: e.key, value: e.value.clone()}
	}
	return n
}

func (m *ORMap) restore(from CRDT) { *m = *from.clone().(*ORMap) }

// compile-time checks that every type is a CRDT.
var (
	_ CRDT = (*GCounter)(nil)
	_ CRDT = (*PNCounter)(nil)
	_ CRDT = (*GSet)(nil)
	_ CRDT = (*ORSet)(nil)
	_ CRDT = (*LWWRegister)(nil)
	_ CRDT = (*Flag)(nil)
	_ CRDT = (*ORMap)(nil)
	_ CRDT = (*Vote)(nil)
)
