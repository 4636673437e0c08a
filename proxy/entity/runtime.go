package entity

import (
	"context"
	"errors"
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
// a bounded queue, passivated after being idle. It is safe for concurrent
// use.
type Runtime struct {
	cfg  Config
	open opener
	name string // service name, for logs and metrics

	mu      sync.Mutex
	active  map[string]*entity
	closing bool
	wg      sync.WaitGroup
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
// runtime ErrStopping, a crashed entity ErrEntityFailed. If ctx ends first
// the command may still run; its result is dropped.
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
	es.mu.Lock()
	defer es.mu.Unlock()
	if es.closing {
		return ErrStopping
	}
	e, ok := es.active[id]
	shard := es.shard(id)
	if ok {
		shard = e.shard
	}
	// Checked under the lock, so that passivateShard, which runs after the
	// shard stopped being served, sees every entity admitted before.
	if !es.cfg.Guard.Serves(shard) {
		return fmt.Errorf("%w: shard %d", ErrMoved, shard)
	}
	if !ok {
		e = &entity{id: id, es: es, shard: shard, queue: make(chan request, es.cfg.QueueSize), stop: make(chan struct{}), done: make(chan struct{})}
		es.active[id] = e
		es.cfg.Metrics.activeDelta(es.name, 1)
		es.wg.Add(1)
		go e.run()
	}
	select {
	case e.queue <- req:
		return nil
	default:
		return fmt.Errorf("%s %q: %w", es.name, id, ErrEntityBusy)
	}
}

// remove forgets e if it is idle (no queued commands) or if force is set;
// it reports whether e was removed. Under the lock, so that no command can
// be queued to an entity that is going away.
func (es *Runtime) remove(e *entity, force bool) bool {
	es.mu.Lock()
	defer es.mu.Unlock()
	if !force && len(e.queue) > 0 {
		return false
	}
	if es.active[e.id] == e {
		delete(es.active, e.id)
		es.cfg.Metrics.activeDelta(es.name, -1)
	}
	return true
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
	var stopping []*entity
	for id, e := range es.active {
		if e.shard == shard {
			delete(es.active, id)
			es.cfg.Metrics.activeDelta(es.name, -1)
			close(e.stop)
			stopping = append(stopping, e)
		}
	}
	es.mu.Unlock()
	for _, e := range stopping {
		<-e.done
	}
}

// Shutdown refuses new commands (ErrStopping), cancels the command each
// entity is running (it fails with ErrEntityFailed: it may or may not have
// changed the entity), fails what is queued with ErrStopping, closes the
// streams and waits. It may be called more than once.
func (es *Runtime) Shutdown() {
	es.mu.Lock()
	es.closing = true
	es.mu.Unlock()
	es.cancel()
	es.wg.Wait()
}

// entity is one active entity: a goroutine owning its session.
type entity struct {
	id    string
	es    *Runtime
	shard int
	queue chan request
	stop  chan struct{} // closed by passivateShard
	done  chan struct{} // closed when run returns
}

func (e *entity) run() {
	es := e.es
	defer es.wg.Done()
	defer close(e.done)
	log := es.cfg.Log.With("service", es.name, "entity", e.id)
	sess, err := e.activate()
	if err != nil {
		log.Warn("activation failed", "error", err)
		e.failAll(fmt.Errorf("%w: activate: %v", ErrEntityFailed, err))
		return
	}
	nextID := int64(1)
	idle := time.NewTimer(es.cfg.Passivation)
	defer idle.Stop()
	for {
		select {
		case <-e.stop: // before anything queued: the shard is moving
			sess.close()
			e.failAll(fmt.Errorf("%w: entity passivated for a shard handoff", ErrMoved))
			return
		default:
		}
		select {
		case <-e.stop:
			continue
		case req := <-e.queue:
			if err := req.ctx.Err(); err != nil {
				req.done <- reply{err: err} // the client gave up while queued
				continue
			}
			cctx, cancel := context.WithTimeout(es.ctx, es.cfg.CommandTimeout)
			start := time.Now()
			res, err := e.command(cctx, sess, nextID, req)
			nextID++
			if errors.Is(err, errStreamEnded) {
				// The stream ended while the entity was idle (the function
				// restarted): the command never reached the function, so it
				// is sent once more on a new stream, from storage.
				log.Info("stream to the user function had ended; re-activating the entity", "error", err)
				sess.abort()
				fresh, aerr := e.activate()
				if aerr != nil {
					cancel()
					es.cfg.Metrics.commandDone(es.name, time.Since(start), aerr)
					log.Warn("re-activation failed", "error", aerr)
					err = fmt.Errorf("%w: re-activate: %v", ErrEntityFailed, aerr)
					es.remove(e, true) // before the reply, as below
					req.done <- reply{err: err}
					e.failAll(err)
					return
				}
				sess, nextID = fresh, 1
				res, err = e.command(cctx, sess, nextID, req)
				nextID++
			}
			timedOut := cctx.Err() == context.DeadlineExceeded
			cancel()
			es.cfg.Metrics.commandDone(es.name, time.Since(start), err)
			if err != nil {
				if errors.Is(err, ErrMoved) || errors.Is(err, streams.ErrConflict) {
					// Fenced: another sidecar wrote this entity (it owns
					// the shard now), or ours stopped. Drop the entity;
					// the router runs the command again at the owner.
					log.Info("entity fenced off", "error", err)
					sess.abort()
					// Forgotten before the reply goes out: a command sent
					// after it must reach a fresh instance, not this one.
					es.remove(e, true)
					err = fmt.Errorf("%w: %v", ErrMoved, err)
					req.done <- reply{err: err}
					e.failAll(err)
					return
				}
				if timedOut {
					err = fmt.Errorf("user function did not answer within %v: %w", es.cfg.CommandTimeout, err)
				}
				log.Warn("entity failed", "error", err)
				sess.abort()
				es.remove(e, true) // before the reply, as above
				failed := fmt.Errorf("%w: %v", ErrEntityFailed, err)
				if streams.TooLarge(err) {
					// No retry can store it: the command's own error keeps
					// the cause (the queued ones did not run: retryable).
					req.done <- reply{err: fmt.Errorf("%w: %w", ErrEntityFailed, err)}
				} else {
					req.done <- reply{err: failed}
				}
				e.failAll(failed)
				return
			}
			req.done <- reply{res: res}
			if res.restart {
				log.Info("restarting entity at the function's request")
				sess.close()
				if sess, err = e.activate(); err != nil {
					log.Warn("re-activation failed", "error", err)
					e.failAll(fmt.Errorf("%w: re-activate: %v", ErrEntityFailed, err))
					return
				}
				nextID = 1
			}
			resetTimer(idle, es.cfg.Passivation)
		case <-idle.C:
			if !es.remove(e, false) {
				idle.Reset(es.cfg.Passivation)
				continue
			}
			log.Debug("passivating")
			sess.close()
			es.cfg.Metrics.passivated(es.name)
			return
		case <-es.ctx.Done():
			es.remove(e, true)
			sess.close()
			e.failAll(ErrStopping)
			return
		}
	}
}

// command runs req on sess as command id, counted as in the function.
func (e *entity) command(ctx context.Context, sess session, id int64, req request) (Result, error) {
	defer e.es.cfg.Load.Function()()
	return sess.command(ctx, id, req.name, req.payload)
}

// activate opens a session. It is not retried: a failure fails what is
// queued, and the next command activates the entity afresh.
func (e *entity) activate() (session, error) {
	ctx, cancel := context.WithTimeout(e.es.ctx, e.es.cfg.CommandTimeout)
	defer cancel()
	done := e.es.cfg.Load.Store() // mostly loading the state
	sess, err := e.es.open(ctx, e.id)
	done()
	if err == nil {
		e.es.cfg.Metrics.activated(e.es.name)
	}
	return sess, err
}

// failAll removes the entity and fails every queued command with err.
func (e *entity) failAll(err error) {
	e.es.remove(e, true)
	for {
		select {
		case req := <-e.queue:
			req.done <- reply{err: err}
		default:
			return
		}
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	t.Reset(d)
}
