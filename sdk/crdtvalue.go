package sdk

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/types/known/anypb"

	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
)

// CRDT is the current value of a CRDT entity (or of an ORMap entry): a *GCounter, *PNCounter,
// *GSet, *ORSet, *LWWRegister, *Flag, *ORMap or *Vote. The proxy holds the replicated CRDT; the
// user function holds only its value, which the SDK keeps up to date from the deltas the proxy
// sends, and changes through the methods of the concrete type. Each change is recorded, and the
// net change of a command (relative to the value before it) is what its reply sends.
//
// A value must only be used on the goroutine of its entity: inside command handlers and the
// OnChange and OnCancel functions of streamed commands.
type CRDT interface {
	// kind names the type, as in the CrdtDelta oneof ("gcounter").
	kind() string
	// delta is the net change since the last reset, nil if there is none.
	delta() *pb.CrdtDelta
	// full is the whole value as a delta from the empty value; an ORMap's added entries carry it.
	full() *pb.CrdtDelta
	// reset forgets the recorded change: the proxy now has the value.
	reset()
	// apply applies a delta from the proxy (not recorded as a change).
	apply(d *pb.CrdtDelta) error
	// clone is a deep copy, recorded change included.
	clone() CRDT
	// restore makes the value equal to a clone of it taken earlier.
	restore(from CRDT)
}

// ErrWrongDelta is returned (wrapped) when a delta from the proxy is of another CRDT type than
// the value it applies to, or is empty.
var ErrWrongDelta = errors.New("delta of another CRDT type")

// deltaKind names the type of a delta, as its oneof field does.
func deltaKind(d *pb.CrdtDelta) string {
	switch d.GetDelta().(type) {
	case *pb.CrdtDelta_Gcounter:
		return "gcounter"
	case *pb.CrdtDelta_Pncounter:
		return "pncounter"
	case *pb.CrdtDelta_Gset:
		return "gset"
	case *pb.CrdtDelta_Orset:
		return "orset"
	case *pb.CrdtDelta_Lwwregister:
		return "lwwregister"
	case *pb.CrdtDelta_Flag:
		return "flag"
	case *pb.CrdtDelta_Ormap:
		return "ormap"
	case *pb.CrdtDelta_Vote:
		return "vote"
	default:
		return "empty"
	}
}

// newFor returns the empty value of the delta's CRDT type.
func newFor(d *pb.CrdtDelta) (CRDT, error) {
	switch d.GetDelta().(type) {
	case *pb.CrdtDelta_Gcounter:
		return NewGCounter(), nil
	case *pb.CrdtDelta_Pncounter:
		return NewPNCounter(), nil
	case *pb.CrdtDelta_Gset:
		return NewGSet(), nil
	case *pb.CrdtDelta_Orset:
		return NewORSet(), nil
	case *pb.CrdtDelta_Lwwregister:
		return &LWWRegister{}, nil
	case *pb.CrdtDelta_Flag:
		return NewFlag(), nil
	case *pb.CrdtDelta_Ormap:
		return NewORMap(), nil
	case *pb.CrdtDelta_Vote:
		return NewVote(), nil
	default:
		return nil, fmt.Errorf("%w: empty delta", ErrWrongDelta)
	}
}

// fromDelta is a new value holding the full value d carries (an init's delta, an ORMap's added
// entry), with no recorded change.
func fromDelta(d *pb.CrdtDelta) (CRDT, error) {
	v, err := newFor(d)
	if err != nil {
		return nil, err
	}
	if err := v.apply(d); err != nil {
		return nil, err
	}
	return v, nil
}

func wrongDelta(v CRDT, d *pb.CrdtDelta) error {
	return fmt.Errorf("%w: a %s delta for a %s", ErrWrongDelta, deltaKind(d), v.kind())
}

// GCounter is a grow-only counter.
type GCounter struct {
	value, change uint64
}

// NewGCounter returns a counter at 0.
func NewGCounter() *GCounter { return &GCounter{} }

// Value is the counter's value.
func (c *GCounter) Value() uint64 { return c.value }

// Increment adds n.
func (c *GCounter) Increment(n uint64) {
	c.value += n
	c.change += n
}

func (c *GCounter) kind() string { return "gcounter" }

