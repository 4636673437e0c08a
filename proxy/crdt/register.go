package crdt

import (
	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"google.golang.org/protobuf/types/known/anypb"
)

// LWWRegister is a last-writer-wins register: the write with the higher
// clock wins, ties broken by the higher replica id. The clocks follow
// Akka's: DEFAULT max(now, current+1); REVERSE min(-now, current-1), so the
// first write wins; CUSTOM the delta's custom_clock_value;
// CUSTOM_AUTO_INCREMENT the custom value if above the current clock, else
// current+1.
type LWWRegister struct {
	set     bool
	value   *anypb.Any
	clock   int64
	replica string
}

// NewLWWRegister returns an unset register (its value is nil).
func NewLWWRegister() *LWWRegister { return &LWWRegister{} }

func (r *LWWRegister) kind() kind { return kindLWWRegister }

// Apply writes the delta's value at env.Replica with the delta's clock.
func (r *LWWRegister) Apply(env Env, d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Lwwregister)
	if !ok {
		return wrongType("apply", r, d)
	}
	w := x.Lwwregister
	cur := r.clock
	var c int64
	switch w.GetClock() {
	case pb.CrdtClock_REVERSE:
		c = min(-env.NowMillis, cur-1)
	case pb.CrdtClock_CUSTOM:
		c = w.GetCustomClockValue()
	case pb.CrdtClock_CUSTOM_AUTO_INCREMENT:
		c = w.GetCustomClockValue()
		if r.set && c <= cur {
			c = cur + 1
		}
	default:
		c = max(env.NowMillis, cur+1)
	}
	*r = LWWRegister{set: true, value: w.GetValue(), clock: c, replica: env.Replica}
	return nil
}

func (r *LWWRegister) wins(o *LWWRegister) bool {
	switch {
	case !o.set:
		return true
	case !r.set:
		return false
	case r.clock != o.clock:
		return r.clock > o.clock
	case r.replica != o.replica:
		return r.replica > o.replica
	}
	return anyKey(r.value) >= anyKey(o.value)
}

// Merge keeps the winning write.
func (r *LWWRegister) Merge(o State) error {
	or, ok := o.(*LWWRegister)
	if !ok {
		return wrongState(r, o)
	}
	if !r.wins(or) {
		*r = *or
	}
	return nil
}

// Value is the winning value.
func (r *LWWRegister) Value(Env) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Lwwregister{Lwwregister: &pb.LWWRegisterDelta{Value: r.value}}}
}

// Clone returns a copy.
func (r *LWWRegister) Clone() State { c := *r; return &c }

// Flag is a boolean that can only be switched on; merge is OR.
type Flag struct{ on bool }

// NewFlag returns a flag that is off.
func NewFlag() *Flag { return &Flag{} }

func (f *Flag) kind() kind { return kindFlag }

// Apply switches the flag on; switching it off gives ErrInvalidDelta (a
// false delta on a flag that is off changes nothing).
func (f *Flag) Apply(_ Env, d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Flag)
	if !ok {
		return wrongType("apply", f, d)
	}
	if !x.Flag.GetValue() {
		if f.on {
			return errFlagOff
		}
		return nil
	}
	f.on = true
	return nil
}

// Merge is OR.
func (f *Flag) Merge(o State) error {
	of, ok := o.(*Flag)
	if !ok {
		return wrongState(f, o)
	}
	f.on = f.on || of.on
	return nil
}

// Value is the flag.
func (f *Flag) Value(Env) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Flag{Flag: &pb.FlagDelta{Value: f.on}}}
}

// Clone returns a copy.
func (f *Flag) Clone() State { c := *f; return &c }
