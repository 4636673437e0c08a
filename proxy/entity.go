package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/streams"
)

var (
	// ErrEntityBusy reports a command refused because the entity's queue is
	// full (Config.QueueSize commands are already waiting).
	ErrEntityBusy = errors.New("entity busy: too many queued commands")
	// ErrEntityFailed reports that the entity crashed (the user function
	// broke the protocol, its stream ended, or its state could not be
	// stored) while the command was queued or running. The next command
	// re-activates the entity from its stored state.
	ErrEntityFailed = errors.New("unexpected entity failure")
	// ErrStopping reports a command that arrived while the sidecar shuts down.
	ErrStopping = errors.New("sidecar is stopping")
)

// commandResult is what a user function answered to one entity command.
type commandResult struct {
	action  *cloudstate.ClientAction
	effects []*cloudstate.SideEffect
	// restart asks the runtime to close the stream and re-open it at once
	// (event-sourced Failure.restart).
	restart bool
}

// session is one open stream to the user function for one entity: init was
// sent and state recovered. A session is used by one goroutine at a time.
type session interface {
	// command sends command id to the function, waits for its reply, stores
	// the state change it carries, and returns it. An error means the
	// session is broken and must be aborted.
	command(ctx context.Context, id int64, name string, payload *anypb.Any) (commandResult, error)
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
	res commandResult
	err error
}

// runtimeConfig bounds an entity type's runtime.
type runtimeConfig struct {
	queueSize      int
	commandTimeout time.Duration
	passivation    time.Duration
	log            *slog.Logger
}

// entities runs the active entities of one entity type (one user service):
// at most one instance per entity id, each with one command in flight and a
// bounded queue, passivated after being idle. It is safe for concurrent use.
type entities struct {
	cfg  runtimeConfig
	open opener
	name string // service name, for logs and metrics

	mu      sync.Mutex
	active  map[string]*entity
	closing bool
	wg      sync.WaitGroup
	ctx     context.Context // the runtime's lifetime; cancelled by shutdown
	cancel  context.CancelFunc
	metrics *metrics

	// shardOf maps an entity id to its shard; serves tells whether this
	// sidecar serves a shard now. Nil: one shard, always served.
	shardOf func(id string) int
	serves  func(shard int) bool
}

func newEntities(name string, cfg runtimeConfig, open opener, m *metrics) *entities {
	ctx, cancel := context.WithCancel(context.Background())
	return &entities{cfg: cfg, open: open, name: name, active: map[string]*entity{}, ctx: ctx, cancel: cancel, metrics: m}
}

func (es *entities) shard(id string) int {
	if es.shardOf == nil {
		return 0
	}
	return es.shardOf(id)
}

// handle runs one command on entity id and waits for the result.
func (es *entities) handle(ctx context.Context, id, name string, payload *anypb.Any) (commandResult, error) {
	req := request{ctx: ctx, name: name, payload: payload, done: make(chan reply, 1)}
	if err := es.enqueue(id, req); err != nil {
		return commandResult{}, err
	}
	select {
	case r := <-req.done:
		return r.res, r.err
	case <-ctx.Done():
		// The command may still run; its result is dropped.
		return commandResult{}, ctx.Err()
	}
}