func (c *GCounter) delta() *pb.CrdtDelta {
	if c.change == 0 {
		return nil
	}
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Gcounter{Gcounter: &pb.GCounterDelta{Increment: c.change}}}
}

func (c *GCounter) full() *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Gcounter{Gcounter: &pb.GCounterDelta{Increment: c.value}}}
}

func (c *GCounter) reset() { c.change = 0 }

func (c *GCounter) apply(d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Gcounter)
	if !ok {
		return wrongDelta(c, d)
	}
	c.value += x.Gcounter.GetIncrement()
	return nil
}

func (c *GCounter) clone() CRDT { n := *c; return &n }

func (c *GCounter) restore(from CRDT) { *c = *from.(*GCounter) }

// PNCounter is a counter that can be incremented and decremented.
type PNCounter struct {
	value, change int64
}

// NewPNCounter returns a counter at 0.
func NewPNCounter() *PNCounter { return &PNCounter{} }

// Value is the counter's value.
func (c *PNCounter) Value() int64 { return c.value }

// Increment adds n (which may be negative).
func (c *PNCounter) Increment(n int64) {
	c.value += n
	c.change += n
}

// Decrement subtracts n.
func (c *PNCounter) Decrement(n int64) { c.Increment(-n) }

func (c *PNCounter) kind() string { return "pncounter" }

func (c *PNCounter) delta() *pb.CrdtDelta {
	if c.change == 0 {
		return nil
	}
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Pncounter{Pncounter: &pb.PNCounterDelta{Change: c.change}}}
}

func (c *PNCounter) full() *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Pncounter{Pncounter: &pb.PNCounterDelta{Change: c.value}}}
}

func (c *PNCounter) reset() { c.change = 0 }

func (c *PNCounter) apply(d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Pncounter)
	if !ok {
		return wrongDelta(c, d)
	}
	c.value += x.Pncounter.GetChange()
	return nil
}

func (c *PNCounter) clone() CRDT { n := *c; return &n }

func (c *PNCounter) restore(from CRDT) { *c = *from.(*PNCounter) }

// Clock chooses how the proxy orders the writes of an LWWRegister.
type Clock int32

// The clocks of an LWWRegister (spec section 1.6, CrdtClock).
const (
	// ClockDefault orders writes by the proxy's wall clock, in milliseconds.
	ClockDefault = Clock(pb.CrdtClock_DEFAULT)
	// ClockReverse orders writes by the reverse of the wall clock: the first write wins.
	ClockReverse = Clock(pb.CrdtClock_REVERSE)
	// ClockCustom orders writes by the custom value given with them.
	ClockCustom = Clock(pb.CrdtClock_CUSTOM)
	// ClockCustomAutoIncrement is ClockCustom, but the proxy adds one to a custom value equal
	// to the register's current one, so that the write wins.
	ClockCustomAutoIncrement = Clock(pb.CrdtClock_CUSTOM_AUTO_INCREMENT)
)

// LWWRegister is a last-write-wins register holding one Any value.
type LWWRegister struct {
	value   *anypb.Any
	clock   Clock
	custom  int64
	changed bool
}

// NewLWWRegister returns a register set to value (with ClockDefault). Setting a register as the
// state of an entity, or as the value of a new ORMap entry, sends its value to the proxy.
func NewLWWRegister(value *anypb.Any) *LWWRegister {
	r := &LWWRegister{}
	r.Set(value)
	return r
}

// Value is the register's value (nil for a register received without one). It must not be
// modified.
func (r *LWWRegister) Value() *anypb.Any { return r.value }

// Set writes v with ClockDefault. Every write is sent to the proxy, even of an equal value:
// it renews the write's timestamp.
func (r *LWWRegister) Set(v *anypb.Any) { r.SetWithClock(v, ClockDefault, 0) }

// SetWithClock writes v with the given clock; customValue is used by ClockCustom and
// ClockCustomAutoIncrement.
func (r *LWWRegister) SetWithClock(v *anypb.Any, clock Clock, customValue int64) {
	r.value = cloneAny(v)
	r.clock, r.custom, r.changed = clock, customValue, true
}

func (r *LWWRegister) kind() string { return "lwwregister" }

func (r *LWWRegister) delta() *pb.CrdtDelta {
	if !r.changed {
		return nil
	}
	return r.full()
}

