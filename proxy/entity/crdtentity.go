package entity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"go.opentelemetry.io/otel/trace"

	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/protocol/cloudstate"
	crdtpb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/proxy/crdt"
	"github.com/jetstate/jetstate/streams"
)

// errDeleted ends an entity that is (or was just) deleted.
var errDeleted = errors.New("entity deleted")

// crdtEntity is one active CRDT entity on this replica: a goroutine (run)
// owning the stream to the function, the merged state and what the
// function holds of it. Around it: a receiver of the function's messages,
// the store's follower of the other replicas' states, and the publisher of
// this replica's state.
type crdtEntity struct {
	r     *CRDTRuntime
	ent   streams.Entity
	log   *slog.Logger
	queue chan *crdtRequest
	seen  *watermark // the store's sequence merged here (for ALL)
	pub   *publisher
	done  chan struct{} // closed when run returns
	quit  chan struct{} // closed when run starts tearing down
	// recvDone is closed when receive returned (the stream ended).
	recvDone chan struct{}

	fromUF  chan ufMsg
	inbox   *inbox     // states from the other replicas (Deliver)
	cancels chan int64 // ids of streamed commands whose client went away
	failed  chan error // from publishing and write-consistency waits

	// Owned by run.
	trigger     context.Context // the first command's, for the activation's span; nil after
	stream      grpc.BidiStreamingClient[crdtpb.CrdtStreamIn, crdtpb.CrdtStreamOut]
	stopStream  context.CancelFunc
	recvStarted bool
	state       crdt.State
	uf          *crdtpb.CrdtDelta // the value the function holds (nil: none)
	live        []string
	liveCh      <-chan struct{}
	nextID      int64
	inflight    *crdtInflight
	subs        map[int64]*subscription
	cancelling  []int64
}

// crdtInflight is the one command (or cancellation) the function has now.
type crdtInflight struct {
	id       int64
	req      *crdtRequest  // a command
	cancelOf *subscription // or a cancellation
	start    time.Time
	deadline *time.Timer
	loadDone func()
	span     tracing.Span // the exchange with the function, if the command is traced
}

type ufMsg struct {
	out *crdtpb.CrdtStreamOut
	err error
}

type replicated struct {
	s       streams.CRDTState
	deleted bool
}

// inbox carries replicated states to an entity, unbounded (the follower of
// the whole service never waits for one entity) and in order.
type inbox struct {
	signal chan struct{} // a token whenever items were added
	mu     sync.Mutex
	items  []replicated
}

func newInbox() *inbox { return &inbox{signal: make(chan struct{}, 1)} }

