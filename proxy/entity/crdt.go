package entity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	crdtpb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/streams"
)

// DefaultWriteTimeout bounds a CRDT update's MAJORITY or ALL write, as the
// reference proxy's 5 s.
const DefaultWriteTimeout = 5 * time.Second

// ErrWriteConsistency fails a CRDT command whose update did not reach the
// write consistency it asked for within the write timeout (the reference
// proxy's words). The update is applied here and replicates later; the
// entity restarts.
//
//lint:ignore ST1005 the reference proxy's message, capitalised
var ErrWriteConsistency = errors.New("Failed to update CRDT at requested write consistency")

// entityDeleted is the failure a command for a deleted CRDT entity gets,
// as the reference proxy words it.
const entityDeleted = "Entity deleted"

// CRDTStore is the replicated, durable store of CRDT states
// (streams.CRDTs implements it): each replica's latest whole state of an
// entity, a tombstone for deleted entities, and the confirmations of
// write consistency ALL. The states the other replicas store reach the
// runtime through Deliver, from one follower of the whole service that the
// caller runs (streams.CRDTs.FollowAll); it must follow from a stream
// sequence no later than any Load's.
type CRDTStore interface {
	Publish(ctx context.Context, e streams.Entity, replica string, data []byte) (uint64, error)
	Load(ctx context.Context, e streams.Entity) (states []streams.CRDTState, deleted bool, last uint64, err error)
	Delete(ctx context.Context, e streams.Entity) (uint64, error)
	Forget(ctx context.Context, e streams.Entity, replica string) error
	Confirm(ctx context.Context, e streams.Entity, seq uint64, want []string) error
}

// Members is the membership CRDT entities need (package shard implements
// it): this replica's id, and the live replicas of the service, for Vote's
// voters and for write consistency ALL.
type Members interface {
	// Member is this replica's id.
	Member() string
	// Members lists the live replicas (this one included once it joined)
	// and a channel closed at the next change.
	Members() (live []string, changed <-chan struct{})
}

// CRDTRuntime runs the CRDT entities of one service. Unlike the other
// kinds, a CRDT entity has no single owner: every sidecar replica that gets
// a command for it runs its own instance, and the instances converge
// through the store (each publishes its whole state after a change and
// merges the states the others publish). Commands for one instance reach
// the user function one at a time; a streamed command's subscription
// outlives it. It is safe for concurrent use.
type CRDTRuntime struct {
	cfg     Config
	client  crdtpb.CrdtClient
	store   CRDTStore
	members Members
	name    string
	me      string

	mu      sync.Mutex
	active  map[string]*crdtEntity
	closing bool
	wg      sync.WaitGroup
	ctx     context.Context // the runtime's lifetime; cancelled by Shutdown
	cancel  context.CancelFunc

	draining  chan struct{} // closed by EndStreams
	drainOnce sync.Once
}

// NewCRDT returns the runtime of a CRDT service. The caller answers the
// other replicas' write-consistency-ALL confirmations with Merged.
func NewCRDT(cfg Config, client crdtpb.CrdtClient, store CRDTStore, members Members) *CRDTRuntime {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &CRDTRuntime{
		cfg: cfg, client: client, store: store, members: members, name: string(cfg.Service.Desc.FullName()),
		me: members.Member(), active: map[string]*crdtEntity{}, ctx: ctx, cancel: cancel,
		draining: make(chan struct{}),
	}
}

// EndStreams ends every open streamed command, now and later, as if its
// client had gone away (the function is told and its answer applied), with
// ErrStopping (UNAVAILABLE: clients reconnect to another replica): for a
// sidecar that drains, long-lived subscriptions must not hold the drain
// up. Unary commands are not affected.
func (r *CRDTRuntime) EndStreams() {
	r.drainOnce.Do(func() { close(r.draining) })
}

// Merged is this replica's side of a write-consistency-ALL confirmation:
// it returns once the active instance of e here (if any) merged the
// store's sequence seq; an entity that is not active here needs nothing
// (its activation reads the store). Entities of other types return at once.
func (r *CRDTRuntime) Merged(ctx context.Context, e streams.Entity, seq uint64) error {
	if e.Type != r.cfg.Service.PersistenceID {
		return nil
	}
	r.mu.Lock()
	ent := r.active[e.Key]
	r.mu.Unlock()
	if ent == nil {
		return nil
	}
	return ent.seen.wait(ctx, seq)
}

