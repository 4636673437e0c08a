package crdt

import (
	"maps"
	"slices"

	pb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
)

// Vote holds each replica's vote; a vote can change both ways, so each
// carries a version bumped by its replica and merge keeps the higher
// version. Only live replicas (Env.Live) count: a replica that left has no
// vote.
type Vote struct{ votes map[string]ballot }

type ballot struct {
	version uint64
	vote    bool
}

// NewVote returns a Vote with no votes.
func NewVote() *Vote { return &Vote{votes: map[string]ballot{}} }

func (v *Vote) kind() kind { return kindVote }

// Apply sets env.Replica's vote to the delta's self_vote (the other fields
// are ignored: they are the proxy's to compute).
func (v *Vote) Apply(env Env, d *pb.CrdtDelta) error {
	x, ok := d.GetDelta().(*pb.CrdtDelta_Vote)
	if !ok {
		return wrongType("apply", v, d)
	}
	b := v.votes[env.Replica]
	if sv := x.Vote.GetSelfVote(); sv != b.vote {
		v.votes[env.Replica] = ballot{version: b.version + 1, vote: sv}
	}
	return nil
}

// Merge keeps each replica's newest vote.
func (v *Vote) Merge(o State) error {
	ov, ok := o.(*Vote)
	if !ok {
		return wrongState(v, o)
	}
	for r, b := range ov.votes {
		if b.version > v.votes[r].version {
			v.votes[r] = b
		}
	}
	return nil
}

// Value is env.Replica's vote and the votes for and voters among the live
// replicas.
func (v *Vote) Value(env Env) *pb.CrdtDelta {
	live := slices.Clone(env.Live)
	if env.Live == nil {
		live = append(sortedKeys(v.votes), env.Replica)
	}
	slices.Sort(live)
	live = slices.Compact(live)
	d := &pb.VoteDelta{SelfVote: v.votes[env.Replica].vote, TotalVoters: int32(len(live))}
	for _, r := range live {
		if v.votes[r].vote {
			d.VotesFor++
		}
	}
	return &pb.CrdtDelta{Delta: &pb.CrdtDelta_Vote{Vote: d}}
}

// Clone returns a copy.
func (v *Vote) Clone() State { return &Vote{votes: maps.Clone(v.votes)} }