func (b *inbox) push(u replicated) {
	b.mu.Lock()
	b.items = append(b.items, u)
	b.mu.Unlock()
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

func (b *inbox) take() []replicated {
	b.mu.Lock()
	defer b.mu.Unlock()
	items := b.items
	b.items = nil
	return items
}

func newCRDTEntity(r *CRDTRuntime, ent streams.Entity, trigger context.Context) *crdtEntity {
	e := &crdtEntity{
		r: r, ent: ent, trigger: trigger, log: r.cfg.Log.With("service", r.name, "entity", ent.Key),
		queue: make(chan *crdtRequest, r.cfg.QueueSize), seen: newWatermark(),
		done: make(chan struct{}), quit: make(chan struct{}), recvDone: make(chan struct{}),
		fromUF: make(chan ufMsg), inbox: newInbox(), cancels: make(chan int64), failed: make(chan error, 1),
		nextID: 1, subs: map[int64]*subscription{},
	}
	e.pub = newPublisher(r.store, ent, r.me, e.log, e.fail)
	return e
}

func (e *crdtEntity) env() crdt.Env {
	return crdt.Env{Replica: e.r.me, NowMillis: time.Now().UnixMilli(), Live: e.live}
}

// fail crashes the entity from another goroutine.
func (e *crdtEntity) fail(err error) {
	select {
	case e.failed <- err:
	default:
	}
}

func (e *crdtEntity) run() {
	r := e.r
	defer r.wg.Done()
	defer close(e.done)
	go e.pub.run()
	e.live, e.liveCh = r.live()
	if err := e.activate(); err != nil {
		if errors.Is(err, errDeleted) {
			e.finish(err, false)
			return
		}
		e.log.Warn("activation failed", "error", err)
		e.finish(fmt.Errorf("%w: activate: %v", ErrEntityFailed, err), true)
		return
	}
	r.cfg.Metrics.activated(r.name)
	idle := time.NewTimer(r.cfg.Passivation)
	defer idle.Stop()
	for {
		var queue chan *crdtRequest
		var deadline <-chan time.Time
		if e.inflight == nil {
			if len(e.cancelling) > 0 {
				if err := e.sendCancel(); err != nil {
					e.crash(err)
					return
				}
				continue
			}
			queue = e.queue
		} else {
			deadline = e.inflight.deadline.C
		}
		select {
		case req := <-queue:
			if err := req.ctx.Err(); err != nil {
				req.done <- reply{err: err} // the client gave up while queued
				continue
			}
			if err := e.sendCommand(req); err != nil {
				e.crash(err)
				return
			}
		case m := <-e.fromUF:
			if m.err != nil {
				e.crash(m.err)
				return
			}
			end, err := e.handle(m.out)
			if err != nil {
				e.crash(err)
				return
			}
			if end != nil {
				e.finish(end, false)
				return
			}
			resetTimer(idle, r.cfg.Passivation)
		case <-e.inbox.signal:
			for _, u := range e.inbox.take() {
				if u.deleted {
					e.log.Info("deleted by another replica")
					_ = e.stream.Send(&crdtpb.CrdtStreamIn{Message: &crdtpb.CrdtStreamIn_Delete{Delete: &crdtpb.CrdtDelete{}}})
					e.finish(errDeleted, false)
					return
				}
				e.mergeReplicated(u.s)
			}
			if err := e.pushDiff(); err != nil {
				e.crash(err)
				return
			}
		case id := <-e.cancels:
			if e.subs[id] != nil && !slices.Contains(e.cancelling, id) {
				e.cancelling = append(e.cancelling, id)
			}
		case <-e.liveCh:
			e.live, e.liveCh = r.live()
			if err := e.pushDiff(); err != nil {
				e.crash(err)
				return
			}
		case err := <-e.failed:
			e.crash(err)
			return
		case <-deadline:
			e.crash(fmt.Errorf("user function did not answer within %v", r.cfg.CommandTimeout))
			return
		case <-idle.C:
			if e.inflight != nil || len(e.subs) > 0 || !r.remove(e, false) {
				idle.Reset(r.cfg.Passivation)
				continue
			}
			e.log.Debug("passivating")
			r.cfg.Metrics.passivated(r.name)
			e.finish(nil, false)
			return
		case <-r.ctx.Done():
			e.finish(ErrStopping, false)
			return
		}
	}
}

// activate loads and merges every replica's state, follows the store from
// there, and opens the function's stream with init.
func (e *crdtEntity) activate() (err error) {
	r := e.r
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.CommandTimeout)
	defer cancel()
	ctx, span := tracing.Start(tracing.Carry(ctx, e.trigger), SpanActivate, trace.SpanKindInternal)
	e.trigger = nil
	if span.On() {
		span.String("jetstate.service", r.name)
		span.String("jetstate.entity.key", e.ent.Key)
	}
	defer func() {
		if errors.Is(err, errDeleted) {
			span.Bool("jetstate.entity.deleted", true)
		} else {
			span.Fail(err)
		}
		span.End()
	}()
	start := time.Now()
	done := r.cfg.Load.Store()
	states, deleted, last, err := r.store.Load(ctx, e.ent)
	done()
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if deleted {
		return errDeleted
	}
	var departed []string
	for _, s := range states {
		if err := e.mergeData(s); err != nil {
			e.log.Warn("ignoring a stored state", "replica", s.Replica, "error", err)
			continue
		}
		if s.Replica != r.me && !slices.Contains(e.live, s.Replica) {
			departed = append(departed, s.Replica)
		}
	}
	// The states stored after the load come through the inbox (Deliver):
	// the entity was registered for them before it loaded, so none is
	// missed (one delivered twice merges as once).
	e.seen.advance(last)
	sctx, scancel := context.WithCancel(context.Background())
	stream, err := r.client.Handle(sctx)
	if err != nil {
		scancel()
		return fmt.Errorf("open stream: %w", err)
	}
	e.stream, e.stopStream = stream, scancel
	init := &crdtpb.CrdtInit{ServiceName: r.name, EntityId: e.ent.Key}
	if e.state != nil {
		init.Delta = e.state.Value(e.env())
	}
	if err := stream.Send(&crdtpb.CrdtStreamIn{Message: &crdtpb.CrdtStreamIn_Init{Init: init}}); err != nil {
		return fmt.Errorf("send init: %w", err)
	}
	e.uf = init.Delta
	e.recvStarted = true
	go e.receive()
	r.cfg.Metrics.recovered(r.name, time.Since(start), len(states))
	if len(departed) > 0 && e.state != nil {
		// Compaction: once this replica's state, which includes theirs,
		// is stored, the states of replicas that left are redundant.
		ver, err := e.publish()
		if err != nil {
			return err
		}
		go e.forget(ver, departed)
	}
	return nil
}