func (r *LWWRegister) full() *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Lwwregister{Lwwregister: &pb.LWWRegisterDelta{
		Value: r.value, Clock: pb.CrdtClock(r.clock), CustomClockValue: r.custom,
	}}}
}

func (r *LWWRegister) reset() { r.changed = false }

func (r *LWWRegister) apply(d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Lwwregister)
	if !ok {
		return wrongDelta(r, d)
	}
	r.value = x.Lwwregister.GetValue()
	r.clock, r.custom = Clock(x.Lwwregister.GetClock()), x.Lwwregister.GetCustomClockValue()
	return nil
}

func (r *LWWRegister) clone() CRDT { n := *r; return &n }

func (r *LWWRegister) restore(from CRDT) { *r = *from.(*LWWRegister) }

// Flag is a boolean that can be switched on, never off.
type Flag struct {
	value, changed bool
}

// NewFlag returns a flag that is off.
func NewFlag() *Flag { return &Flag{} }

// Value reports whether the flag is on.
func (f *Flag) Value() bool { return f.value }

// Enable switches the flag on.
func (f *Flag) Enable() {
	if !f.value {
		f.value, f.changed = true, true
	}
}

func (f *Flag) kind() string { return "flag" }

func (f *Flag) delta() *pb.CrdtDelta {
	if !f.changed {
		return nil
	}
	return f.full()
}

func (f *Flag) full() *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Flag{Flag: &pb.FlagDelta{Value: f.value}}}
}

func (f *Flag) reset() { f.changed = false }

func (f *Flag) apply(d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Flag)
	if !ok {
		return wrongDelta(f, d)
	}
	f.value = f.value || x.Flag.GetValue() // a flag is never switched off
	return nil
}

func (f *Flag) clone() CRDT { n := *f; return &n }

func (f *Flag) restore(from CRDT) { *f = *from.(*Flag) }

// Vote is this node's vote on a condition together with the tally over all the proxy's nodes.
// The proxy sends the tally; a change of this node's vote adjusts it locally until the next
// delta from the proxy.
type Vote struct {
	self, sent bool // sent: the self vote the proxy has
	votesFor   uint32
	voters     uint32
}

// NewVote returns a vote against by this node, the only voter known so far.
func NewVote() *Vote { return &Vote{voters: 1} }

// SelfVote is this node's vote.
func (v *Vote) SelfVote() bool { return v.self }

// VotesFor is the number of nodes voting for, this one included.
func (v *Vote) VotesFor() uint32 { return v.votesFor }

// Voters is the number of voting nodes, this one included.
func (v *Vote) Voters() uint32 { return v.voters }

// AtLeastOne reports whether at least one node votes for.
func (v *Vote) AtLeastOne() bool { return v.votesFor > 0 }

// Majority reports whether more than half of the nodes vote for.
func (v *Vote) Majority() bool { return v.votesFor > v.voters/2 }

// All reports whether every node votes for.
func (v *Vote) All() bool { return v.votesFor == v.voters }

// Vote sets this node's vote; VotesFor changes by one if the vote changes.
func (v *Vote) Vote(vote bool) {
	if vote == v.self {
		return
	}
	v.self = vote
	if vote {
		v.votesFor++
	} else if v.votesFor > 0 {
		v.votesFor--
	}
}

func (v *Vote) kind() string { return "vote" }

// delta carries only the self vote: it is all the proxy reads from the user function.
func (v *Vote) delta() *pb.CrdtDelta {
	if v.self == v.sent {
		return nil
	}
	return v.full()
}

func (v *Vote) full() *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Vote{Vote: &pb.VoteDelta{SelfVote: v.self}}}
}

func (v *Vote) reset() { v.sent = v.self }

func (v *Vote) apply(d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Vote)
	if !ok {
		return wrongDelta(v, d)
	}
	v.self, v.sent = x.Vote.GetSelfVote(), x.Vote.GetSelfVote()
	v.votesFor, v.voters = uint32(max(0, x.Vote.GetVotesFor())), uint32(max(0, x.Vote.GetTotalVoters()))
	return nil
}

func (v *Vote) clone() CRDT { n := *v; return &n }

func (v *Vote) restore(from CRDT) { *v = *from.(*Vote) }
