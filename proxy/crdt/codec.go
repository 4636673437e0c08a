package crdt

import (
	"fmt"

	"github.com/jetstate/jetstate/protocol/jetstate/crdtstate"
	"google.golang.org/protobuf/proto"
)

// The encoding is the protobuf message jetstate.crdtstate.State
// (protocol/jetstate/crdtstate/state.proto). Repeated fields are written in
// sorted key order, so equal states encode to equal bytes.

// Marshal encodes a state for storage. Equal states give equal bytes. It
// fails only on a replica id or a type URL that is not valid UTF-8 (protobuf
// strings must be; Anys decoded from the user function always are).
func Marshal(s State) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s.toProto())
	if err != nil {
		return nil, fmt.Errorf("marshal %s state: %w", s.kind(), err)
	}
	return b, nil
}

// Unmarshal decodes what Marshal encoded; anything else gives ErrCorrupt.
func Unmarshal(b []byte) (State, error) {
	m := &crdtstate.State{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("unmarshal state: %w: %v", ErrCorrupt, err)
	}
	s, err := fromProto(m, 0)
	if err != nil {
		return nil, fmt.Errorf("unmarshal state: %w", err)
	}
	return s, nil
}

func counts(c vv) []*crdtstate.Count {
	out := make([]*crdtstate.Count, 0, len(c))
	for _, r := range sortedKeys(c) {
		if c[r] > 0 { // absent and zero are the same count
			out = append(out, &crdtstate.Count{Replica: r, N: c[r]})
		}
	}
	return out
}

func fromCounts(cs []*crdtstate.Count) vv {
	v := vv{}
	for _, c := range cs {
		if c.GetN() > 0 {
			v[c.GetReplica()] = c.GetN()
		}
	}
	return v
}

func (g *GCounter) toProto() *crdtstate.State {
	return &crdtstate.State{Kind: crdtstate.Kind_KIND_GCOUNTER, P: counts(g.counts)}
}

func (c *PNCounter) toProto() *crdtstate.State {
	return &crdtstate.State{Kind: crdtstate.Kind_KIND_PNCOUNTER, P: counts(c.p.counts), N: counts(c.n.counts)}
}

func (s *GSet) toProto() *crdtstate.State {
	m := &crdtstate.State{Kind: crdtstate.Kind_KIND_GSET}
	for _, k := range sortedKeys(s.elems) {
		m.Gset = append(m.Gset, s.elems[k])
	}
	return m
}

func (o orKeys) toProto(m *crdtstate.State) *crdtstate.State {
	for _, k := range sortedKeys(o.elems) {
		e := o.elems[k]
		m.Elems = append(m.Elems, &crdtstate.Elem{Key: e.key, Dots: counts(e.dots)})
	}
	m.Ctx = counts(o.ctx)
	return m
}

func (s *ORSet) toProto() *crdtstate.State {
	return s.keys.toProto(&crdtstate.State{Kind: crdtstate.Kind_KIND_ORSET})
}

func (r *LWWRegister) toProto() *crdtstate.State {
	m := &crdtstate.State{Kind: crdtstate.Kind_KIND_LWWREGISTER}
	if r.set {
		m.LwwValue, m.LwwClock, m.LwwReplica, m.LwwSet = r.value, r.clock, r.replica, true
	}
	return m
}

func (f *Flag) toProto() *crdtstate.State {
	return &crdtstate.State{Kind: crdtstate.Kind_KIND_FLAG, Flag: f.on}
}

func (m *ORMap) toProto() *crdtstate.State {
	p := m.keys.toProto(&crdtstate.State{Kind: crdtstate.Kind_KIND_ORMAP})
	for _, k := range sortedKeys(m.values) {
		p.Entries = append(p.Entries, &crdtstate.Entry{Key: []byte(k), Value: m.values[k].toProto()})
	}
	return p
}

func (v *Vote) toProto() *crdtstate.State {
	m := &crdtstate.State{Kind: crdtstate.Kind_KIND_VOTE}
	for _, r := range sortedKeys(v.votes) {
		if b := v.votes[r]; b.version > 0 {
			m.Ballots = append(m.Ballots, &crdtstate.Ballot{Replica: r, Version: b.version, Vote: b.vote})
		}
	}
	return m
}

// maxDepth bounds ORMap nesting on decode.
const maxDepth = 32

func fromProto(m *crdtstate.State, depth int) (State, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested too deep", ErrCorrupt)
	}
	switch m.GetKind() {
	case crdtstate.Kind_KIND_GCOUNTER:
		return &GCounter{counts: fromCounts(m.GetP())}, nil
	case crdtstate.Kind_KIND_PNCOUNTER:
		return &PNCounter{p: &GCounter{counts: fromCounts(m.GetP())}, n: &GCounter{counts: fromCounts(m.GetN())}}, nil
	case crdtstate.Kind_KIND_GSET:
		s := NewGSet()
		for _, a := range m.GetGset() {
			s.elems[anyKey(a)] = a
		}
		return s, nil
	case crdtstate.Kind_KIND_ORSET:
		k, err := orKeysFromProto(m)
		return &ORSet{keys: k}, err
	case crdtstate.Kind_KIND_LWWREGISTER:
		if !m.GetLwwSet() {
			return NewLWWRegister(), nil
		}
		return &LWWRegister{set: true, value: m.GetLwwValue(), clock: m.GetLwwClock(), replica: m.GetLwwReplica()}, nil
	case crdtstate.Kind_KIND_FLAG:
		return &Flag{on: m.GetFlag()}, nil
	case crdtstate.Kind_KIND_ORMAP:
		return ormapFromProto(m, depth)
	case crdtstate.Kind_KIND_VOTE:
		v := NewVote()
		for _, b := range m.GetBallots() {
			if b.GetVersion() > 0 {
				v.votes[b.GetReplica()] = ballot{version: b.GetVersion(), vote: b.GetVote()}
			}
		}
		return v, nil
	}
	return nil, fmt.Errorf("%w: unknown kind %d", ErrCorrupt, m.GetKind())
}

func orKeysFromProto(m *crdtstate.State) (orKeys, error) {
	o := orKeys{elems: make(map[string]*orElem, len(m.GetElems())), ctx: fromCounts(m.GetCtx())}
	for _, e := range m.GetElems() {
		dots := fromCounts(e.GetDots())
		if e.GetKey() == nil || len(dots) == 0 {
			return o, fmt.Errorf("%w: element without key or dots", ErrCorrupt)
		}
		o.elems[anyKey(e.GetKey())] = &orElem{key: e.GetKey(), dots: dots}
	}
	return o, nil
}

func ormapFromProto(m *crdtstate.State, depth int) (State, error) {
	k, err := orKeysFromProto(m)
	if err != nil {
		return nil, err
	}
	om := &ORMap{keys: k, values: make(map[string]State, len(m.GetEntries()))}
	for _, e := range m.GetEntries() {
		if e.GetValue() == nil {
			return nil, fmt.Errorf("%w: entry without value", ErrCorrupt)
		}
		v, err := fromProto(e.GetValue(), depth+1)
		if err != nil {
			return nil, err
		}
		om.values[string(e.GetKey())] = v
	}
	for key := range om.keys.elems {
		if om.values[key] == nil {
			return nil, fmt.Errorf("%w: live key without value", ErrCorrupt)
		}
	}
	return om, nil
}