// forget drops departed replicas' states once version ver of ours is stored.
func (e *crdtEntity) forget(ver uint64, departed []string) {
	ctx, cancel := context.WithTimeout(e.r.ctx, e.r.cfg.WriteTimeout)
	defer cancel()
	if _, err := e.pub.wait(ctx, ver); err != nil {
		return
	}
	for _, rep := range departed {
		if err := e.r.store.Forget(ctx, e.ent, rep); err != nil {
			e.log.Debug("could not forget a departed replica's state", "replica", rep, "error", err)
		}
	}
}

// receive passes the function's messages to run until the stream ends;
// once run tears down (quit) it drops them, still reading until the end,
// so that it alone ever receives from the stream.
func (e *crdtEntity) receive() {
	defer close(e.recvDone)
	for {
		out, err := e.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("user function closed the stream")
			} else {
				err = fmt.Errorf("receive: %w", err)
			}
		}
		select {
		case e.fromUF <- ufMsg{out: out, err: err}:
		case <-e.quit:
		}
		if err != nil {
			return
		}
	}
}

// sendCommand sends req to the function as the next command.
func (e *crdtEntity) sendCommand(req *crdtRequest) error {
	id := e.nextID
	e.nextID++
	cmd := &cloudstate.Command{EntityId: e.ent.Key, Id: id, Name: req.name, Payload: req.payload, Streamed: req.sub != nil}
	e.inflight = &crdtInflight{id: id, req: req, start: time.Now(), deadline: time.NewTimer(e.r.cfg.CommandTimeout), loadDone: e.r.cfg.Load.Function()}
	if _, span := tracing.Start(req.ctx, SpanFunction, trace.SpanKindClient); span.On() {
		span.String("rpc.method", req.name)
		span.String("jetstate.entity.key", e.ent.Key)
		span.Int("jetstate.command.id", id)
		span.Bool("jetstate.command.streamed", cmd.Streamed)
		e.inflight.span = span
	}
	if err := e.stream.Send(&crdtpb.CrdtStreamIn{Message: &crdtpb.CrdtStreamIn_Command{Command: cmd}}); err != nil {
		return fmt.Errorf("send command: %w", err)
	}
	return nil
}

// sendCancel tells the function that the client of a streamed command
// went away.
func (e *crdtEntity) sendCancel() error {
	id := e.cancelling[0]
	e.cancelling = e.cancelling[1:]
	sub := e.subs[id]
	if sub == nil {
		return nil // the function ended it meanwhile
	}
	delete(e.subs, id)
	e.inflight = &crdtInflight{id: id, cancelOf: sub, start: time.Now(), deadline: time.NewTimer(e.r.cfg.CommandTimeout), loadDone: e.r.cfg.Load.Function()}
	msg := &crdtpb.CrdtStreamIn{Message: &crdtpb.CrdtStreamIn_StreamCancelled{StreamCancelled: &cloudstate.StreamCancelled{EntityId: e.ent.Key, Id: id}}}
	if err := e.stream.Send(msg); err != nil {
		return fmt.Errorf("send stream cancelled: %w", err)
	}
	return nil
}

