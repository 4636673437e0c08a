package crdt

import (
	"fmt"

	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Diff returns the delta that takes a user function holding value old to
// value new (both full values, as Value returns them; a nil old is the
// empty value of new's type), or nil if they are equal. ApplyValue(old,
// Diff(old, new)) equals new. Values of different types give ErrWrongType.
func Diff(old, new *pb.CrdtDelta) (*pb.CrdtDelta, error) {
	if old == nil {
		old = newKind(kindOf(new)).Value(Env{})
	}
	if kindOf(old) != kindOf(new) || kindOf(new) == 0 {
		return nil, fmt.Errorf("diff %s to %s: %w", kindOf(old), kindOf(new), ErrWrongType)
	}
	switch n := new.GetDelta().(type) {
	case *pb.CrdtDelta_Gcounter:
		o := old.GetGcounter().GetIncrement()
		if n.Gcounter.GetIncrement() == o {
			return nil, nil
		}
		if n.Gcounter.GetIncrement() < o {
			return nil, fmt.Errorf("diff GCounter: %w: went down from %d to %d", ErrInvalidDelta, o, n.Gcounter.GetIncrement())
		}
		return gcounter(n.Gcounter.GetIncrement() - o), nil
	case *pb.CrdtDelta_Pncounter:
		ch := n.Pncounter.GetChange() - old.GetPncounter().GetChange()
		if ch == 0 {
			return nil, nil
		}
		return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Pncounter{Pncounter: &pb.PNCounterDelta{Change: ch}}}, nil
	case *pb.CrdtDelta_Gset:
		added, _ := setDiff(old.GetGset().GetAdded(), n.Gset.GetAdded())
		if len(added) == 0 {
			return nil, nil
		}
		return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Gset{Gset: &pb.GSetDelta{Added: added}}}, nil
	case *pb.CrdtDelta_Orset:
		oa, na := old.GetOrset().GetAdded(), n.Orset.GetAdded()
		d := &pb.ORSetDelta{}
		if len(na) == 0 && len(oa) > 0 {
			d.Cleared = true
		} else {
			d.Added, d.Removed = setDiff(oa, na)
		}
		if !d.Cleared && len(d.Added) == 0 && len(d.Removed) == 0 {
			return nil, nil
		}
		return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Orset{Orset: d}}, nil
	case *pb.CrdtDelta_Lwwregister:
		if proto.Equal(old.GetLwwregister().GetValue(), n.Lwwregister.GetValue()) {
			return nil, nil
		}
		return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Lwwregister{Lwwregister: &pb.LWWRegisterDelta{Value: n.Lwwregister.GetValue()}}}, nil
	case *pb.CrdtDelta_Flag:
		if n.Flag.GetValue() == old.GetFlag().GetValue() {
			return nil, nil
		}
		if !n.Flag.GetValue() {
			return nil, errFlagOff
		}
		return new, nil
	case *pb.CrdtDelta_Ormap:
		return diffORMap(old.GetOrmap(), n.Ormap)
	case *pb.CrdtDelta_Vote:
		if proto.Equal(old.GetVote(), n.Vote) {
			return nil, nil
		}
		return proto.CloneOf(new), nil
	}
	return nil, nil
}

func gcounter(n uint64) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Gcounter{Gcounter: &pb.GCounterDelta{Increment: n}}}
}

// setDiff returns the elements of b not in a, and those of a not in b.
func setDiff(a, b []*anypb.Any) (added, removed []*anypb.Any) {
	in := func(s []*anypb.Any) map[string]bool {
		m := make(map[string]bool, len(s))
		for _, x := range s {
			m[anyKey(x)] = true
		}
		return m
	}
	ina, inb := in(a), in(b)
	for _, x := range b {
		if !ina[anyKey(x)] {
			added = append(added, x)
		}
	}
	for _, x := range a {
		if !inb[anyKey(x)] {
			removed = append(removed, x)
		}
	}
	return sortAnys(added), sortAnys(removed)
}

func diffORMap(old, new *pb.ORMapDelta) (*pb.CrdtDelta, error) {
	d := &pb.ORMapDelta{}
	if len(new.GetAdded()) == 0 && len(old.GetAdded()) > 0 {
		d.Cleared = true
	} else {
		olds := make(map[string]*pb.ORMapEntryDelta, len(old.GetAdded()))
		for _, e := range old.GetAdded() {
			olds[anyKey(e.GetKey())] = e
		}
		news := make(map[string]bool, len(new.GetAdded()))
		for _, e := range new.GetAdded() {
			k := anyKey(e.GetKey())
			news[k] = true
			o, ok := olds[k]
			if !ok {
				d.Added = append(d.Added, e)
				continue
			}
			if kindOf(o.GetDelta()) != kindOf(e.GetDelta()) {
				// The key was removed and re-added with another type.
				d.Removed = append(d.Removed, e.GetKey())
				d.Added = append(d.Added, e)
				continue
			}
			nd, err := Diff(o.GetDelta(), e.GetDelta())
			if err != nil {
				return nil, fmt.Errorf("diff ORMap entry: %w", err)
			}
			if nd != nil {
				d.Updated = append(d.Updated, &pb.ORMapEntryDelta{Key: e.GetKey(), Delta: nd})
			}
		}
		for _, e := range old.GetAdded() {
			if !news[anyKey(e.GetKey())] {
				d.Removed = append(d.Removed, e.GetKey())
			}
		}
		sortAnys(d.Removed)
	}
	if !d.Cleared && len(d.Removed)+len(d.Added)+len(d.Updated) == 0 {
		return nil, nil
	}
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Ormap{Ormap: d}}, nil
}

