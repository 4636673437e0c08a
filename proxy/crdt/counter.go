package crdt

import (
	"maps"

	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
)

// GCounter is a grow-only counter: one count per replica, merged by max.
type GCounter struct{ counts vv }

// NewGCounter returns a zero GCounter.
func NewGCounter() *GCounter { return &GCounter{counts: vv{}} }

func (g *GCounter) kind() kind { return kindGCounter }

func (g *GCounter) sum() uint64 {
	var n uint64
	for _, c := range g.counts {
		n += c
	}
	return n
}

// Apply adds the delta's increment to env.Replica's count.
func (g *GCounter) Apply(env Env, d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Gcounter)
	if !ok {
		return wrongType("apply", g, d)
	}
	if n := x.Gcounter.GetIncrement(); n > 0 {
		g.counts[env.Replica] += n
	}
	return nil
}

// Merge takes each replica's highest count.
func (g *GCounter) Merge(o State) error {
	og, ok := o.(*GCounter)
	if !ok {
		return wrongState(g, o)
	}
	g.counts.mergeMax(og.counts)
	return nil
}

// Value is the sum of the counts.
func (g *GCounter) Value(Env) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Gcounter{Gcounter: &pb.GCounterDelta{Increment: g.sum()}}}
}

// Clone returns a deep copy.
func (g *GCounter) Clone() State { return &GCounter{counts: maps.Clone(g.counts)} }

// PNCounter is a counter that goes both ways: a GCounter of increments and
// one of decrements.
type PNCounter struct{ p, n *GCounter }

// NewPNCounter returns a zero PNCounter.
func NewPNCounter() *PNCounter { return &PNCounter{p: NewGCounter(), n: NewGCounter()} }

func (c *PNCounter) kind() kind { return kindPNCounter }

// Apply adds the delta's change (positive or negative) at env.Replica.
func (c *PNCounter) Apply(env Env, d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Pncounter)
	if !ok {
		return wrongType("apply", c, d)
	}
	switch ch := x.Pncounter.GetChange(); {
	case ch > 0:
		c.p.counts[env.Replica] += uint64(ch)
	case ch < 0:
		c.n.counts[env.Replica] += uint64(-ch)
	}
	return nil
}

// Merge merges both GCounters.
func (c *PNCounter) Merge(o State) error {
	oc, ok := o.(*PNCounter)
	if !ok {
		return wrongState(c, o)
	}
	c.p.counts.mergeMax(oc.p.counts)
	c.n.counts.mergeMax(oc.n.counts)
	return nil
}

// Value is increments minus decrements.
func (c *PNCounter) Value(Env) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Pncounter{Pncounter: &pb.PNCounterDelta{Change: int64(c.p.sum() - c.n.sum())}}}
}

// Clone returns a deep copy.
func (c *PNCounter) Clone() State {
	return &PNCounter{p: c.p.Clone().(*GCounter), n: c.n.Clone().(*GCounter)}
}