// handle processes one message from the function. A non-nil end ends the
// entity normally (deleted); an error crashes it.
func (e *crdtEntity) handle(out *crdtpb.CrdtStreamOut) (end error, err error) {
	switch m := out.GetMessage().(type) {
	case *crdtpb.CrdtStreamOut_Reply:
		return e.reply(m.Reply)
	case *crdtpb.CrdtStreamOut_StreamedMessage:
		sm := m.StreamedMessage
		sub := e.subs[sm.GetCommandId()]
		if sub == nil {
			e.log.Debug("streamed message for a stream that is not open", "command", sm.GetCommandId())
			return nil, nil
		}
		sub.push(Result{Action: sm.GetClientAction(), Effects: sm.GetSideEffects()})
		if sm.GetEndStream() {
			delete(e.subs, sm.GetCommandId())
			sub.finish(nil)
		}
		return nil, nil
	case *crdtpb.CrdtStreamOut_StreamCancelledResponse:
		cr := m.StreamCancelledResponse
		in := e.inflight
		if in == nil || in.cancelOf == nil || in.id != cr.GetCommandId() {
			return nil, fmt.Errorf("stream cancelled response for command %d, which was not cancelled", cr.GetCommandId())
		}
		e.settle()
		if act := cr.GetStateAction(); act.GetAction() != nil {
			if act.GetDelete() != nil {
				return e.delete(in, Result{Effects: cr.GetSideEffects()})
			}
			ver, err := e.update(act.GetUpdate())
			if err != nil {
				return nil, err
			}
			go e.durable(act.GetWriteConsistency(), ver, nil, Result{})
		}
		in.cancelOf.answer <- Result{Effects: cr.GetSideEffects()}
		in.cancelOf.finish(nil)
		return nil, e.pushDiff()
	case *crdtpb.CrdtStreamOut_Failure:
		return nil, fmt.Errorf("user function failed: %s", m.Failure.GetDescription())
	}
	return nil, errors.New("user function sent an empty message")
}

// reply processes the function's reply to the command in flight.
func (e *crdtEntity) reply(r *crdtpb.CrdtReply) (end error, err error) {
	in := e.inflight
	if in == nil || in.req == nil || in.id != r.GetCommandId() {
		return nil, fmt.Errorf("reply for command %d, which is not in flight", r.GetCommandId())
	}
	e.settle()
	res := Result{Action: r.GetClientAction(), Effects: r.GetSideEffects()}
	if res.Action.GetFailure() != nil {
		e.r.cfg.Metrics.commandDone(e.r.name, time.Since(in.start), nil)
		in.req.done <- reply{res: Result{Action: res.Action}} // a failure drops state changes and effects
		return nil, e.pushDiff()
	}
	if in.req.sub != nil && r.GetStreamed() {
		res.streamed = true
		e.subs[in.id] = in.req.sub
		go e.watchCancel(in.id, in.req.sub)
	}
	act := r.GetStateAction()
	switch {
	case act.GetDelete() != nil:
		return e.delete(in, res)
	case act.GetUpdate() != nil:
		ver, err := e.update(act.GetUpdate())
		if err != nil {
			in.req.done <- reply{err: fmt.Errorf("%w: %v", ErrEntityFailed, err)}
			return nil, err
		}
		e.r.cfg.Metrics.commandDone(e.r.name, time.Since(in.start), nil)
		if act.GetWriteConsistency() == crdtpb.CrdtWriteConsistency_LOCAL {
			in.req.done <- reply{res: res}
		} else {
			go e.durable(act.GetWriteConsistency(), ver, in.req, res)
		}
	default:
		e.r.cfg.Metrics.commandDone(e.r.name, time.Since(in.start), nil)
		in.req.done <- reply{res: res}
	}
	return nil, e.pushDiff()
}

// settle ends the in-flight command's bookkeeping: the function answered.
func (e *crdtEntity) settle() {
	e.inflight.deadline.Stop()
	e.inflight.loadDone()
	e.inflight.span.End()
	e.inflight = nil
}

// watchCancel reports when a streamed command's client goes away.
func (e *crdtEntity) watchCancel(id int64, sub *subscription) {
	select {
	case <-sub.cancelReq:
		select {
		case e.cancels <- id:
		case <-e.quit:
		}
	case <-e.quit:
	}
}

// update applies the function's delta to the state (and to what the
// function holds) and hands the new state to the publisher; it returns the
// state's version.
func (e *crdtEntity) update(d *crdtpb.CrdtDelta) (uint64, error) {
	ver, err := e.apply(d)
	if err != nil && e.r.cfg.ReportError != nil {
		// The function's own mistake: tell it, as the reference proxy
		// reports what it cannot use (best effort, not waited for).
		msg := fmt.Sprintf("%s entity %q: state update refused: %v", e.r.name, e.ent.Key, err)
		go e.r.cfg.ReportError(context.WithoutCancel(e.r.ctx), msg)
	}
	return ver, err
}

func (e *crdtEntity) apply(d *crdtpb.CrdtDelta) (uint64, error) {
	env := e.env()
	if e.state == nil {
		st, err := crdt.New(d)
		if err != nil {
			return 0, fmt.Errorf("state update: %w", err)
		}
		if err := st.Apply(env, d); err != nil {
			return 0, fmt.Errorf("state update: %w", err)
		}
		e.state = st
	} else if err := e.state.Apply(env, d); err != nil {
		return 0, fmt.Errorf("state update: %w", err)
	}
	uf, err := functionApply(e.uf, d)
	if err != nil {
		return 0, fmt.Errorf("state update: %w", err)
	}
	e.uf = uf
	return e.publish()
}

