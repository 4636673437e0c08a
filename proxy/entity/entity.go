package entity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/streams"
)

// entity is one active entity of a Runtime. It holds its session (the
// stream to the user function) between commands without a goroutine: one
// (work) is started when a command arrives for an entity that has none, and
// it returns when the queue is empty. Passivation runs from a timer.
//
// What an active entity costs is what 100,000 of them cost a sidecar, so
// it is kept small: no channel per entity, a queue slice only while
// commands wait, a logger only when something is logged.
type entity struct {
	id    string
	es    *Runtime
	shard int
	lru   lruNode // its place among the idle entities under es.cfg.Limit

	// Guarded by es.mu.
	queue     []request     // commands waiting, oldest first
	working   bool          // a goroutine owns sess: work, or one closing the entity
	end       error         // set: end after the command in hand; the queued ones fail with it
	gone      bool          // forgotten (forgetLocked): no longer active nor counted
	closed    bool          // the session is closed
	closedCh  chan struct{} // closed with closed, made by closedLocked when awaited
	idleSince time.Time     // when work last found the queue empty
	idle      *time.Timer   // passivation; made when the entity is first idle

	// Owned by the goroutine that has working set.
	sess   session
	nextID int64
}

// startLocked gives e a goroutine.
func (e *entity) startLocked() {
	e.working = true
	e.es.cfg.Limit.busy(&e.lru)
	e.es.wg.Add(1)
	go e.work()
}

// work runs the entity while it has commands: it activates it if it has
// no session yet, runs the queued commands one at a time, and returns when
// the queue is empty (the entity stays active and idle) or the entity ended.
func (e *entity) work() {
	es := e.es
	defer es.wg.Done()
	if e.sess == nil {
		trigger := context.Background()
		es.mu.Lock()
		if len(e.queue) > 0 {
			trigger = e.queue[0].ctx // the command that woke the entity
		}
		es.mu.Unlock()
		sess, err := e.activate(trigger)
		if err != nil {
			e.logger().Warn("activation failed", "error", err)
			e.finish(nil, nil, fmt.Errorf("%w: activate: %v", ErrEntityFailed, err))
			return
		}
		e.sess, e.nextID = sess, 1
	}
	for {
		es.mu.Lock()
		if e.end != nil { // before anything queued: the shard moves, or the sidecar stops
			err := e.end
			es.forgetLocked(e)
			queued := e.takeLocked()
			es.mu.Unlock()
			e.sess.close()
			failEach(queued, err)
			e.markClosed()
			return
		}
		if len(e.queue) == 0 {
			e.working = false
			e.idleSince = time.Now()
			if e.idle == nil {
				e.idle = time.AfterFunc(es.cfg.Passivation, e.idleTimeout)
			} else {
				e.idle.Reset(es.cfg.Passivation)
			}
			es.cfg.Limit.idle(&e.lru)
			es.mu.Unlock()
			return
		}
		req := e.queue[0]
		e.queue[0] = request{}
		if e.queue = e.queue[1:]; len(e.queue) == 0 {
			e.queue = nil // a burst's backing array goes with it
		}
		es.mu.Unlock()
		if !e.run(req) {
			return
		}
	}
}

// run runs one command; false means the entity ended (it crashed, was
// fenced off, or could not be re-activated).
func (e *entity) run(req request) bool {
	es := e.es
	if err := req.ctx.Err(); err != nil {
		req.done <- reply{err: err} // the client gave up while queued
		return true
	}
	cctx, cancel := context.WithTimeout(es.ctx, es.cfg.CommandTimeout)
	cctx = tracing.Carry(cctx, req.ctx) // the command's span, if traced
	start := time.Now()
	res, err := e.command(cctx, req)
	if errors.Is(err, errStreamEnded) {
		// The stream ended while the entity was idle (the function
		// restarted): the command never reached the function, so it is
		// sent once more on a new stream, from storage.
		e.logger().Info("stream to the user function had ended; re-activating the entity", "error", err)
		e.sess.abort()
		fresh, aerr := e.activate(req.ctx)
		if aerr != nil {
			cancel()
			es.cfg.Metrics.commandDone(es.name, time.Since(start), aerr)
			e.logger().Warn("re-activation failed", "error", aerr)
			err = fmt.Errorf("%w: re-activate: %v", ErrEntityFailed, aerr)
			e.finish(&req, err, err)
			return false
		}
		e.sess, e.nextID = fresh, 1
		res, err = e.command(cctx, req)
	}
	timedOut := cctx.Err() == context.DeadlineExceeded
	cancel()
	es.cfg.Metrics.commandDone(es.name, time.Since(start), err)
	if err != nil {
		e.sess.abort()
		if errors.Is(err, ErrMoved) || errors.Is(err, streams.ErrConflict) {
			// Fenced: another sidecar wrote this entity (it owns the shard
			// now), or ours stopped. Drop the entity; the router runs the
			// command again at the owner.
			e.logger().Info("entity fenced off", "error", err)
			err = fmt.Errorf("%w: %v", ErrMoved, err)
			e.finish(&req, err, err)
			return false
		}
		if timedOut {
			err = fmt.Errorf("user function did not answer within %v: %w", es.cfg.CommandTimeout, err)
		}
		e.logger().Warn("entity failed", "error", err)
		failed := fmt.Errorf("%w: %v", ErrEntityFailed, err)
		mine := failed
		if streams.TooLarge(err) {
			// No retry can store it: the command's own error keeps the
			// cause (the queued ones did not run: retryable).
			mine = fmt.Errorf("%w: %w", ErrEntityFailed, err)
		}
		e.finish(&req, mine, failed)
		return false
	}
	req.done <- reply{res: res}
	if res.restart {
		e.logger().Info("restarting entity at the function's request")
		e.sess.close()
		sess, err := e.activate(req.ctx)
		if err != nil {
			e.logger().Warn("re-activation failed", "error", err)
			e.finish(nil, nil, fmt.Errorf("%w: re-activate: %v", ErrEntityFailed, err))
			return false
		}
		e.sess, e.nextID = sess, 1
	}
	return true
}

