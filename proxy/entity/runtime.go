package entity

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/streams"
)

// Result is what a user function answered to one entity command.
type Result struct {
	// Action is the reply, forward or failure for the client.
	Action *cloudstate.ClientAction
	// Effects are the side effects to run, in order.
	Effects []*cloudstate.SideEffect
	// restart asks the runtime to close the stream and re-open it at once
	// (event-sourced Failure.restart).
	restart bool
	// streamed: the function keeps a streamed command open (CRDT).
	streamed bool
}

// session is one open stream to the user function for one entity: init was
// sent and state recovered. A session is used by one goroutine at a time.
type session interface {
	// command sends command id to the function, waits for its reply, stores
	// the state change it carries, and returns it. An error means the
	// session is broken and must be aborted; one wrapping errStreamEnded
	// also means the function did not get the command.
	command(ctx context.Context, id int64, name string, payload *anypb.Any) (Result, error)
	// close half-closes the stream and waits, bounded, for the function to
	// end its side (passivation, restart).
	close()
	// abort tears the stream down at once (after an error).
	abort()
}

// opener opens a session for an entity id: it loads the entity's state and
// sends init (and, for event-sourced entities, the journal's events).
type opener func(ctx context.Context, entityID string) (session, error)

// request is one client command waiting for an entity.
type request struct {
	ctx     context.Context
	name    string
	payload *anypb.Any
	done    chan reply
}

type reply struct {
	res Result
	err error
}

// Defaults for Config fields left zero.
const (
	DefaultQueueSize      = 100
	DefaultCommandTimeout = time.Minute
	DefaultPassivation    = 30 * time.Second
)