// publish hands the state to the publisher and returns its version.
func (e *crdtEntity) publish() (uint64, error) {
	data, err := crdt.Marshal(e.state)
	if err != nil {
		return 0, fmt.Errorf("encode state: %w", err)
	}
	return e.pub.set(data), nil
}

// durable waits until version ver of the state reached write consistency
// wc, then answers req (if any) with res; past the write timeout it fails
// the command with ErrWriteConsistency and crashes the entity, as the
// reference proxy does (the update stays applied and replicates later).
func (e *crdtEntity) durable(wc crdtpb.CrdtWriteConsistency, ver uint64, req *crdtRequest, res Result) {
	span := tracing.Span{}
	if req != nil {
		_, span = tracing.Start(req.ctx, SpanWriteConsistency, trace.SpanKindInternal)
		span.String("jetstate.crdt.write_consistency", wc.String())
	}
	err := e.reach(wc, ver)
	span.Fail(err)
	span.End()
	if err != nil {
		e.log.Warn("write consistency not reached", "consistency", wc, "error", err)
		err = fmt.Errorf("%w: %w (%v)", ErrEntityFailed, ErrWriteConsistency, err)
		e.fail(err)
	}
	if req != nil {
		req.done <- reply{res: res, err: err}
	}
}

// SpanWriteConsistency names the span of a CRDT command's wait for its
// update to reach the write consistency it asked for (MAJORITY: stored;
// ALL: merged by every live replica), which the client waits for.
const SpanWriteConsistency = "jetstate.crdt.write_consistency"

func (e *crdtEntity) reach(wc crdtpb.CrdtWriteConsistency, ver uint64) error {
	if wc == crdtpb.CrdtWriteConsistency_LOCAL {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.r.cfg.WriteTimeout)
	defer cancel()
	seq, err := e.pub.wait(ctx, ver)
	if err != nil || wc != crdtpb.CrdtWriteConsistency_ALL {
		return err
	}
	live, _ := e.r.live()
	others := slices.DeleteFunc(live, func(m string) bool { return m == e.r.me })
	if len(others) == 0 {
		return nil
	}
	return e.r.store.Confirm(ctx, e.ent, seq, others)
}

// delete deletes the entity everywhere (the store's tombstone, which every
// replica follows), answers the command and ends the entity.
func (e *crdtEntity) delete(in *crdtInflight, res Result) (error, error) {
	ctx, cancel := context.WithTimeout(e.r.ctx, e.r.cfg.WriteTimeout)
	defer cancel()
	if _, err := e.r.store.Delete(ctx, e.ent); err != nil {
		err = fmt.Errorf("delete: %w", err)
		if in.req != nil {
			in.req.done <- reply{err: fmt.Errorf("%w: %v", ErrEntityFailed, err)}
		}
		return nil, err
	}
	if in.req != nil {
		e.r.cfg.Metrics.commandDone(e.r.name, time.Since(in.start), nil)
		in.req.done <- reply{res: res}
	} else {
		in.cancelOf.answer <- res
		in.cancelOf.finish(nil)
	}
	return errDeleted, nil
}

// mergeReplicated merges a state another replica published (ours come
// back too: merged all the same, since an earlier instance of the entity
// here may have published them). A state that does not decode or merge
// is logged and skipped.
func (e *crdtEntity) mergeReplicated(s streams.CRDTState) {
	defer e.seen.advance(s.Seq)
	if err := e.mergeData(s); err != nil {
		e.log.Warn("ignoring a replicated state", "replica", s.Replica, "error", err)
	}
}

func (e *crdtEntity) mergeData(s streams.CRDTState) error {
	st, err := crdt.Unmarshal(s.Data)
	if err != nil {
		return err
	}
	if e.state == nil {
		e.state = st
		return nil
	}
	return e.state.Merge(st)
}

// pushDiff sends the function the net change of the state since what it
// holds, unless a command or cancellation is in flight (then after it).
func (e *crdtEntity) pushDiff() error {
	if e.state == nil || e.inflight != nil {
		return nil
	}
	v := e.state.Value(e.env())
	d, err := crdt.Diff(e.uf, v)
	if err != nil {
		return fmt.Errorf("delta for the user function: %w", err)
	}
	if d == nil {
		return nil
	}
	if err := e.stream.Send(&crdtpb.CrdtStreamIn{Message: &crdtpb.CrdtStreamIn_Delta{Delta: d}}); err != nil {
		return fmt.Errorf("send delta: %w", err)
	}
	e.uf = v
	return nil
}

