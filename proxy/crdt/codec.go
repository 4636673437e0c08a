package crdt

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// The encoding is protobuf wire format, written by hand with protowire
// (see doc.go for why there is no .proto yet):
//
//	State    { kind=1 varint; p=2, n=3 repeated Count (GCounter: p only);
//	           gset=4 repeated Any; elems=5 repeated Elem; ctx=6 repeated Count;
//	           lww_value=7 Any; lww_clock=8 sint64; lww_replica=9 string; lww_set=10 bool;
//	           flag=11 bool; entries=12 repeated Entry; ballots=13 repeated Ballot }
//	Count    { replica=1 string; n=2 varint }
//	Elem     { key=1 Any; dots=2 repeated Count }
//	Entry    { key=1 bytes (canonical key); value=2 State }
//	Ballot   { replica=1 string; version=2 varint; vote=3 bool }
//
// Maps are written in sorted key order, so equal states encode to equal bytes.
const (
	fKind protowire.Number = iota + 1
	fP
	fN
	fGSet
	fElems
	fCtx
	fLWWValue
	fLWWClock
	fLWWReplica
	fLWWSet
	fFlag
	fEntries
	fBallots
)

// Marshal encodes a state for storage. Equal states give equal bytes.
func Marshal(s State) []byte { return s.appendTo(nil) }

// Unmarshal decodes what Marshal encoded; anything else gives ErrCorrupt.
func Unmarshal(b []byte) (State, error) {
	s, err := decode(b, 0)
	if err != nil {
		return nil, fmt.Errorf("unmarshal state: %w", err)
	}
	return s, nil
}

func appendMsg(b []byte, n protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

func appendCounts(b []byte, n protowire.Number, c vv) []byte {
	for _, r := range sortedKeys(c) {
		if c[r] == 0 {
			continue // absent and zero are the same count
		}
		var m []byte
		m = protowire.AppendTag(m, 1, protowire.BytesType)
		m = protowire.AppendString(m, r)
		m = protowire.AppendTag(m, 2, protowire.VarintType)
		m = protowire.AppendVarint(m, c[r])
		b = appendMsg(b, n, m)
	}
	return b
}

func appendAny(b []byte, n protowire.Number, a *anypb.Any) []byte {
	var m []byte
	if a.GetTypeUrl() != "" {
		m = protowire.AppendTag(m, 1, protowire.BytesType)
		m = protowire.AppendString(m, a.GetTypeUrl())
	}
	if len(a.GetValue()) > 0 {
		m = protowire.AppendTag(m, 2, protowire.BytesType)
		m = protowire.AppendBytes(m, a.GetValue())
	}
	return appendMsg(b, n, m)
}

func appendVarint(b []byte, n protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, n, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendHead(b []byte, k kind) []byte { return appendVarint(b, fKind, uint64(k)) }

func (g *GCounter) appendTo(b []byte) []byte {
	return appendCounts(appendHead(b, kindGCounter), fP, g.counts)
}

func (c *PNCounter) appendTo(b []byte) []byte {
	b = appendCounts(appendHead(b, kindPNCounter), fP, c.p.counts)
	return appendCounts(b, fN, c.n.counts)
}

func (s *GSet) appendTo(b []byte) []byte {
	b = appendHead(b, kindGSet)
	for _, k := range sortedKeys(s.elems) {
		b = appendAny(b, fGSet, s.elems[k])
	}
	return b
}

func (o orKeys) appendTo(b []byte) []byte {
	for _, k := range sortedKeys(o.elems) {
		e := o.elems[k]
		b = appendMsg(b, fElems, appendCounts(appendAny(nil, 1, e.key), 2, e.dots))
	}
	return appendCounts(b, fCtx, o.ctx)
}

func (s *ORSet) appendTo(b []byte) []byte { return s.keys.appendTo(appendHead(b, kindORSet)) }

func (r *LWWRegister) appendTo(b []byte) []byte {
	b = appendHead(b, kindLWWRegister)
	if !r.set {
		return b
	}
	if r.value != nil {
		b = appendAny(b, fLWWValue, r.value)
	}
	b = appendVarint(b, fLWWClock, protowire.EncodeZigZag(r.clock))
	b = protowire.AppendTag(b, fLWWReplica, protowire.BytesType)
	b = protowire.AppendString(b, r.replica)
	return appendVarint(b, fLWWSet, 1)
}

func (f *Flag) appendTo(b []byte) []byte {
	b = appendHead(b, kindFlag)
	if f.on {
		b = appendVarint(b, fFlag, 1)
	}
	return b
}

func (m *ORMap) appendTo(b []byte) []byte {
	b = m.keys.appendTo(appendHead(b, kindORMap))
	for _, k := range sortedKeys(m.values) {
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.BytesType)
		e = protowire.AppendString(e, k)
		e = appendMsg(e, 2, m.values[k].appendTo(nil))
		b = appendMsg(b, fEntries, e)
	}
	return b
}

func (v *Vote) appendTo(b []byte) []byte {
	b = appendHead(b, kindVote)
	for _, r := range sortedKeys(v.votes) {
		bl := v.votes[r]
		var m []byte
		m = protowire.AppendTag(m, 1, protowire.BytesType)
		m = protowire.AppendString(m, r)
		m = appendVarint(m, 2, bl.version)
		if bl.vote {
			m = appendVarint(m, 3, 1)
		}
		b = appendMsg(b, fBallots, m)
	}
	return b
}

// field is one decoded field: a varint or the bytes of a length-delimited one.
type field struct {
	num protowire.Number
	v   uint64
	b   []byte
}

func fields(b []byte) ([]field, error) {
	var out []field
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, ErrCorrupt
		}
		b = b[n:]
		f := field{num: num}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default:
			return nil, ErrCorrupt
		}
		if n < 0 {
			return nil, ErrCorrupt
		}
		b = b[n:]
		out = append(out, f)
	}
	return out, nil
}

