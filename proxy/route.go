package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/jetstate/route"
	"github.com/jetstate/jetstate/streams"
)

// Retry pacing while a shard has no reachable owner (a handoff, an owner
// that died and whose membership has not expired yet).
const (
	routeRetryMin = 5 * time.Millisecond
	routeRetryMax = 250 * time.Millisecond
)

// ErrNoOwner reports a command whose shard found no serving owner within
// Config.RouteTimeout.
var ErrNoOwner = errors.New("no sidecar serves the entity's shard")

// route runs an entity command where its shard is served: here, directly,
// if this sidecar owns the shard, else over NATS at the owner. Commands
// that meet a shard on the move are retried until the owner answers, ctx
// ends or Config.RouteTimeout passes.
func (p *Proxy) route(ctx context.Context, m *Method, key string, payload *anypb.Any) (commandResult, error) {
	rt := p.runtimes[m.Service.Desc.FullName()]
	shard := p.sharding.own.ShardOf(streams.Entity{Type: m.Service.PersistenceID, Key: key})
	name := string(m.Desc.Name())
	wait := routeRetryMin
	var giveUp <-chan time.Time
	for attempt := 1; ; attempt++ {
		var (
			res commandResult
			err error
		)
		if p.sharding.serves(shard) {
			p.metrics.routed(string(m.Service.Desc.FullName()), "local")
			res, err = rt.handle(ctx, key, name, payload)
		} else {
			p.metrics.routed(string(m.Service.Desc.FullName()), "remote")
			res, err = p.remote(ctx, shard, m, key, payload)
		}
		if !errors.Is(err, errMoved) {
			return res, err
		}
		if giveUp == nil {
			t := time.NewTimer(p.cfg.RouteTimeout)
			defer t.Stop()
			giveUp = t.C
		}
		p.metrics.routeRetried(string(m.Service.Desc.FullName()))
		select {
		case <-ctx.Done():
			return commandResult{}, ctx.Err()
		case <-giveUp:
			return commandResult{}, fmt.Errorf("%w: shard %d after %d attempts in %v (last: %v)", ErrNoOwner, shard, attempt, p.cfg.RouteTimeout, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, routeRetryMax)
	}
}

// remote sends a command to the owner of shard and waits for its result.
// No owner listening, or one that lost the shard, is errMoved.
func (p *Proxy) remote(ctx context.Context, shard int, m *Method, key string, payload *anypb.Any) (commandResult, error) {
	// One attempt waits for the owner's answer at most a command timeout
	// and a second: if the owner dies with the command, the command may or
	// may not have run, so it is not retried but reported.
	rctx, cancel := context.WithTimeout(ctx, p.cfg.CommandTimeout+time.Second)
	defer cancel()
	dl, _ := rctx.Deadline()
	cmd := &route.Command{Service: string(m.Service.Desc.FullName()), Name: string(m.Desc.Name()), EntityKey: key, Payload: payload,
		Shard: int32(shard), TimeoutMs: max(1, time.Until(dl).Milliseconds())}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return commandResult{}, err
	}
	msg, err := p.nc.RequestWithContext(rctx, p.cfg.Storage.RouteSubject(shard), data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return commandResult{}, fmt.Errorf("%w: nobody listens for shard %d", errMoved, shard)
	case err != nil && ctx.Err() != nil:
		return commandResult{}, ctx.Err()
	case err != nil:
		return commandResult{}, fmt.Errorf("%w: the owner of shard %d did not answer (the command may or may not have run): %v", ErrEntityFailed, shard, err)
	}
	var res route.Result
	if err := proto.Unmarshal(msg.Data, &res); err != nil {
		return commandResult{}, fmt.Errorf("%w: routed command: bad result: %v", ErrEntityFailed, err)
	}
	if e := res.GetError(); e != nil {
		return commandResult{}, routeError(e)
	}
	return commandResult{action: res.GetClientAction(), effects: res.GetSideEffects()}, nil
}