// command runs req on the session as the next command id, counted as in
// the function.
func (e *entity) command(ctx context.Context, req request) (Result, error) {
	defer e.es.cfg.Load.Function()()
	id := e.nextID
	e.nextID++
	return e.sess.command(ctx, id, req.name, req.payload)
}

// activate opens a session. It is not retried: a failure fails what is
// queued, and the next command activates the entity afresh. trigger is the
// context of the command that needs the session: the activation's span is
// a child of its span (it delays that command), if traced.
func (e *entity) activate(trigger context.Context) (sess session, err error) {
	ctx, cancel := context.WithTimeout(e.es.ctx, e.es.cfg.CommandTimeout)
	defer cancel()
	ctx, span := tracing.Start(tracing.Carry(ctx, trigger), SpanActivate, trace.SpanKindInternal)
	if span.On() {
		span.String("jetstate.service", e.es.name)
		span.String("jetstate.entity.key", e.id)
	}
	defer func() {
		span.Fail(err)
		span.End()
	}()
	done := e.es.cfg.Load.Store() // mostly loading the state
	sess, err = e.es.open(ctx, e.id)
	done()
	if err == nil {
		e.es.cfg.Metrics.activated(e.es.name)
	}
	return sess, err
}

// SpanActivate names the span of an entity's activation: loading its state
// (snapshot and journal, or value) and opening its stream to the function
// with init. It is a child of the command that woke the entity.
const SpanActivate = "jetstate.activate"

// finish ends a broken entity (its session aborted or never opened): it is
// forgotten before anyone is answered, so that a command sent after the
// answer reaches a fresh instance; then req (if any) gets mine and the
// queued commands others, or what the entity was ending with (they did not
// run).
func (e *entity) finish(req *request, mine, others error) {
	es := e.es
	es.mu.Lock()
	es.forgetLocked(e)
	if e.end != nil {
		others = e.end
	}
	queued := e.takeLocked()
	es.mu.Unlock()
	if req != nil {
		req.done <- reply{err: mine}
	}
	failEach(queued, others)
	e.markClosed()
}

// idleTimeout passivates the entity if it stayed idle for the passivation
// time: its stream is closed and the next command activates it again.
func (e *entity) idleTimeout() {
	es := e.es
	es.mu.Lock()
	if e.working || e.gone || es.closing || time.Since(e.idleSince) < es.cfg.Passivation {
		// Busy, ended, left to Shutdown, or idle again since (the timer
		// was reset after it fired).
		es.mu.Unlock()
		return
	}
	e.working = true
	es.forgetLocked(e)
	es.wg.Add(1)
	es.mu.Unlock()
	defer es.wg.Done()
	es.cfg.Log.Debug("passivating", "service", es.name, "entity", e.id)
	e.sess.close()
	e.markClosed()
	es.cfg.Metrics.passivated(es.name)
}

// evict passivates the entity to make room under the Limit, if it is idle,
// and reports whether it did. Its stream is closed in the background: the
// entity that needs the room does not wait for it.
func (e *entity) evict() bool {
	es := e.es
	es.mu.Lock()
	if e.working || e.gone || es.closing {
		es.mu.Unlock()
		return false
	}
	e.working = true
	es.forgetLocked(e)
	es.wg.Add(1)
	es.mu.Unlock()
	go func() {
		defer es.wg.Done()
		es.cfg.Log.Debug("passivating the least recently used entity", "service", es.name, "entity", e.id)
		e.sess.close()
		e.markClosed()
		es.cfg.Metrics.evicted(es.name)
	}()
	return true
}

// takeLocked empties the queue.
func (e *entity) takeLocked() []request {
	q := e.queue
	e.queue = nil
	return q
}

// markClosed records that the session is closed (or never opened) and
// wakes PassivateShard.
func (e *entity) markClosed() {
	e.es.mu.Lock()
	defer e.es.mu.Unlock()
	e.closed = true
	if e.closedCh != nil {
		close(e.closedCh)
	}
	if e.idle != nil {
		e.idle.Stop()
	}
}

// closedLocked is a channel closed once the entity's session is.
func (e *entity) closedLocked() <-chan struct{} {
	if e.closedCh == nil {
		e.closedCh = make(chan struct{})
		if e.closed {
			close(e.closedCh)
		}
	}
	return e.closedCh
}

func (e *entity) logger() *slog.Logger {
	return e.es.cfg.Log.With("service", e.es.name, "entity", e.id)
}

func failEach(reqs []request, err error) {
	for _, r := range reqs {
		r.done <- reply{err: err}
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	t.Reset(d)
}
