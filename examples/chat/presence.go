package chat

import (
	"github.com/jetstate/jetstate/sdk"
)

// Presence returns the definition of the presence entity: a Vote per user.
func Presence() sdk.Entity {
	c := sdk.NewCrdt(sdk.CrdtConfig{ServiceName: PresenceService, PersistenceID: PresencePersistenceID}, newPresence)
	sdk.HandleCrdtStreamed(c, "Connect", (*presence).connect)
	sdk.HandleCrdtStreamed(c, "Monitor", (*presence).monitor)
	return c
}

// presence is one user's presence entity on one sidecar replica: the user's Connect streams
// open there. The replica's vote is true while there is at least one. The SDK runs an entity's
// handlers and callbacks one at a time, so connections needs no lock.
type presence struct {
	connections int
}

func newPresence(string) *presence { return &presence{} }

// vote returns the entity's Vote, creating it if the entity has no state yet.
func vote(ctx *sdk.CrdtContext) *sdk.Vote {
	if v, ok := ctx.State().(*sdk.Vote); ok {
		return v
	}
	v := sdk.NewVote()
	ctx.SetState(v)
	return v
}

// online tells whether at least one replica votes for the user; an entity without state is
// offline.
func online(ctx *sdk.CrdtContext) bool {
	v, ok := ctx.State().(*sdk.Vote)
	return ok && v.VotesFor() > 0
}

// connect counts the stream and votes true on the first; when the stream is cancelled it is
// uncounted, and the vote withdrawn with the last. The first element tells the client that it
// is connected.
func (p *presence) connect(ctx *sdk.CrdtStreamContext[*Empty], _ *User) (*Empty, error) {
	p.connections++
	if v := vote(ctx.CrdtContext); !v.SelfVote() {
		v.Vote(true)
	}
	ctx.OnCancel(func(ctx *sdk.CrdtContext) error {
		p.connections--
		if p.connections == 0 {
			vote(ctx).Vote(false)
		}
		return nil
	})
	return &Empty{}, nil
}

// monitor sends the user's status, then the new status whenever a change of the Vote changes
// it (a change of the number of voters alone sends nothing).
func (p *presence) monitor(ctx *sdk.CrdtStreamContext[*OnlineStatus], _ *User) (*OnlineStatus, error) {
	last := online(ctx.CrdtContext)
	ctx.OnChange(func(ctx *sdk.CrdtContext) (*OnlineStatus, bool, error) {
		now := online(ctx)
		if now == last {
			return nil, false, nil
		}
		last = now
		return &OnlineStatus{Online: now}, false, nil
	})
	return &OnlineStatus{Online: last}, nil
}