// crash ends the entity after an error: the command in flight and those
// queued fail with ErrEntityFailed, open streams end with it.
func (e *crdtEntity) crash(err error) {
	e.log.Warn("entity failed", "error", err)
	e.finish(fmt.Errorf("%w: %v", ErrEntityFailed, err), true)
}

// finish tears the entity down. why is nil for a passivation, errDeleted
// for a deleted entity (queued commands get the failure "Entity deleted"),
// or the error the in-flight and queued commands and open streams get.
// abort skips the graceful close of the function's stream.
func (e *crdtEntity) finish(why error, abort bool) {
	r := e.r
	r.remove(e, true)
	close(e.quit)
	// Write-consistency-ALL confirmations waiting on this instance: it is
	// gone, and the next one reads the store.
	e.seen.release()
	if e.stream != nil {
		// Half-close and wait (bounded) for the function to end its side,
		// unless aborting; then release the stream.
		if !abort && e.stream.CloseSend() == nil {
			t := time.NewTimer(closeTimeout)
			select {
			case <-e.recvDone:
			case <-t.C:
			}
			t.Stop()
		}
		e.stopStream()
		if e.recvStarted {
			<-e.recvDone
		}
	}
	streamErr := why
	if errors.Is(why, errDeleted) {
		streamErr = nil
	}
	if in := e.inflight; in != nil {
		in.deadline.Stop()
		in.loadDone()
		in.span.Fail(why)
		in.span.End()
		switch {
		case in.req != nil && errors.Is(why, errDeleted):
			in.req.done <- reply{res: Result{Action: deletedFailure()}}
		case in.req != nil:
			r.cfg.Metrics.commandDone(r.name, time.Since(in.start), why)
			in.req.done <- reply{err: orStopping(why)}
		default:
			in.cancelOf.finish(streamErr)
		}
	}
	for _, sub := range e.subs {
		sub.finish(streamErr)
	}
	for {
		select {
		case req := <-e.queue:
			if errors.Is(why, errDeleted) {
				req.done <- reply{res: Result{Action: deletedFailure()}}
			} else {
				req.done <- reply{err: orStopping(why)}
			}
			continue
		default:
		}
		break
	}
	// What this replica changed is published before it goes. If the store
	// does not take it within the write timeout, the publisher keeps
	// trying in the background until the runtime stops (a new instance of
	// the entity here merges it when it lands, as every replica does).
	// A deleted entity's states are gone for good: nothing to publish.
	if errors.Is(why, errDeleted) {
		e.pub.stop()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.WriteTimeout)
	_, err := e.pub.flush(ctx)
	cancel()
	if err == nil || r.ctx.Err() != nil {
		if err != nil {
			e.log.Warn("state not published before the entity stopped", "error", err)
		}
		e.pub.stop()
		return
	}
	e.log.Info("state not published yet; publishing in the background", "error", err)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer e.pub.stop()
		if _, err := e.pub.flush(r.ctx); err != nil {
			e.log.Warn("state not published before the sidecar stopped", "error", err)
		}
	}()
}

func orStopping(err error) error {
	if err == nil || errors.Is(err, errDeleted) {
		return ErrStopping
	}
	return err
}

func deletedFailure() *cloudstate.ClientAction {
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: &cloudstate.Failure{Description: entityDeleted}}}
}

// functionApply is what the function holds after it made change d to its
// value uf: crdt.ApplyValue, except for Vote, whose deltas from the
// function carry only its own vote (the function counts it in).
func functionApply(uf, d *crdtpb.CrdtDelta) (*crdtpb.CrdtDelta, error) {
	v := d.GetVote()
	if v == nil {
		return crdt.ApplyValue(uf, d)
	}
	old := uf.GetVote()
	if old == nil {
		old = &crdtpb.VoteDelta{TotalVoters: 1}
	}
	nv := proto.CloneOf(old)
	if v.GetSelfVote() != old.GetSelfVote() {
		nv.SelfVote = v.GetSelfVote()
		if nv.SelfVote {
			nv.VotesFor++
		} else {
			nv.VotesFor--
		}
	}
	return &crdtpb.CrdtDelta{Delta: &crdtpb.CrdtDelta_Vote{Vote: nv}}, nil
}
