package shard

import (
	"fmt"
	"slices"
	"testing"
)

func TestAssign(t *testing.T) {
	members := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("sidecar-%d", i))
		}
		return out
	}
	moved := func(a, b []string) int {
		n := 0
		for i := range a {
			if a[i] != b[i] {
				n++
			}
		}
		return n
	}
	if got := assign(4, nil, nil); !slices.Equal(got, []string{"", "", "", ""}) {
		t.Fatalf("no members: %q", got)
	}
	for _, shards := range []int{1, 7, 100, 1000} {
		for m := 1; m <= 7; m++ {
			ms := members(m)
			a := assign(shards, ms, nil)
			// Every shard owned by a member, none over the bound.
			limit := (shards + m - 1) / m
			if again := assign(shards, ms, a); !slices.Equal(again, a) {
				t.Errorf("%d shards, %d members: a settled table moves again", shards, m)
			}
			load := map[string]int{}
			for s, o := range a {
				if !slices.Contains(ms, o) {
					t.Fatalf("%d shards, %d members: shard %d owned by %q", shards, m, s, o)
				}
				load[o]++
			}
			for _, o := range ms {
				if n := load[o]; n < shards/m {
					t.Errorf("%d shards, %d members: %s holds %d < %d", shards, m, o, n, shards/m)
				}
			}
			for o, n := range load {
				if n > limit {
					t.Errorf("%d shards, %d members: %s holds %d > %d", shards, m, o, n, limit)
				}
			}
			// The same answer whatever the order the members are seen in.
			rev := slices.Clone(ms)
			slices.Reverse(rev)
			if !slices.Equal(a, assign(shards, rev, nil)) {
				t.Errorf("%d shards, %d members: depends on member order", shards, m)
			}
			// Joining moves about the joiner's share, leaving about the
			// leaver's; never everything.
			if shards >= 100 {
				joined := assign(shards, members(m+1), a)
				ideal := shards / (m + 1)
				if n := moved(a, joined); n > ideal+1 {
					t.Errorf("%d shards: member %d joining moved %d shards, ideal %d", shards, m+1, n, ideal)
				}
				if m > 1 {
					left := assign(shards, ms[1:], a)
					ideal := load[ms[0]]
					if n := moved(a, left); n != ideal {
						t.Errorf("%d shards: %s leaving %d members moved %d shards, ideal %d", shards, ms[0], m, n, ideal)
					}
				}
			}
		}
	}
}
