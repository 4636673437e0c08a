package crdt

import (
	"bytes"
	"fmt"
	"testing"

	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func elem(s string) *anypb.Any {
	return &anypb.Any{TypeUrl: "type.googleapis.com/test.Elem", Value: []byte(s)}
}

func gcInc(n uint64) *pb.CrdtDelta { return gcounter(n) }

func pnChange(n int64) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Pncounter{Pncounter: &pb.PNCounterDelta{Change: n}}}
}

func gsetAdd(es ...string) *pb.CrdtDelta {
	d := &pb.GSetDelta{}
	for _, e := range es {
		d.Added = append(d.Added, elem(e))
	}
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Gset{Gset: d}}
}

func orset(cleared bool, removed, added []string) *pb.CrdtDelta {
	d := &pb.ORSetDelta{Cleared: cleared}
	for _, e := range removed {
		d.Removed = append(d.Removed, elem(e))
	}
	for _, e := range added {
		d.Added = append(d.Added, elem(e))
	}
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Orset{Orset: d}}
}

func lww(v string, c pb.CrdtClock, custom int64) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Lwwregister{Lwwregister: &pb.LWWRegisterDelta{Value: elem(v), Clock: c, CustomClockValue: custom}}}
}

func flag(on bool) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Flag{Flag: &pb.FlagDelta{Value: on}}}
}

func vote(v bool) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Vote{Vote: &pb.VoteDelta{SelfVote: v}}}
}

func entry(k string, d *pb.CrdtDelta) *pb.ORMapEntryDelta {
	return &pb.ORMapEntryDelta{Key: elem(k), Delta: d}
}

func ormap(d *pb.ORMapDelta) *pb.CrdtDelta {
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Ormap{Ormap: d}}
}

func ormapRemove(ks ...string) *pb.CrdtDelta {
	d := &pb.ORMapDelta{}
	for _, k := range ks {
		d.Removed = append(d.Removed, elem(k))
	}
	return ormap(d)
}

// op turns a fuzzed byte into a delta of kind k. ORMap keys have a fixed
// value type each (m0 GCounter, m1 ORSet, m2 LWWRegister, m3 a nested ORMap).
func op(k kind, x byte, step int) *pb.CrdtDelta {
	e := fmt.Sprint("e", x/8%4)
	switch k {
	case kindGCounter:
		return gcInc(uint64(x % 5))
	case kindPNCounter:
		return pnChange(int64(x%7) - 3)
	case kindGSet:
		return gsetAdd(e)
	case kindORSet:
		switch {
		case x == 0:
			return orset(true, nil, nil)
		case x%3 == 0:
			return orset(false, []string{e}, nil)
		}
		return orset(false, nil, []string{e})
	case kindLWWRegister:
		return lww(fmt.Sprint("v", x%3), pb.CrdtClock(x/3%4), int64(x/12%5))
	case kindFlag:
		return flag(x%4 == 0)
	case kindORMap:
		key := fmt.Sprint("m", x/8%4)
		var nested *pb.CrdtDelta
		switch x / 8 % 4 {
		case 0:
			nested = gcInc(uint64(x%3) + 1)
		case 1:
			nested = orset(false, nil, []string{fmt.Sprint("e", x%2)})
		case 2:
			nested = lww(fmt.Sprint("v", x%3), pb.CrdtClock_DEFAULT, 0)
		case 3:
			nested = ormap(&pb.ORMapDelta{Added: []*pb.ORMapEntryDelta{entry(fmt.Sprint("n", x%2), gcInc(1))}})
		}
		switch x % 8 {
		case 0:
			return ormap(&pb.ORMapDelta{Cleared: x < 64})
		case 1, 2:
			return ormapRemove(key)
		case 3, 4, 5:
			return ormap(&pb.ORMapDelta{Updated: []*pb.ORMapEntryDelta{entry(key, nested)}})
		}
		return ormap(&pb.ORMapDelta{Added: []*pb.ORMapEntryDelta{entry(key, nested)}})
	case kindVote:
		return vote(x%2 == 1)
	}
	panic("unknown kind")
}

var replicas = []string{"r0", "r1", "r2"}

// run plays a fuzzed history at 3 replicas: each pair of bytes either
// applies an op at a replica or merges one replica's state into another's.
// It checks on the way that a merge changes the user function's value by
// exactly Diff, and returns the three states.
func run(t testing.TB, k kind, data []byte) []State {
	t.Helper()
	states := make([]State, len(replicas))
	for i := range states {
		states[i] = newKind(k)
	}
	for step := 0; step+1 < len(data); step += 2 {
		a, x := data[step], data[step+1]
		r := int(a) % len(replicas)
		env := Env{Replica: replicas[r], NowMillis: int64(step)}
		if a/3%3 == 0 {
			from := (r + 1 + int(a/9)%2) % len(replicas)
			before := states[r].Value(env)
			mustMerge(t, states[r], states[from])
			checkDiff(t, before, states[r].Value(env))
			continue
		}
		if err := states[r].Apply(env, op(k, x, step)); err != nil && !isExpected(err) {
			t.Fatalf("apply: %v", err)
		}
	}
	return states
}

func isExpected(err error) bool { return err == errFlagOff }

func mustMerge(t testing.TB, s, o State) {
	t.Helper()
	if err := s.Merge(o); err != nil {
		t.Fatalf("merge: %v", err)
	}
}

func merged(t testing.TB, s ...State) State {
	t.Helper()
	out := s[0].Clone()
	for _, o := range s[1:] {
		mustMerge(t, out, o)
	}
	return out
}

func checkDiff(t testing.TB, old, new *pb.CrdtDelta) {
	t.Helper()
	d, err := Diff(old, new)
	if err != nil {
		t.Fatalf("diff: %v", err)
	}
	if d == nil {
		if !proto.Equal(old, new) {
			t.Fatalf("no diff between different values\nold %v\nnew %v", old, new)
		}
		return
	}
	got, err := ApplyValue(old, d)
	if err != nil {
		t.Fatalf("apply diff: %v", err)
	}
	if !proto.Equal(got, new) {
		t.Fatalf("old + diff != new\nold  %v\ndiff %v\ngot  %v\nnew  %v", old, d, got, new)
	}
}

func sameState(t testing.TB, what string, a, b State) {
	t.Helper()
	if ab, bb := mustMarshal(t, a), mustMarshal(t, b); !bytes.Equal(ab, bb) {
		t.Fatalf("%s: states differ\n%x\n%x", what, ab, bb)
	}
}

func mustMarshal(t testing.TB, s State) []byte {
	t.Helper()
	b, err := Marshal(s)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}