// ApplyValue applies delta to a full value, as the user function does
// (ORMap updates of absent keys are ignored), and returns the new full value
// in Value's order; value is left unchanged. A nil value is the empty value
// of delta's type. It exists to test Diff and for user-function support code.
func ApplyValue(value, delta *pb.CrdtDelta) (*pb.CrdtDelta, error) {
	if kindOf(delta) == 0 {
		return nil, fmt.Errorf("apply value: %w: no delta", ErrInvalidDelta)
	}
	if value == nil {
		value = newKind(kindOf(delta)).Value(Env{})
	}
	if kindOf(value) != kindOf(delta) {
		return nil, fmt.Errorf("apply value %s: %w: got %s", kindOf(value), ErrWrongType, kindOf(delta))
	}
	switch d := delta.GetDelta().(type) {
	case *pb.CrdtDelta_Gcounter:
		return gcounter(value.GetGcounter().GetIncrement() + d.Gcounter.GetIncrement()), nil
	case *pb.CrdtDelta_Pncounter:
		return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Pncounter{Pncounter: &pb.PNCounterDelta{
			Change: value.GetPncounter().GetChange() + d.Pncounter.GetChange()}}}, nil
	case *pb.CrdtDelta_Gset:
		s := anySet(value.GetGset().GetAdded())
		add(s, d.Gset.GetAdded())
		return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Gset{Gset: &pb.GSetDelta{Added: sorted(s)}}}, nil
	case *pb.CrdtDelta_Orset:
		s := anySet(value.GetOrset().GetAdded())
		if d.Orset.GetCleared() {
			clear(s)
		}
		for _, a := range d.Orset.GetRemoved() {
			delete(s, anyKey(a))
		}
		add(s, d.Orset.GetAdded())
		return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Orset{Orset: &pb.ORSetDelta{Added: sorted(s)}}}, nil
	case *pb.CrdtDelta_Lwwregister:
		return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Lwwregister{Lwwregister: &pb.LWWRegisterDelta{Value: d.Lwwregister.GetValue()}}}, nil
	case *pb.CrdtDelta_Flag:
		on := value.GetFlag().GetValue() || d.Flag.GetValue()
		return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Flag{Flag: &pb.FlagDelta{Value: on}}}, nil
	case *pb.CrdtDelta_Ormap:
		return applyORMapValue(value.GetOrmap(), d.Ormap)
	case *pb.CrdtDelta_Vote:
		return proto.CloneOf(delta), nil
	}
	return nil, nil
}

func anySet(as []*anypb.Any) map[string]*anypb.Any {
	s := make(map[string]*anypb.Any, len(as))
	add(s, as)
	return s
}

func add(s map[string]*anypb.Any, as []*anypb.Any) {
	for _, a := range as {
		s[anyKey(a)] = a
	}
}

func sorted(s map[string]*anypb.Any) []*anypb.Any {
	out := make([]*anypb.Any, 0, len(s))
	for _, k := range sortedKeys(s) {
		out = append(out, s[k])
	}
	return out
}

func applyORMapValue(value, d *pb.ORMapDelta) (*pb.CrdtDelta, error) {
	entries := make(map[string]*pb.ORMapEntryDelta, len(value.GetAdded()))
	for _, e := range value.GetAdded() {
		entries[anyKey(e.GetKey())] = e
	}
	if d.GetCleared() {
		clear(entries)
	}
	for _, k := range d.GetRemoved() {
		delete(entries, anyKey(k))
	}
	for _, u := range d.GetUpdated() {
		k := anyKey(u.GetKey())
		e, ok := entries[k]
		if !ok || u.GetDelta() == nil {
			continue
		}
		v, err := ApplyValue(e.GetDelta(), u.GetDelta())
		if err != nil {
			return nil, fmt.Errorf("apply ORMap entry value: %w", err)
		}
		entries[k] = &pb.ORMapEntryDelta{Key: e.GetKey(), Delta: v}
	}
	for _, a := range d.GetAdded() {
		v, err := ApplyValue(nil, a.GetDelta())
		if err != nil {
			return nil, fmt.Errorf("apply ORMap entry value: %w", err)
		}
		entries[anyKey(a.GetKey())] = &pb.ORMapEntryDelta{Key: a.GetKey(), Delta: v}
	}
	out := &pb.ORMapDelta{}
	for _, k := range sortedKeys(entries) {
		out.Added = append(out.Added, entries[k])
	}
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Ormap{Ormap: out}}, nil
}
