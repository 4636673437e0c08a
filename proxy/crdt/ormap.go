package crdt

import (
	"fmt"

	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
)

// ORMap maps Any keys to nested States. Its keys are an add-wins OR-set
// (see orKeys); the values are merged per key, pointwise, which keeps Merge
// a lattice join. Values of removed keys are dropped locally at the remove,
// but a merge with a state that still has one keeps it (unseen) until the
// key is removed again; a key re-added then starts from that value merged
// in, as in Akka's ORMap.
type ORMap struct {
	keys   orKeys
	values map[string]State
}

// NewORMap returns an empty ORMap.
func NewORMap() *ORMap { return &ORMap{keys: newORKeys(), values: map[string]State{}} }

func (m *ORMap) kind() kind { return kindORMap }

// Apply clears (first), removes keys, updates live keys (updates of absent
// keys are ignored), then adds entries (a new value made from the entry's
// delta; adding a live key applies the delta to its value). A nested delta
// of another type than the entry's value gives ErrWrongType. On error the
// map is unchanged.
func (m *ORMap) Apply(env Env, d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Ormap)
	if !ok {
		return wrongType("apply", m, d)
	}
	n := m.Clone().(*ORMap)
	if err := n.apply(env, x.Ormap); err != nil {
		return fmt.Errorf("apply ORMap: %w", err)
	}
	*m = *n
	return nil
}

func (m *ORMap) apply(env Env, d *pb.ORMapDelta) error {
	if d.GetCleared() {
		clear(m.keys.elems)
		clear(m.values)
	}
	for _, k := range d.GetRemoved() {
		if k == nil {
			return fmt.Errorf("%w: nil key", ErrInvalidDelta)
		}
		delete(m.keys.elems, anyKey(k))
		delete(m.values, anyKey(k))
	}
	for _, e := range d.GetUpdated() {
		if e.GetKey() == nil {
			return fmt.Errorf("%w: entry without a key", ErrInvalidDelta)
		}
		k := anyKey(e.GetKey())
		if !m.keys.has(k) || m.values[k] == nil || e.GetDelta() == nil {
			continue
		}
		if err := m.values[k].Apply(env, e.GetDelta()); err != nil {
			return err
		}
	}
	for _, e := range d.GetAdded() {
		if e.GetKey() == nil {
			return fmt.Errorf("%w: entry without a key", ErrInvalidDelta)
		}
		k := anyKey(e.GetKey())
		v := m.values[k]
		if v == nil {
			var err error
			if v, err = New(e.GetDelta()); err != nil {
				return err
			}
		}
		if err := v.Apply(env, e.GetDelta()); err != nil {
			return err
		}
		m.keys.add(env.Replica, e.GetKey())
		m.values[k] = v
	}
	return nil
}

// Merge merges the keys as an OR-set and the values per key. Values of
// different types under one key give ErrWrongType and leave m unchanged.
func (m *ORMap) Merge(o State) error {
	om, ok := o.(*ORMap)
	if !ok {
		return wrongState(m, o)
	}
	values := make(map[string]State, len(m.values))
	for k, v := range m.values {
		values[k] = v
	}
	for k, ov := range om.values {
		v, ok := values[k]
		if !ok {
			values[k] = ov.Clone()
			continue
		}
		v = v.Clone()
		if err := v.Merge(ov); err != nil {
			return fmt.Errorf("merge ORMap entry: %w", err)
		}
		values[k] = v
	}
	m.keys.merge(om.keys)
	m.values = values
	return nil
}

// Value lists the live entries, each with its full value.
func (m *ORMap) Value(env Env) *pb.CrdtDelta {
	d := &pb.ORMapDelta{}
	for _, a := range m.keys.sortedAnys() {
		if v := m.values[anyKey(a)]; v != nil {
			d.Added = append(d.Added, &pb.ORMapEntryDelta{Key: a, Delta: v.Value(env)})
		}
	}
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Ormap{Ormap: d}}
}

// Clone returns a deep copy.
func (m *ORMap) Clone() State {
	c := &ORMap{keys: m.keys.clone(), values: make(map[string]State, len(m.values))}
	for k, v := range m.values {
		c.values[k] = v.Clone()
	}
	return c
}