func (es *entities) enqueue(id string, req request) error {
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
	if es.serves != nil && !es.serves(shard) {
		return fmt.Errorf("%w: shard %d", errMoved, shard)
	}
	if !ok {
		e = &entity{id: id, es: es, shard: shard, queue: make(chan request, es.cfg.queueSize), stop: make(chan struct{}), done: make(chan struct{})}
		es.active[id] = e
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
func (es *entities) remove(e *entity, force bool) bool {
	es.mu.Lock()
	defer es.mu.Unlock()
	if !force && len(e.queue) > 0 {
		return false
	}
	if es.active[e.id] == e {
		delete(es.active, e.id)
	}
	return true
}

// count is the number of active entities.
func (es *entities) count() int {
	es.mu.Lock()
	defer es.mu.Unlock()
	return len(es.active)
}

// passivateShard passivates every active entity of shard: each finishes
// the command it runs, fails what is queued with errMoved (the router tries
// again at the shard's next owner) and closes its stream. It returns when
// all are closed. The caller has stopped serving the shard before.
func (es *entities) passivateShard(shard int) {
	es.mu.Lock()
	var stopping []*entity
	for id, e := range es.active {
		if e.shard == shard {
			delete(es.active, id)
			close(e.stop)
			stopping = append(stopping, e)
		}
	}
	es.mu.Unlock()
	for _, e := range stopping {
		<-e.done
	}
}

// shutdown refuses new commands, lets every entity finish the command it
// is running, fails what is queued, closes the streams and waits.
func (es *entities) shutdown() {
	es.mu.Lock()
	es.closing = true
	es.mu.Unlock()
	es.cancel()
	es.wg.Wait()
}

// entity is one active entity: a goroutine owning its session.
type entity struct {
	id    string
	es    *entities
	shard int
	queue chan request
	stop  chan struct{} // closed by passivateShard
	done  chan struct{} // closed when run returns
}

func (e *entity) run() {
	es := e.es
	defer es.wg.Done()
	defer close(e.done)
	log := es.cfg.log.With("service", es.name, "entity", e.id)
	sess, err := e.activate()
	if err != nil {
		log.Warn("activation failed", "error", err)
		e.failAll(fmt.Errorf("%w: activate: %v", ErrEntityFailed, err))
		return
	}
	nextID := int64(1)
	idle := time.NewTimer(es.cfg.passivation)
	defer idle.Stop()
	for {
		select {
		case <-e.stop: // before anything queued: the shard is moving
			sess.close()
			e.failAll(fmt.Errorf("%w: entity passivated for a shard handoff", errMoved))
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
			cctx, cancel := context.WithTimeout(es.ctx, es.cfg.commandTimeout)
			start := time.Now()
			es.metrics.load.function.begin()
			res, err := sess.command(cctx, nextID, req.name, req.payload)
			es.metrics.load.function.end()
			timedOut := cctx.Err() == context.DeadlineExceeded
			cancel()
			es.metrics.commandDone(es.name, time.Since(start), err)
			nextID++
			if err != nil {
				if errors.Is(err, errMoved) || errors.Is(err, streams.ErrConflict) {
					// Fenced: another sidecar wrote this entity (it owns
					// the shard now), or ours stopped. Drop the entity;
					// the router runs the command again at the owner.
					log.Info("entity fenced off", "error", err)
					sess.abort()
					err = fmt.Errorf("%w: %v", errMoved, err)
					req.done <- reply{err: err}
					e.failAll(err)
					return
				}
				if timedOut {
					err = fmt.Errorf("user function did not answer within %v: %w", es.cfg.commandTimeout, err)
				}
				log.Warn("entity failed", "error", err)
				sess.abort()
				req.done <- reply{err: fmt.Errorf("%w: %v", ErrEntityFailed, err)}
				e.failAll(fmt.Errorf("%w: %v", ErrEntityFailed, err))
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
			resetTimer(idle, es.cfg.passivation)
		case <-idle.C:
			if !es.remove(e, false) {
				idle.Reset(es.cfg.passivation)
				continue
			}
			log.Debug("passivating")
			sess.close()
			es.metrics.passivated(es.name)
			return
		case <-es.ctx.Done():
			es.remove(e, true)
			sess.close()
			e.failAll(ErrStopping)
			return
		}
	}
}

// activate opens a session. It is not retried: a failure fails what is
// queued, and the next command activates the entity afresh.
func (e *entity) activate() (session, error) {
	ctx, cancel := context.WithTimeout(e.es.ctx, e.es.cfg.commandTimeout)
	defer cancel()
	e.es.metrics.load.journal.begin() // mostly loading the state
	sess, err := e.es.open(ctx, e.id)
	e.es.metrics.load.journal.end()
	if err == nil {
		e.es.metrics.activated(e.es.name)
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