// Config configures the runtime of one entity type (one user service).
type Config struct {
	// Service is the user service; required.
	Service *model.Service
	// QueueSize bounds the commands waiting for one entity. Default 100.
	QueueSize int
	// CommandTimeout bounds how long the user function may take to answer
	// one command (and an activation). Default 1 min.
	CommandTimeout time.Duration
	// Passivation is the idle time after which an entity's stream is
	// closed. Default 30 s. CRDT entities with an open streamed command are
	// not passivated.
	Passivation time.Duration
	// WriteTimeout bounds a CRDT update's MAJORITY or ALL write. Default 5 s.
	WriteTimeout time.Duration
	// Guard places entities on shards and fences writes; nil: one shard,
	// always served, every write allowed.
	Guard Guard
	// Load is told when commands are in the function and in the store;
	// nil: not measured.
	Load Load
	// Metrics records commands, activations and writes; nil: not recorded.
	Metrics *Metrics
	// Limit bounds the active entities of the runtimes that share it
	// (event-sourced and value); nil: no bound.
	Limit *Limit
	// ReportError tells the user function about a mistake of its own (a
	// CRDT update its state cannot take); nil: not told.
	ReportError func(ctx context.Context, msg string)
	// Log; nil discards.
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.Passivation <= 0 {
		c.Passivation = DefaultPassivation
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.Guard == nil {
		c.Guard = oneShard{}
	}
	if c.Load == nil {
		c.Load = noLoad{}
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Guard is what the runtime asks of sharding (package shard implements it).
type Guard interface {
	// ShardOf is the shard entity e belongs to.
	ShardOf(e streams.Entity) int
	// Serves reports whether this sidecar serves shard now; commands of a
	// shard it does not serve are refused with ErrMoved.
	Serves(shard int) bool
	// Check is the last check before e's state change is stored: an error
	// means this sidecar may no longer write it (the command fails with
	// ErrMoved and runs again at the shard's owner).
	Check(e streams.Entity) error
}

// oneShard is the Guard of a sidecar alone: one shard, always served.
type oneShard struct{}

func (oneShard) ShardOf(streams.Entity) int { return 0 }
func (oneShard) Serves(int) bool            { return true }
func (oneShard) Check(streams.Entity) error { return nil }

// Load is told where commands spend their time, for the autoscaler
// (package load implements it).
type Load interface {
	// Function counts a command in the user function; done counts it out.
	Function() (done func())
	// Store counts an operation on the store (an activation) in.
	Store() (done func())
	// Storing moves a command from the function to the store while its
	// state change is stored; back moves it back.
	Storing() (back func())
}

type noLoad struct{}

func (noLoad) Function() func() { return func() {} }
func (noLoad) Store() func()    { return func() {} }
func (noLoad) Storing() func()  { return func() {} }

// Runtime runs the active entities of one entity type (one user service):
// at most one instance per entity key, each with one command in flight and
// a bounded queue, passivated after being idle (or, under a Limit, when
// another entity needs its place). It is safe for concurrent use.
//
// An active entity holds its stream to the user function; a goroutine runs
// it only while it has commands (or is being closed), so an idle one costs
// its stream and a small struct.
type Runtime struct {
	cfg  Config
	open opener
	name string // service name, for logs and metrics

	mu      sync.Mutex
	active  map[string]*entity
	closing bool
	wg      sync.WaitGroup  // every goroutine running or closing an entity
	ctx     context.Context // the runtime's lifetime; cancelled by Shutdown
	cancel  context.CancelFunc
}

func newRuntime(cfg Config, open opener) *Runtime {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Runtime{cfg: cfg, open: open, name: string(cfg.Service.Desc.FullName()), active: map[string]*entity{}, ctx: ctx, cancel: cancel}
}

func (es *Runtime) shard(key string) int {
	return es.cfg.Guard.ShardOf(streams.Entity{Type: es.cfg.Service.PersistenceID, Key: key})
}

// Handle runs one command on the entity key and waits for the result. The
// command is queued behind the entity's earlier ones; a full queue is
// ErrEntityBusy, a shard this sidecar does not serve ErrMoved, a stopping
// runtime ErrStopping, a crashed entity ErrEntityFailed, an entity that is
// not active while the Limit is reached and no active entity is idle
// ErrTooManyActive. If ctx ends first the command may still run; its
// result is dropped.
func (es *Runtime) Handle(ctx context.Context, id, name string, payload *anypb.Any) (Result, error) {
	req := request{ctx: ctx, name: name, payload: payload, done: make(chan reply, 1)}
	if err := es.enqueue(id, req); err != nil {
		return Result{}, err
	}
	select {
	case r := <-req.done:
		return r.res, r.err
	case <-ctx.Done():
		// The command may still run; its result is dropped.
		return Result{}, ctx.Err()
	}
}

func (es *Runtime) enqueue(id string, req request) error {
	limit := es.cfg.Limit
	reserved := false // a place under the limit is held for a new entity
	for {
		es.mu.Lock()
		e, ok := es.active[id]
		shard, err := es.admitLocked(id, e)
		if err == nil && !ok && !reserved && limit.bounded() {
			// Reserving may passivate an idle entity of this runtime, which
			// takes the lock.
			es.mu.Unlock()
			if err := limit.reserve(); err != nil {
				return fmt.Errorf("%s %q: %w", es.name, id, err)
			}
			reserved = true
			continue
		}
		if reserved && (err != nil || ok) {
			limit.unreserve() // refused, or activated by another command meanwhile
		}
		if err != nil {
			es.mu.Unlock()
			return err
		}
		if !ok {
			e = &entity{id: id, es: es, shard: shard}
			e.lru.e = e
			es.active[id] = e
			es.cfg.Metrics.activeDelta(es.name, 1)
		}
		if len(e.queue) >= es.cfg.QueueSize {
			es.mu.Unlock()
			return fmt.Errorf("%s %q: %w", es.name, id, ErrEntityBusy)
		}
		e.queue = append(e.queue, req)
		if !e.working {
			e.startLocked()
		}
		es.mu.Unlock()
		return nil
	}
}

// admitLocked says whether a command for id (active as e, or nil) may be
// queued here, and returns its shard. Checked under the lock, so that
// PassivateShard, which runs after the shard stopped being served, sees
// every entity admitted before.
func (es *Runtime) admitLocked(id string, e *entity) (int, error) {
	if es.closing {
		return 0, ErrStopping
	}
	shard := 0
	if e != nil {
		shard = e.shard
	} else {
		shard = es.shard(id)
	}
	if !es.cfg.Guard.Serves(shard) {
		return shard, fmt.Errorf("%w: shard %d", ErrMoved, shard)
	}
	return shard, nil
}

// forgetLocked removes e from the active entities (once): a command for its
// key from now on activates a new instance.
func (es *Runtime) forgetLocked(e *entity) {
	if e.gone {
		return
	}
	e.gone = true
	delete(es.active, e.id)
	es.cfg.Metrics.activeDelta(es.name, -1)
	es.cfg.Limit.leave(&e.lru)
}

// endLocked makes e end once the command it runs (if any) is done: its
// session is closed and its queued commands fail with err. An idle entity
// gets a goroutine to close it.
func (es *Runtime) endLocked(e *entity, err error) {
	if e.end == nil {
		e.end = err
	}
	if !e.working && !e.gone {
		e.startLocked()
	}
}

// Active is the number of active entities.
func (es *Runtime) Active() int {
	es.mu.Lock()
	defer es.mu.Unlock()
	return len(es.active)
}

// PassivateShard passivates every active entity of shard: each finishes
// the command it runs, fails what is queued with ErrMoved (the router tries
// again at the shard's next owner) and closes its stream. It returns when
// all are closed. The caller has stopped serving the shard before.
func (es *Runtime) PassivateShard(shard int) {
	es.mu.Lock()
	var closed []<-chan struct{}
	for _, e := range es.active {
		if e.shard == shard {
			es.endLocked(e, fmt.Errorf("%w: entity passivated for a shard handoff", ErrMoved))
			es.forgetLocked(e)
			closed = append(closed, e.closedLocked())
		}
	}
	es.mu.Unlock()
	for _, c := range closed {
		<-c
	}
}

// Shutdown refuses new commands (ErrStopping), cancels the command each
// entity is running (it fails with ErrEntityFailed: it may or may not have
// changed the entity), fails what is queued with ErrStopping, closes the
// streams and waits. It may be called more than once.
func (es *Runtime) Shutdown() {
	es.mu.Lock()
	es.closing = true
	for _, e := range es.active {
		es.endLocked(e, ErrStopping)
	}
	es.mu.Unlock()
	es.cancel()
	es.wg.Wait()
}
