package shard

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Why a routed command stopped waiting for its owner's answer before its
// time was up: the answer can no longer come.
var (
	errConnLost  = errors.New("this sidecar's NATS connection dropped while it waited for the owner's answer")
	errOwnerGone = errors.New("the owner left the service's members while the command was in its hands")
)

// peers tells a routed command when the answer it waits for is lost, so
// that it ends at once as ambiguous instead of waiting out the command
// timeout: when this sidecar's NATS connection drops (a reply sent
// meanwhile is not delivered again), or when the owner it was sent to has
// left the members (killed, or cut off until its membership expired) and
// a grace has passed for answers still under way. A graceful owner hands
// its shards off, finishing the commands it holds, before it leaves the
// members, so the grace is not a wait it needs.
type peers struct {
	grace time.Duration

	mu       sync.Mutex
	conn     context.Context // cancelled by the next disconnection
	dropConn context.CancelCauseFunc
	members  map[string]*peer
	view     map[string][]byte // the members of the last view seen; nil: none yet
}

type peer struct {
	ctx    context.Context // cancelled once the member has been gone for the grace
	cancel context.CancelCauseFunc
	timer  *time.Timer // the grace running; nil while the member is in the view
}

func newPeers(grace time.Duration) *peers {
	p := &peers{grace: grace, members: map[string]*peer{}}
	p.conn, p.dropConn = context.WithCancelCause(context.Background())
	return p
}

// follow turns the connection's status changes into disconnections until
// ctx ends.
func (p *peers) follow(ctx context.Context, nc *nats.Conn) {
	ch := nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	defer nc.RemoveStatusListener(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			p.disconnected()
		}
	}
}

// disconnected ends the waits of the requests sent so far; requests sent
// from now on (buffered while reconnecting, sent once reconnected) wait
// for the next disconnection.
func (p *peers) disconnected() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropConn(errConnLost)
	p.conn, p.dropConn = context.WithCancelCause(context.Background())
}

// lost returns a context cancelled, with errConnLost or errOwnerGone as its
// cause, once an answer from member (the shard's owner in the table; ""
// unknown) to a request sent now can no longer arrive. stop releases it.
func (p *peers) lost(member string) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	p.mu.Lock()
	conn := p.conn
	var owner context.Context
	if member != "" {
		pe := p.members[member]
		if pe == nil {
			pe = &peer{}
			pe.ctx, pe.cancel = context.WithCancelCause(context.Background())
			p.members[member] = pe
			if _, in := p.view[member]; !in && p.view != nil {
				p.startGrace(member, pe)
			}
		}
		owner = pe.ctx
	}
	p.mu.Unlock()
	stopConn := context.AfterFunc(conn, func() { cancel(context.Cause(conn)) })
	stopOwner := func() bool { return false }
	if owner != nil {
		stopOwner = context.AfterFunc(owner, func() { cancel(context.Cause(owner)) })
	}
	return ctx, func() {
		stopConn()
		stopOwner()
		cancel(nil)
	}
}

// seen takes the members of a new view: those gone start their grace,
// those back stop it.
func (p *peers) seen(members map[string][]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.view = members
	for m, pe := range p.members {
		_, in := members[m]
		switch {
		case !in && pe.timer == nil && pe.ctx.Err() == nil:
			p.startGrace(m, pe)
		case in && pe.timer != nil && pe.timer.Stop():
			pe.timer = nil
		}
	}
}

func (p *peers) startGrace(member string, pe *peer) {
	pe.timer = time.AfterFunc(p.grace, func() {
		pe.cancel(errOwnerGone)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.members[member] == pe {
			delete(p.members, member)
		}
	})
}
