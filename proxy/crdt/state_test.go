package crdt

import (
	"errors"
	"testing"

	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/anypb"
)

func apply(t *testing.T, s State, replica string, ds ...*pb.CrdtDelta) {
	t.Helper()
	for _, d := range ds {
		if err := s.Apply(Env{Replica: replica, NowMillis: 1000}, d); err != nil {
			t.Fatalf("apply %v: %v", d, err)
		}
	}
}

func wantValue(t *testing.T, s State, env Env, want *pb.CrdtDelta) {
	t.Helper()
	if diff := cmp.Diff(want, s.Value(env), protocmp.Transform()); diff != "" {
		t.Fatalf("value (-want +got):\n%s", diff)
	}
}

func TestNew(t *testing.T) {
	for _, k := range allKinds {
		s, err := New(op(k, 9, 0))
		if err != nil || s.kind() != k {
			t.Errorf("New(%s) = %v, %v", k, s, err)
		}
	}
	if _, err := New(&pb.CrdtDelta{}); !errors.Is(err, ErrInvalidDelta) {
		t.Errorf("New(empty) error = %v, want ErrInvalidDelta", err)
	}
}

func TestValidation(t *testing.T) {
	on := NewFlag()
	apply(t, on, "r0", flag(true))
	counterMap := NewORMap()
	apply(t, counterMap, "r0", ormap(&pb.ORMapDelta{Added: []*pb.ORMapEntryDelta{entry("k", gcInc(1))}}))
	tests := []struct {
		name  string
		state State
		delta *pb.CrdtDelta
		want  error
	}{
		{"wrong type", NewGCounter(), pnChange(1), ErrWrongType},
		{"empty delta", NewORSet(), &pb.CrdtDelta{}, ErrWrongType},
		{"flag switched off", on, flag(false), ErrInvalidDelta},
		{"flag off stays off", NewFlag(), flag(false), nil},
		{"ORMap entry of another type", counterMap, ormap(&pb.ORMapDelta{Updated: []*pb.ORMapEntryDelta{entry("k", flag(true))}}), ErrWrongType},
		{"ORMap update of an absent key ignored", counterMap, ormap(&pb.ORMapDelta{Updated: []*pb.ORMapEntryDelta{entry("absent", gcInc(1))}}), nil},
		{"ORMap added entry without delta", NewORMap(), ormap(&pb.ORMapDelta{Added: []*pb.ORMapEntryDelta{{Key: elem("k")}}}), ErrInvalidDelta},
		{"ORSet nil element", NewORSet(), &pb.CrdtDelta{Delta: &pb.CrdtDelta_Orset{Orset: &pb.ORSetDelta{Added: []*anyPB{nil}}}}, ErrInvalidDelta},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := mustMarshal(t, tt.state)
			err := tt.state.Apply(Env{Replica: "r0"}, tt.delta)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Apply error = %v, want %v", err, tt.want)
			}
			if err != nil && string(mustMarshal(t, tt.state)) != string(before) {
				t.Fatal("a failed Apply changed the state")
			}
		})
	}
	if err := NewGCounter().Merge(NewPNCounter()); !errors.Is(err, ErrWrongType) {
		t.Errorf("Merge of another type: %v, want ErrWrongType", err)
	}
	flagMap := NewORMap()
	apply(t, flagMap, "r1", ormap(&pb.ORMapDelta{Added: []*pb.ORMapEntryDelta{entry("k", flag(true))}}))
	before := mustMarshal(t, counterMap)
	if err := counterMap.Merge(flagMap); !errors.Is(err, ErrWrongType) {
		t.Errorf("Merge of ORMaps with different entry types: %v, want ErrWrongType", err)
	}
	if string(mustMarshal(t, counterMap)) != string(before) {
		t.Error("a failed Merge changed the state")
	}
}

func TestCounters(t *testing.T) {
	a, b := NewPNCounter(), NewPNCounter()
	apply(t, a, "a", pnChange(5), pnChange(-2))
	apply(t, b, "b", pnChange(-10))
	mustMerge(t, a, b)
	mustMerge(t, a, b)
	wantValue(t, a, Env{}, pnChange(-7))
	g := NewGCounter()
	apply(t, g, "a", gcInc(3))
	h := g.Clone()
	apply(t, h, "a", gcInc(4))
	apply(t, g, "b", gcInc(1))
	mustMerge(t, g, h)
	wantValue(t, g, Env{}, gcInc(8))
}

// A removed element stays removed after merging an older state that still
// had it; only an add the remover had not seen (a concurrent add) wins.
func TestORSetRemoveWinsOverSeenAdd(t *testing.T) {
	a := NewORSet()
	apply(t, a, "a", orset(false, nil, []string{"x", "y"}))
	old := a.Clone()
	b := a.Clone()
	apply(t, a, "a", orset(false, []string{"x"}, nil))
	mustMerge(t, a, old)
	wantValue(t, a, Env{}, orset(false, nil, []string{"y"}))

	apply(t, b, "b", orset(false, nil, []string{"x"})) // concurrent re-add at b
	mustMerge(t, a, b)
	wantValue(t, a, Env{}, orset(false, nil, []string{"x", "y"}))

	apply(t, a, "a", orset(true, nil, nil))
	mustMerge(t, a, b)
	mustMerge(t, a, old)
	wantValue(t, a, Env{}, orset(false, nil, nil))
}