func decodeCount(b []byte, into vv) error {
	fs, err := fields(b)
	if err != nil {
		return err
	}
	var r string
	var c uint64
	for _, f := range fs {
		switch f.num {
		case 1:
			r = string(f.b)
		case 2:
			c = f.v
		}
	}
	if c > 0 {
		into[r] = c
	}
	return nil
}

func decodeAny(b []byte) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := proto.Unmarshal(b, a); err != nil {
		return nil, ErrCorrupt
	}
	return a, nil
}

// maxDepth bounds ORMap nesting on decode, so hostile bytes cannot
// exhaust the stack.
const maxDepth = 32

func decode(b []byte, depth int) (State, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested too deep", ErrCorrupt)
	}
	fs, err := fields(b)
	if err != nil {
		return nil, err
	}
	if len(fs) == 0 || fs[0].num != fKind {
		return nil, fmt.Errorf("%w: no kind", ErrCorrupt)
	}
	s := newKind(kind(fs[0].v))
	if s == nil || fs[0].v > uint64(kindVote) {
		return nil, fmt.Errorf("%w: unknown kind %d", ErrCorrupt, fs[0].v)
	}
	for _, f := range fs[1:] {
		if err := decodeField(s, f, depth); err != nil {
			return nil, err
		}
	}
	if m, ok := s.(*ORMap); ok {
		for k := range m.keys.elems {
			if m.values[k] == nil {
				return nil, fmt.Errorf("%w: live key without value", ErrCorrupt)
			}
		}
	}
	return s, nil
}

func decodeField(s State, f field, depth int) error {
	switch s := s.(type) {
	case *GCounter:
		if f.num == fP {
			return decodeCount(f.b, s.counts)
		}
	case *PNCounter:
		switch f.num {
		case fP:
			return decodeCount(f.b, s.p.counts)
		case fN:
			return decodeCount(f.b, s.n.counts)
		}
	case *GSet:
		if f.num == fGSet {
			a, err := decodeAny(f.b)
			if err != nil {
				return err
			}
			s.elems[anyKey(a)] = a
		}
	case *ORSet:
		return s.keys.decodeField(f)
	case *LWWRegister:
		switch f.num {
		case fLWWValue:
			a, err := decodeAny(f.b)
			if err != nil {
				return err
			}
			s.value = a
		case fLWWClock:
			s.clock = protowire.DecodeZigZag(f.v)
		case fLWWReplica:
			s.replica = string(f.b)
		case fLWWSet:
			s.set = f.v != 0
		}
	case *Flag:
		if f.num == fFlag {
			s.on = f.v != 0
		}
	case *ORMap:
		if f.num != fEntries {
			return s.keys.decodeField(f)
		}
		return s.decodeEntry(f.b, depth)
	case *Vote:
		if f.num == fBallots {
			return s.decodeBallot(f.b)
		}
	}
	return nil
}

func (o *orKeys) decodeField(f field) error {
	switch f.num {
	case fCtx:
		return decodeCount(f.b, o.ctx)
	case fElems:
		fs, err := fields(f.b)
		if err != nil {
			return err
		}
		e := &orElem{dots: vv{}}
		for _, g := range fs {
			switch g.num {
			case 1:
				if e.key, err = decodeAny(g.b); err != nil {
					return err
				}
			case 2:
				if err := decodeCount(g.b, e.dots); err != nil {
					return err
				}
			}
		}
		if e.key == nil || len(e.dots) == 0 {
			return fmt.Errorf("%w: element without key or dots", ErrCorrupt)
		}
		o.elems[anyKey(e.key)] = e
	}
	return nil
}

func (m *ORMap) decodeEntry(b []byte, depth int) error {
	fs, err := fields(b)
	if err != nil {
		return err
	}
	var k string
	var v State
	for _, f := range fs {
		switch f.num {
		case 1:
			k = string(f.b)
		case 2:
			if v, err = decode(f.b, depth+1); err != nil {
				return err
			}
		}
	}
	if v == nil {
		return fmt.Errorf("%w: entry without value", ErrCorrupt)
	}
	m.values[k] = v
	return nil
}

func (v *Vote) decodeBallot(b []byte) error {
	fs, err := fields(b)
	if err != nil {
		return err
	}
	var r string
	var bl ballot
	for _, f := range fs {
		switch f.num {
		case 1:
			r = string(f.b)
		case 2:
			bl.version = f.v
		case 3:
			bl.vote = f.v != 0
		}
	}
	v.votes[r] = bl
	return nil
}
