package shard

import (
	"hash/fnv"
	"slices"

	"github.com/jetstate/jetstate/streams"
)

// liveMembers lists the view's members but except.
func liveMembers(v streams.View, except string) []string {
	out := make([]string, 0, len(v.Members))
	for m := range v.Members {
		if m != except {
			out = append(out, m)
		}
	}
	return out
}

func owners(v streams.View) []string {
	out := make([]string, len(v.Owners))
	for i, o := range v.Owners {
		out[i] = o.Member
	}
	return out
}

// assign is who should own each of n shards given the live members and
// the current owners (current[shard], "" or a member that is gone for a
// shard without a live owner). It is sticky: a shard stays with its live
// owner unless that owner holds more than its share, so a member joining
// moves only the joiner's share and a member leaving moves only its own
// shards. Shares differ by at most one (n/members rounded down or up; the
// members holding most now keep the larger shares). Shards to place go
// by rendezvous hashing: of all (shard, member with room) pairs, the
// highest score (FNV-1a of both) first. Every sidecar computes the same
// table from the same view.
func assign(n int, members []string, current []string) []string {
	out := make([]string, n)
	if len(members) == 0 {
		return out
	}
	members = slices.Clone(members)
	slices.Sort(members)
	index := make(map[string]int, len(members))
	for i, m := range members {
		index[m] = i
	}
	score := func(shard, m int) uint64 {
		h := fnv.New64a()
		h.Write([]byte(members[m]))
		h.Write([]byte{0, byte(shard >> 24), byte(shard >> 16), byte(shard >> 8), byte(shard)})
		return h.Sum64()
	}
	// Keep live owners' shards, then cut each owner down to its share.
	held := make([][]int, len(members))
	for shard := range n {
		if shard < len(current) {
			if m, ok := index[current[shard]]; ok {
				held[m] = append(held[m], shard)
			}
		}
	}
	order := make([]int, len(members)) // who gets the larger shares
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(held[b]) - len(held[a]) })
	share := make([]int, len(members))
	for rank, m := range order {
		share[m] = n / len(members)
		if rank < n%len(members) {
			share[m]++
		}
	}
	load := make([]int, len(members))
	for m, shards := range held {
		// Keep the shards this member ranks highest.
		slices.SortFunc(shards, func(a, b int) int { return cmpDesc(score(a, m), score(b, m)) })
		for _, shard := range shards[:min(len(shards), share[m])] {
			out[shard] = members[m]
			load[m]++
		}
	}
	// Place the rest.
	type pair struct {
		score    uint64
		shard, m int
	}
	var pairs []pair
	for shard := range n {
		if out[shard] != "" {
			continue
		}
		for m := range members {
			if load[m] < share[m] {
				pairs = append(pairs, pair{score(shard, m), shard, m})
			}
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := cmpDesc(a.score, b.score); c != 0 {
			return c
		}
		return a.shard - b.shard
	})
	for _, p := range pairs {
		if out[p.shard] == "" && load[p.m] < share[p.m] {
			out[p.shard] = members[p.m]
			load[p.m]++
		}
	}
	return out
}

func cmpDesc(a, b uint64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}
