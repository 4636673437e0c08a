package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Pacing of the write consistency ALL.
const (
	// ConfirmInterval is how often Confirm asks again the replicas that
	// have not answered yet (a request or a reply may be lost, or a replica
	// may have subscribed late).
	ConfirmInterval = time.Second

	// AnswerTimeout bounds one call of Answer's merged function.
	AnswerTimeout = 10 * time.Second
)

// syncRequest is a Confirm request on Config.CRDTSyncSubject, in JSON. The
// entity is its "<type>.<key>" token (EncodeToken'd, so any key survives
// JSON); the reply carries the answering replica's id, raw.
type syncRequest struct {
	Entity string `json:"entity"`
	Seq    uint64 `json:"seq"`
}

// Confirm waits until every replica in want has answered (see Answer) that
// its active instance of e merged the state at stream sequence seq or
// later, or has none. It asks on the service's sync subject, and again
// every ConfirmInterval, until all answered or ctx ends; then the error is
// a *ConfirmError naming the replicas that did not answer, which wraps
// ctx's error. An empty want succeeds at once; replicas not in want may
// answer and are ignored.
func (c *CRDTs) Confirm(ctx context.Context, e Entity, seq uint64, want []string) error {
	if err := e.Validate(); err != nil {
		return err
	}
	missing := make(map[string]bool, len(want))
	for _, r := range want {
		missing[r] = true
	}
	if len(missing) == 0 {
		return nil
	}
	nc := c.js.Conn()
	inbox := nc.NewInbox()
	// A channel, not a callback: answers already received when ctx ends
	// still count.
	answers := make(chan *nats.Msg, 2*len(missing)+16)
	sub, err := nc.ChanSubscribe(inbox, answers)
	if err != nil {
		return fmt.Errorf("confirm crdt %s at %d: %w", e, seq, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	req, err := json.Marshal(syncRequest{Entity: e.token(), Seq: seq})
	if err != nil {
		return fmt.Errorf("confirm crdt %s at %d: %w", e, seq, err)
	}
	ask := func() error {
		err := nc.PublishMsg(&nats.Msg{Subject: c.cfg.CRDTSyncSubject(), Reply: inbox, Data: req})
		if errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("confirm crdt %s at %d: %w", e, seq, err)
		}
		if err != nil { // disconnected: asked again on the next tick
			c.cfg.Logger.DebugContext(ctx, "confirm: request not sent", "entity", e.String(), "error", err)
		}
		return nil
	}
	if err := ask(); err != nil {
		return err
	}
	tick := time.NewTicker(ConfirmInterval)
	defer tick.Stop()
	answered := func(m *nats.Msg) bool {
		delete(missing, string(m.Data))
		return len(missing) == 0
	}
	for {
		select {
		case m := <-answers:
			if answered(m) {
				return nil
			}
		case <-tick.C:
			if err := ask(); err != nil {
				return err
			}
		case <-ctx.Done():
			for len(answers) > 0 {
				if answered(<-answers) {
					return nil
				}
			}
			names := make([]string, 0, len(missing))
			for r := range missing {
				names = append(names, r)
			}
			slices.Sort(names)
			return &ConfirmError{Entity: e, Seq: seq, Missing: names, Err: ctx.Err()}
		}
	}
}

// Answer serves Confirm requests on behalf of replica until stop is called.
// For each request it calls merged(ctx, e, seq) in a goroutine of its own,
// with a context bounded by AnswerTimeout: merged returns nil once the
// replica's active instance of e has merged a state at stream sequence seq
// or later, or at once if the replica has no active instance of e (its next
// activation reads the stream). Then Answer replies with the replica id;
// when merged fails, it does not reply (Confirm asks again). A request
// repeated while merged still runs for it is not handed to merged twice.
// Requests that are not well-formed are dropped and logged at debug level.
//
// Answer uses the connection of the CRDTs' JetStream client; its
// subscription survives reconnects. stop unsubscribes, cancels the contexts
// of the merged calls in flight and waits until they returned; it may be
// called more than once.
func (c *CRDTs) Answer(replica string, merged func(ctx context.Context, e Entity, seq uint64) error) (stop func(), err error) {
	if err := validReplica(replica); err != nil {
		return nil, err
	}
	nc := c.js.Conn()
	log := c.cfg.Logger
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu       sync.Mutex // guards inflight, and wg.Add against stop
		inflight = map[string]bool{}
		wg       sync.WaitGroup
	)
	sub, err := nc.Subscribe(c.cfg.CRDTSyncSubject(), func(m *nats.Msg) {
		var req syncRequest
		if err := json.Unmarshal(m.Data, &req); err != nil || m.Reply == "" {
			log.Debug("crdt answer: malformed request dropped", "replica", replica, "reply", m.Reply, "error", err)
			return
		}
		e, err := parseToken(req.Entity)
		if err == nil {
			err = e.Validate()
		}
		if err != nil {
			log.Debug("crdt answer: malformed request dropped", "replica", replica, "entity", req.Entity, "error", err)
			return
		}
		key := m.Reply + " " + req.Entity + " " + strconv.FormatUint(req.Seq, 10)
		mu.Lock()
		defer mu.Unlock()
		if inflight[key] || ctx.Err() != nil {
			return
		}
		inflight[key] = true
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(inflight, key)
				mu.Unlock()
			}()
			hctx, hcancel := context.WithTimeout(ctx, AnswerTimeout)
			err := merged(hctx, e, req.Seq)
			hcancel()
			if err != nil {
				log.Debug("crdt answer: not merged", "replica", replica, "entity", e.String(), "seq", req.Seq, "error", err)
				return
			}
			if err := m.Respond([]byte(replica)); err != nil {
				log.Debug("crdt answer: reply not sent", "replica", replica, "entity", e.String(), "error", err)
			}
		})
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("answer crdt sync: %w", err)
	}
	// Make sure the server has the subscription before Answer returns (a
	// Confirm that starts now is heard); a disconnected client subscribes
	// again when it reconnects.
	if err := nc.FlushTimeout(c.cfg.AttemptTimeout); err != nil {
		log.Debug("crdt answer: flush", "replica", replica, "error", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = sub.Unsubscribe()
			mu.Lock()
			cancel()
			mu.Unlock()
			wg.Wait()
		})
	}, nil
}