// serveShard takes the routed commands of shard on subject, each in its
// own goroutine (the entity runtime orders those of one entity). The
// subscription is in a queue group, so that a command reaches one sidecar
// even while two subscribe (a handoff's lingering subscription, or two
// sidecars that both believe they own the shard): delivered to both, it
// could run at one and be refused (MOVED) at the other, and the retry
// would run it twice.
func (p *Proxy) serveShard(shard int, subject string) (*nats.Subscription, error) {
	return p.nc.QueueSubscribe(subject, "owner", func(msg *nats.Msg) {
		p.async.Add(1)
		go func() {
			defer p.async.Done()
			res := p.handleRouted(shard, msg.Data)
			data, err := proto.Marshal(res)
			if err == nil {
				err = msg.Respond(data)
			}
			if err != nil {
				p.log.Warn("cannot answer a routed command", "shard", shard, "error", err)
			}
		}()
	})
}

// handleRouted runs one command routed here by another sidecar.
func (p *Proxy) handleRouted(shard int, data []byte) *route.Result {
	var cmd route.Command
	if err := proto.Unmarshal(data, &cmd); err != nil {
		return &route.Result{Error: &route.Error{Code: route.Error_INVALID, Message: "malformed routed command: " + err.Error()}}
	}
	svc := p.model.Services[cmd.GetService()]
	var rt *entities
	if svc != nil {
		rt = p.runtimes[svc.Desc.FullName()]
	}
	if rt == nil || svc.Methods[cmd.GetName()] == nil {
		return &route.Result{Error: &route.Error{Code: route.Error_INVALID, Message: fmt.Sprintf("%v: %s/%s", ErrUnknownMethod, cmd.GetService(), cmd.GetName())}}
	}
	if int(cmd.GetShard()) != shard || p.sharding.own.ShardOf(streams.Entity{Type: svc.PersistenceID, Key: cmd.GetEntityKey()}) != shard {
		return &route.Result{Error: &route.Error{Code: route.Error_INVALID, Message: "routed command for another shard"}}
	}
	timeout := p.cfg.CommandTimeout + time.Second // what an ingress waits at most
	if ms := cmd.GetTimeoutMs(); ms > 0 {
		timeout = time.Duration(ms) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := rt.handle(ctx, cmd.GetEntityKey(), cmd.GetName(), cmd.GetPayload())
	if err != nil {
		return &route.Result{Error: routeErrorOf(err)}
	}
	return &route.Result{ClientAction: res.action, SideEffects: res.effects}
}

// routeErrorOf and routeError carry the runtime's errors across sidecars,
// so that the ingress maps them to the same client status.
func routeErrorOf(err error) *route.Error {
	code := route.Error_UNKNOWN
	switch {
	case errors.Is(err, errMoved):
		code = route.Error_MOVED
	case errors.Is(err, ErrStopping):
		code = route.Error_STOPPING
	case errors.Is(err, ErrEntityBusy):
		code = route.Error_BUSY
	case errors.Is(err, ErrEntityFailed):
		code = route.Error_FAILED
	case errors.Is(err, context.DeadlineExceeded):
		code = route.Error_TIMEOUT
	case errors.Is(err, context.Canceled):
		code = route.Error_CANCELLED
	case errors.Is(err, ErrInvalidEntityKey), errors.Is(err, streams.ErrInvalidKey), errors.Is(err, ErrUnknownMethod):
		code = route.Error_INVALID
	}
	return &route.Error{Code: code, Message: err.Error()}
}

func routeError(e *route.Error) error {
	var base error
	switch e.GetCode() {
	case route.Error_MOVED, route.Error_STOPPING:
		base = errMoved // the owner is going: try again
	case route.Error_BUSY:
		base = ErrEntityBusy
	case route.Error_FAILED:
		base = ErrEntityFailed
	case route.Error_TIMEOUT:
		base = context.DeadlineExceeded
	case route.Error_CANCELLED:
		base = context.Canceled
	case route.Error_INVALID:
		base = ErrBadRequest
	default:
		return fmt.Errorf("%w: at the owner: %s", ErrEntityFailed, e.GetMessage())
	}
	return fmt.Errorf("%w (at the owner: %s)", base, e.GetMessage())
}