func TestORMapRemoveWinsOverSeenAdd(t *testing.T) {
	a := NewORMap()
	apply(t, a, "a", ormap(&pb.ORMapDelta{Added: []*pb.ORMapEntryDelta{entry("k", gcInc(2)), entry("j", flag(true))}}))
	old := a.Clone()
	b := a.Clone()
	apply(t, a, "a", ormapRemove("k"))
	mustMerge(t, a, old)
	wantValue(t, a, Env{}, ormap(&pb.ORMapDelta{Added: []*pb.ORMapEntryDelta{entry("j", flag(true))}}))

	apply(t, b, "b", ormap(&pb.ORMapDelta{Updated: []*pb.ORMapEntryDelta{entry("k", gcInc(1))}}))
	mustMerge(t, a, b) // an update is not an add: k stays removed
	wantValue(t, a, Env{}, ormap(&pb.ORMapDelta{Added: []*pb.ORMapEntryDelta{entry("j", flag(true))}}))

	apply(t, b, "b", ormap(&pb.ORMapDelta{Added: []*pb.ORMapEntryDelta{entry("k", gcInc(1))}}))
	mustMerge(t, a, b) // a concurrent add wins, its value merged with what b held
	wantValue(t, a, Env{}, ormap(&pb.ORMapDelta{Added: []*pb.ORMapEntryDelta{entry("j", flag(true)), entry("k", gcInc(4))}}))
}

// State size depends on live elements and replicas, not on history.
func TestBoundedSize(t *testing.T) {
	set, m := NewORSet(), NewORMap()
	other := NewORSet()
	apply(t, other, "b", orset(false, nil, []string{"z"}))
	for i := range 1000 {
		r := []string{"a", "b"}[i%2]
		apply(t, set, r, orset(false, nil, []string{"x"}), orset(false, []string{"x"}, nil))
		apply(t, m, r, ormap(&pb.ORMapDelta{Added: []*pb.ORMapEntryDelta{entry("k", gcInc(1))}}), ormapRemove("k"))
		if i%100 == 0 {
			mustMerge(t, set, other)
		}
	}
	for _, s := range []State{set, m} {
		if n := len(mustMarshal(t, s)); n > 100 {
			t.Errorf("%s: %d bytes after 1000 add/remove cycles", s.kind(), n)
		}
	}
}

func TestVoteCountsLiveReplicas(t *testing.T) {
	a, b, c := NewVote(), NewVote(), NewVote()
	apply(t, a, "a", vote(true))
	apply(t, b, "b", vote(true))
	apply(t, c, "c", vote(false))
	s := merged(t, a, b, c)
	vd := func(self bool, for_, total int32) *pb.CrdtDelta {
		return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Vote{Vote: &pb.VoteDelta{SelfVote: self, VotesFor: for_, TotalVoters: total}}}
	}
	wantValue(t, s, Env{Replica: "a", Live: []string{"a", "b", "c"}}, vd(true, 2, 3))
	wantValue(t, s, Env{Replica: "c", Live: []string{"a", "c"}}, vd(false, 1, 2)) // b left: no vote
	wantValue(t, s, Env{Replica: "d", Live: []string{"d"}}, vd(false, 0, 1))
	wantValue(t, s, Env{Replica: "a"}, vd(true, 2, 2)) // nil Live: replicas that ever voted for (c never did)
	// A vote withdrawn later wins over the older vote, in any merge order.
	apply(t, a, "a", vote(false))
	mustMerge(t, s, a)
	wantValue(t, s, Env{Replica: "a", Live: []string{"a", "b", "c"}}, vd(false, 1, 3))
}