// Deliver hands a state some replica stored (deleted: the entity's
// tombstone) to the active instance of e here, if any; it never blocks.
// States of other types than this runtime's persistence id are ignored.
func (r *CRDTRuntime) Deliver(e streams.Entity, s streams.CRDTState, deleted bool) {
	if e.Type != r.cfg.Service.PersistenceID {
		return
	}
	r.mu.Lock()
	ent := r.active[e.Key]
	r.mu.Unlock()
	if ent != nil {
		ent.inbox.push(replicated{s: s, deleted: deleted})
	}
}

// Handle runs one command on entity key and waits for its reply. Errors as
// for Runtime.Handle; a command for a deleted entity gets the failure
// "Entity deleted"; an update that does not reach its write consistency
// in time fails with ErrWriteConsistency (wrapped in ErrEntityFailed).
func (r *CRDTRuntime) Handle(ctx context.Context, key, name string, payload *anypb.Any) (Result, error) {
	req := &crdtRequest{ctx: ctx, name: name, payload: payload, done: make(chan reply, 1)}
	if err := r.enqueue(key, req); err != nil {
		return Result{}, err
	}
	select {
	case rp := <-req.done:
		return rp.res, rp.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// Stream runs a streamed command (a server-streaming method) on entity
// key: each passes the command's reply and then every message the function
// streams for it, in order, until the function ends the stream (nil), the
// entity is deleted (nil), fails or stops (an error), EndStreams ends it
// (ErrStopping), or ctx ends. When ctx ends first (or EndStreams, or each
// fails) the function is told the client cancelled, and the side
// effects of its answer are passed to each as a last Result, whose context
// is no longer the client's (each must not use ctx for them). A Result
// without a client action carries no message for the client.
func (r *CRDTRuntime) Stream(ctx context.Context, key, name string, payload *anypb.Any, each func(Result) error) error {
	req := &crdtRequest{ctx: ctx, name: name, payload: payload, done: make(chan reply, 1), sub: newSubscription()}
	if err := r.enqueue(key, req); err != nil {
		return err
	}
	var first reply
	select {
	case first = <-req.done:
	case <-ctx.Done():
		// The command may still run; if it opens a stream the entity sees
		// the subscription cancelled and tells the function.
		req.sub.cancel()
		return ctx.Err()
	}
	if first.err != nil {
		return first.err
	}
	if !first.res.streamed {
		return each(first.res) // the function did not keep the stream open
	}
	// cancel tells the function the client went away and passes its
	// answer's side effects on.
	cancel := func() {
		if res, ok := req.sub.cancelAndWait(r.cfg.CommandTimeout); ok && len(res.Effects) > 0 {
			_ = each(Result{Effects: res.Effects})
		}
	}
	if err := each(first.res); err != nil {
		cancel()
		return err
	}
	for {
		select {
		case <-req.sub.signal:
		case <-ctx.Done():
			cancel()
			return ctx.Err()
		case <-r.draining:
			cancel()
			return fmt.Errorf("%w: streamed command ended by the drain", ErrStopping)
		}
		items, end, err := req.sub.take()
		for _, res := range items {
			if err := each(res); err != nil {
				cancel()
				return err
			}
		}
		if end {
			return err
		}
	}
}

func (r *CRDTRuntime) enqueue(key string, req *crdtRequest) error {
	ent := streams.Entity{Type: r.cfg.Service.PersistenceID, Key: key}
	if err := ent.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return ErrStopping
	}
	e, ok := r.active[key]
	if !ok {
		e = newCRDTEntity(r, ent, req.ctx)
		r.active[key] = e
		r.cfg.Metrics.activeDelta(r.name, 1)
		r.wg.Add(1)
		go e.run()
	}
	select {
	case e.queue <- req:
		return nil
	default:
		return fmt.Errorf("%s %q: %w", r.name, key, ErrEntityBusy)
	}
}

// remove forgets e if it has no queued commands or if force is set.
func (r *CRDTRuntime) remove(e *crdtEntity, force bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !force && len(e.queue) > 0 {
		return false
	}
	if r.active[e.ent.Key] == e {
		delete(r.active, e.ent.Key)
		r.cfg.Metrics.activeDelta(r.name, -1)
	}
	return true
}

// Active is the number of active entities.
func (r *CRDTRuntime) Active() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.active)
}

