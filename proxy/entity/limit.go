package entity

import (
	"fmt"
	"sync"
)

// Limit bounds the active entities of a sidecar, counted over the
// runtimes that share it (Config.Limit): event-sourced and value entities.
// CRDT instances are not counted (every replica runs its own, passivated
// by idle time only).
//
// When a command needs an entity that is not active and the limit is
// reached, the least recently used idle entity (one with no command
// running or queued) is passivated first, as after its idle time: its
// stream to the function is closed cleanly, in the background, and its
// next command activates it again from the store. An entity that is busy
// is never passivated for the limit. When no active entity is idle the
// command is refused with ErrTooManyActive: nothing ran, the client may
// retry, and entities keep their streams (refusing rather than queueing
// keeps a client from waiting on entities whose commands may themselves
// wait, and answers at once under overload).
//
// Recency is when an entity last finished its commands. A nil Limit, or
// one of at most 0, bounds nothing. A Limit is safe for concurrent use.
type Limit struct {
	max int

	mu   sync.Mutex
	n    int     // active entities, and places reserved for new ones
	list lruNode // the idle entities: list.next the most recently used, list.prev the least
}

// NewLimit returns a Limit of max active entities; max <= 0 bounds nothing.
func NewLimit(max int) *Limit {
	l := &Limit{max: max}
	l.list.prev, l.list.next = &l.list, &l.list
	return l
}

// lruNode is an entity's place in a Limit's idle list; unlinked (nil
// pointers) while the entity is busy or gone.
type lruNode struct {
	prev, next *lruNode
	e          *entity
}

func (l *Limit) bounded() bool { return l != nil && l.max > 0 }

// reserve takes a place for an entity about to be activated, passivating
// idle entities, the least recently used first, until one is free. It
// fails with ErrTooManyActive when none is idle. It must be called without
// any runtime's lock: the passivation takes it.
func (l *Limit) reserve() error {
	l.mu.Lock()
	l.n++
	for l.n > l.max {
		v := l.list.prev
		if v == &l.list {
			l.n--
			l.mu.Unlock()
			return fmt.Errorf("%w (limit %d)", ErrTooManyActive, l.max)
		}
		l.unlinkLocked(v)
		l.mu.Unlock()
		// An idle entity leaves the count (leave) as it is passivated; one
		// that became busy meanwhile, or ended, is passed over.
		v.e.evict()
		l.mu.Lock()
	}
	l.mu.Unlock()
	return nil
}

// unreserve gives back a place reserve took that no entity used.
func (l *Limit) unreserve() {
	l.mu.Lock()
	l.n--
	l.mu.Unlock()
}

// leave gives back the place of an entity that reserved one (and is gone).
func (l *Limit) leave(n *lruNode) {
	if !l.bounded() {
		return
	}
	l.mu.Lock()
	l.n--
	l.unlinkLocked(n)
	l.mu.Unlock()
}

// idle makes n the most recently used idle entity.
func (l *Limit) idle(n *lruNode) {
	if !l.bounded() {
		return
	}
	l.mu.Lock()
	l.unlinkLocked(n)
	n.prev, n.next = &l.list, l.list.next
	n.next.prev = n
	l.list.next = n
	l.mu.Unlock()
}

// busy takes n off the idle list: it cannot be passivated for the limit.
func (l *Limit) busy(n *lruNode) {
	if !l.bounded() {
		return
	}
	l.mu.Lock()
	l.unlinkLocked(n)
	l.mu.Unlock()
}

func (l *Limit) unlinkLocked(n *lruNode) {
	if n.next == nil {
		return
	}
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next = nil, nil
}