func TestLWWClocks(t *testing.T) {
	type write struct {
		replica string
		now     int64
		delta   *pb.CrdtDelta
	}
	tests := []struct {
		name   string
		writes []write // applied at their own replica, then merged in order
		want   string
	}{
		{"default: later wins", []write{{"a", 100, lww("1", pb.CrdtClock_DEFAULT, 0)}, {"b", 200, lww("2", pb.CrdtClock_DEFAULT, 0)}}, "2"},
		{"default: later wins whatever the merge order", []write{{"b", 200, lww("2", pb.CrdtClock_DEFAULT, 0)}, {"a", 100, lww("1", pb.CrdtClock_DEFAULT, 0)}}, "2"},
		{"default: tie broken by replica id", []write{{"b", 100, lww("2", pb.CrdtClock_DEFAULT, 0)}, {"a", 100, lww("1", pb.CrdtClock_DEFAULT, 0)}}, "2"},
		{"reverse: first write wins", []write{{"a", 100, lww("1", pb.CrdtClock_REVERSE, 0)}, {"b", 200, lww("2", pb.CrdtClock_REVERSE, 0)}}, "1"},
		{"custom: higher custom clock wins", []write{{"a", 900, lww("1", pb.CrdtClock_CUSTOM, 7)}, {"b", 100, lww("2", pb.CrdtClock_CUSTOM, 3)}}, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewLWWRegister()
			for _, w := range tt.writes {
				r := NewLWWRegister()
				if err := r.Apply(Env{Replica: w.replica, NowMillis: w.now}, w.delta); err != nil {
					t.Fatal(err)
				}
				mustMerge(t, s, r)
			}
			wantValue(t, s, Env{}, lww(tt.want, 0, 0))
		})
	}
	t.Run("local writes", func(t *testing.T) {
		s := NewLWWRegister()
		env := Env{Replica: "a", NowMillis: 100}
		steps := []struct {
			delta *pb.CrdtDelta
			clock int64
		}{
			{lww("1", pb.CrdtClock_CUSTOM, 5), 5},
			{lww("2", pb.CrdtClock_CUSTOM_AUTO_INCREMENT, 5), 6}, // equal: +1
			{lww("3", pb.CrdtClock_CUSTOM_AUTO_INCREMENT, 9), 9}, // above: as given
			{lww("4", pb.CrdtClock_DEFAULT, 0), 100},             // now
			{lww("5", pb.CrdtClock_DEFAULT, 0), 101},             // now is not later: current+1
			{lww("6", pb.CrdtClock_REVERSE, 0), -100},            // min(-now, current-1)
			{lww("7", pb.CrdtClock_CUSTOM, 2), 2},                // custom: as given, even lower
		}
		for i, st := range steps {
			if err := s.Apply(env, st.delta); err != nil {
				t.Fatal(err)
			}
			if s.clock != st.clock {
				t.Fatalf("step %d: clock %d, want %d", i, s.clock, st.clock)
			}
		}
	})
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name     string
		old, new *pb.CrdtDelta
		want     *pb.CrdtDelta
	}{
		{"gcounter", gcInc(3), gcInc(10), gcInc(7)},
		{"gcounter unchanged", gcInc(3), gcInc(3), nil},
		{"gcounter from nothing", nil, gcInc(3), gcInc(3)},
		{"pncounter down", pnChange(3), pnChange(-2), pnChange(-5)},
		{"gset", gsetAdd("a"), gsetAdd("a", "b"), gsetAdd("b")},
		{"orset", orset(false, nil, []string{"a", "b"}), orset(false, nil, []string{"b", "c"}), orset(false, []string{"a"}, []string{"c"})},
		{"orset emptied", orset(false, nil, []string{"a", "b"}), orset(false, nil, nil), orset(true, nil, nil)},
		{"lww", lww("a", 0, 0), lww("b", 0, 0), lww("b", 0, 0)},
		{"flag", flag(false), flag(true), flag(true)},
		{"ormap", ormap(&pb.ORMapDelta{Added: []*pb.ORMapEntryDelta{entry("gone", flag(true)), entry("k", gcInc(1)), entry("same", gcInc(1))}}),
			ormap(&pb.ORMapDelta{Added: []*pb.ORMapEntryDelta{entry("k", gcInc(4)), entry("new", flag(true)), entry("same", gcInc(1))}}),
			ormap(&pb.ORMapDelta{Removed: []*anyPB{elem("gone")}, Updated: []*pb.ORMapEntryDelta{entry("k", gcInc(3))}, Added: []*pb.ORMapEntryDelta{entry("new", flag(true))}})},
		{"vote", vote(false), &pb.CrdtDelta{Delta: &pb.CrdtDelta_Vote{Vote: &pb.VoteDelta{VotesFor: 1, TotalVoters: 2}}}, &pb.CrdtDelta{Delta: &pb.CrdtDelta_Vote{Vote: &pb.VoteDelta{VotesFor: 1, TotalVoters: 2}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Diff(tt.old, tt.new)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Fatalf("Diff (-want +got):\n%s", diff)
			}
			checkDiff(t, tt.old, tt.new)
		})
	}
	if _, err := Diff(gcInc(1), flag(true)); !errors.Is(err, ErrWrongType) {
		t.Errorf("Diff of different types: %v, want ErrWrongType", err)
	}
	if _, err := Diff(gcInc(5), gcInc(1)); !errors.Is(err, ErrInvalidDelta) {
		t.Errorf("Diff of a GCounter going down: %v, want ErrInvalidDelta", err)
	}
}

func TestUnmarshalCorrupt(t *testing.T) {
	for _, b := range [][]byte{nil, {0xff}, {0x08, 0x63}, {0x10, 0x01}} {
		if _, err := Unmarshal(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Unmarshal(%x) error = %v, want ErrCorrupt", b, err)
		}
	}
}

type anyPB = anypb.Any
