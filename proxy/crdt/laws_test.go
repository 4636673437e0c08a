package crdt

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"
)

var allKinds = []kind{kindGCounter, kindPNCounter, kindGSet, kindORSet, kindLWWRegister, kindFlag, kindORMap, kindVote}

func seeds(f *testing.F) {
	f.Add([]byte{1, 9, 2, 17, 0, 3, 4, 40, 5, 0, 6, 33, 7, 24, 8, 1, 10, 2})
	f.Add([]byte{1, 8, 0, 0, 2, 16, 3, 3, 1, 24, 0, 1, 4, 6, 2, 9, 7, 27, 11, 12})
	f.Add(bytes.Repeat([]byte{1, 8, 1, 11, 0, 0}, 10))
	f.Add([]byte{})
}

// lawsFuzz checks that Merge is commutative, associative and idempotent on
// states built from a fuzzed history at 3 replicas, that full merging
// converges, that the encoding round-trips, and (in run) that every merge
// changes the value by exactly Diff.
func lawsFuzz(f *testing.F, k kind) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		s := run(t, k, data)
		a, b, c := s[0], s[1], s[2]
		sameState(t, "commutative", merged(t, a, b), merged(t, b, a))
		sameState(t, "associative", merged(t, merged(t, a, b), c), merged(t, a, merged(t, b, c)))
		sameState(t, "idempotent", merged(t, a, a), a)
		sameState(t, "idempotent after merge", merged(t, merged(t, a, b), b), merged(t, a, b))
		all := merged(t, a, b, c)
		for i, x := range s {
			// Delta application at one replica equals merging its full state.
			y := merged(t, x, all)
			env := Env{Replica: replicas[i], Live: replicas}
			if !proto.Equal(y.Value(env), all.Value(env)) {
				t.Fatalf("replica %d does not converge: %v vs %v", i, y.Value(env), all.Value(env))
			}
		}
		for _, x := range append(s, all) {
			got, err := Unmarshal(mustMarshal(t, x))
			if err != nil {
				t.Fatal(err)
			}
			sameState(t, "round trip", got, x)
		}
	})
}

func FuzzLawsGCounter(f *testing.F)    { lawsFuzz(f, kindGCounter) }
func FuzzLawsPNCounter(f *testing.F)   { lawsFuzz(f, kindPNCounter) }
func FuzzLawsGSet(f *testing.F)        { lawsFuzz(f, kindGSet) }
func FuzzLawsORSet(f *testing.F)       { lawsFuzz(f, kindORSet) }
func FuzzLawsLWWRegister(f *testing.F) { lawsFuzz(f, kindLWWRegister) }
func FuzzLawsFlag(f *testing.F)        { lawsFuzz(f, kindFlag) }
func FuzzLawsORMap(f *testing.F)       { lawsFuzz(f, kindORMap) }
func FuzzLawsVote(f *testing.F)        { lawsFuzz(f, kindVote) }

// FuzzUnmarshal: stored bytes are outside input; decoding must not panic,
// and what decodes must re-encode to a state that decodes the same.
func FuzzUnmarshal(f *testing.F) {
	for _, k := range allKinds {
		s := run(f, k, []byte{1, 9, 2, 17, 0, 3, 4, 40, 5, 0, 6, 33, 7, 24, 8, 1})
		f.Add(mustMarshal(f, merged(f, s...)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Unmarshal(b)
		if err != nil {
			return
		}
		again, err := Unmarshal(mustMarshal(t, s))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		sameState(t, "re-decode", again, s)
		_ = s.Value(Env{Replica: "r0"})
	})
}