// PassivateShard does nothing: CRDT entities are not sharded.
func (r *CRDTRuntime) PassivateShard(int) {}

// Shutdown refuses new commands (ErrStopping), ends every entity (open
// streamed commands end with ErrStopping), publishes what was not
// published yet (bounded by the write timeout) and waits. It may be called
// more than once.
func (r *CRDTRuntime) Shutdown() {
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// live is the live replicas, this one always included.
func (r *CRDTRuntime) live() ([]string, <-chan struct{}) {
	live, changed := r.members.Members()
	if !slices.Contains(live, r.me) {
		live = append(slices.Clone(live), r.me)
	}
	slices.Sort(live)
	return live, changed
}

// crdtRequest is one client command waiting for a CRDT entity.
type crdtRequest struct {
	ctx     context.Context
	name    string
	payload *anypb.Any
	done    chan reply
	sub     *subscription // streamed commands only
}

// subscription carries a streamed command's later messages from the entity
// to the client, unbounded (the entity never blocks on a slow client) and
// in order.
type subscription struct {
	signal chan struct{} // a token whenever items or end changed

	mu        sync.Mutex
	items     []Result
	end       bool
	err       error
	cancelled bool
	cancelReq chan struct{} // closed by cancel: the entity tells the function
	answer    chan Result   // the function's answer to the cancellation
}

func newSubscription() *subscription {
	return &subscription{signal: make(chan struct{}, 1), cancelReq: make(chan struct{}), answer: make(chan Result, 1)}
}

func (s *subscription) poke() {
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// push adds a message; after finish it is dropped.
func (s *subscription) push(res Result) {
	s.mu.Lock()
	if !s.end {
		s.items = append(s.items, res)
	}
	s.mu.Unlock()
	s.poke()
}

// finish ends the stream with err (nil: a normal end).
func (s *subscription) finish(err error) {
	s.mu.Lock()
	if !s.end {
		s.end, s.err = true, err
	}
	s.mu.Unlock()
	s.poke()
}

func (s *subscription) take() ([]Result, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	items := s.items
	s.items = nil
	return items, s.end, s.err
}

// cancel asks the entity to tell the function the client went away.
func (s *subscription) cancel() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.cancelled {
		s.cancelled = true
		close(s.cancelReq)
	}
}

// cancelAndWait cancels and waits (bounded) for the function's answer; it
// gives up when the stream ends without one (the entity stopped).
func (s *subscription) cancelAndWait(d time.Duration) (Result, bool) {
	s.cancel()
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case res := <-s.answer:
			return res, true
		case <-s.signal:
			s.mu.Lock()
			end := s.end
			s.mu.Unlock()
			if end {
				select {
				case res := <-s.answer:
					return res, true
				default:
					return Result{}, false
				}
			}
		case <-t.C:
			return Result{}, false
		}
	}
}

// watermark is a monotonic counter others can wait on.
type watermark struct {
	mu       sync.Mutex
	v        uint64
	err      error // set: waiters fail with it
	released bool  // set: waiters return nil
	changed  chan struct{}
}

// release makes every waiter, present and future, return nil (what they
// waited for no longer matters).
func (w *watermark) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.released {
		w.released = true
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

func newWatermark() *watermark { return &watermark{changed: make(chan struct{})} }

func (w *watermark) advance(v uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if v > w.v {
		w.v = v
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

// fail makes every waiter, present and future, fail with err.
func (w *watermark) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

func (w *watermark) get() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.v
}

// wait returns once the counter reached v, or with the failure or ctx's
// error.
func (w *watermark) wait(ctx context.Context, v uint64) error {
	for {
		w.mu.Lock()
		cur, err, released, ch := w.v, w.err, w.released, w.changed
		w.mu.Unlock()
		switch {
		case cur >= v, released:
			return nil
		case err != nil:
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
