package shard

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/internal/backoff"
	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/protocol/jetstate/route"
	"github.com/jetstate/jetstate/proxy/entity"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/streams"
)

// Retry pacing while a shard has no reachable owner (a handoff, an owner
// that died and whose membership has not expired yet).
const (
	routeRetryMin = 5 * time.Millisecond
	routeRetryMax = 250 * time.Millisecond
)

// Route runs an entity command of m on entity key where its shard is
// served: here, directly, if this sidecar owns the shard, else over NATS at
// the owner. Commands that meet a shard on the move (entity.ErrMoved) are
// retried until the owner answers, ctx ends or Config.RouteTimeout passes
// (ErrNoOwner).
func (s *Sharding) Route(ctx context.Context, m *model.Method, key string, payload *anypb.Any) (entity.Result, error) {
	shard := s.own.ShardOf(streams.Entity{Type: m.Service.PersistenceID, Key: key})
	name := string(m.Desc.Name())
	service := string(m.Service.Desc.FullName())
	ctx, span := tracing.Start(ctx, SpanRoute, trace.SpanKindClient)
	if span.On() {
		span.String("rpc.service", service)
		span.String("rpc.method", name)
		span.String("jetstate.entity.key", key)
		span.Int("jetstate.shard", int64(shard))
	}
	res, err := s.route(ctx, span, shard, m, service, name, key, payload)
	span.Fail(err)
	span.End()
	return res, err
}

// Span names of routing: SpanRoute at the sidecar that received the
// command (its attempts, local or over NATS), SpanRouted at the owner that
// ran a command sent over NATS.
const (
	SpanRoute  = "jetstate.route"
	SpanRouted = "jetstate.routed"
)

// route is Route's loop of attempts.
func (s *Sharding) route(ctx context.Context, span tracing.Span, shard int, m *model.Method, service, name, key string, payload *anypb.Any) (entity.Result, error) {
	bo := backoff.Backoff{Min: routeRetryMin, Max: routeRetryMax}
	var giveUp <-chan time.Time
	for attempt := 1; ; attempt++ {
		var (
			res entity.Result
			err error
		)
		if s.Serves(shard) {
			span.Bool("jetstate.route.remote", false)
			s.m.routed.WithLabelValues(service, "local").Inc()
			res, err = s.cfg.Local.Handle(ctx, m.Service, key, name, payload)
		} else {
			span.Bool("jetstate.route.remote", true)
			s.m.routed.WithLabelValues(service, "remote").Inc()
			res, err = s.remote(ctx, shard, m, key, payload)
		}
		if !errors.Is(err, entity.ErrMoved) {
			return res, err
		}
		if giveUp == nil {
			t := time.NewTimer(s.cfg.RouteTimeout)
			defer t.Stop()
			giveUp = t.C
		}
		s.m.retries.WithLabelValues(service).Inc()
		select {
		case <-ctx.Done():
			return entity.Result{}, ctx.Err()
		case <-giveUp:
			return entity.Result{}, fmt.Errorf("%w: shard %d after %d attempts in %v (last: %v)", ErrNoOwner, shard, attempt, s.cfg.RouteTimeout, err)
		case <-time.After(bo.Next()):
		}
	}
}

// remote sends a command to the owner of shard and waits for its result.
// No owner listening, or one that lost the shard, is entity.ErrMoved.
func (s *Sharding) remote(ctx context.Context, shard int, m *model.Method, key string, payload *anypb.Any) (entity.Result, error) {
	// One attempt waits for the owner's answer at most a command timeout
	// and a second: if the owner dies with the command, the command may or
	// may not have run, so it is not retried but reported.
	// The wait also ends early when the answer can no longer come (see
	// peers): reported the same way.
	rctx, cancel := context.WithTimeout(ctx, s.cfg.CommandTimeout+time.Second)
	defer cancel()
	dl, _ := rctx.Deadline()
	lost, stopLost := s.peers.lost(s.ownerOf(shard))
	defer stopLost()
	rctx, cancelLost := context.WithCancelCause(rctx)
	defer cancelLost(nil)
	defer context.AfterFunc(lost, func() { cancelLost(context.Cause(lost)) })()
	cmd := &route.Command{Service: string(m.Service.Desc.FullName()), Name: string(m.Desc.Name()), EntityKey: key, Payload: payload,
		Shard: int32(shard), TimeoutMs: max(1, time.Until(dl).Milliseconds())}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return entity.Result{}, err
	}
	var msg *nats.Msg
	if tracing.Active(rctx) {
		// The owner continues the trace from the request's headers.
		req := &nats.Msg{Subject: s.cfg.Storage.RouteSubject(shard), Data: data, Header: nats.Header{}}
		tracing.Inject(rctx, tracing.Headers(req.Header))
		msg, err = s.nc.RequestMsgWithContext(rctx, req)
	} else {
		msg, err = s.nc.RequestWithContext(rctx, s.cfg.Storage.RouteSubject(shard), data)
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return entity.Result{}, fmt.Errorf("%w: nobody listens for shard %d", entity.ErrMoved, shard)
	case err != nil && ctx.Err() != nil:
		return entity.Result{}, ctx.Err()
	case err != nil:
		if cause := context.Cause(rctx); errors.Is(cause, errConnLost) || errors.Is(cause, errOwnerGone) {
			err = cause
		}
		return entity.Result{}, fmt.Errorf("%w: the owner of shard %d did not answer (the command may or may not have run): %v", entity.ErrEntityFailed, shard, err)
	}
	var res route.Result
	if err := proto.Unmarshal(msg.Data, &res); err != nil {
		return entity.Result{}, fmt.Errorf("%w: routed command: bad result: %v", entity.ErrEntityFailed, err)
	}
	if e := res.GetError(); e != nil {
		return entity.Result{}, routeError(e)
	}
	return entity.Result{Action: res.GetClientAction(), Effects: res.GetSideEffects()}, nil
}

// ownerOf is the owner of shard in the shard table as this sidecar sees
// it; "" before it joined.
func (s *Sharding) ownerOf(shard int) string {
	w := s.current.Load()
	if w == nil {
		return ""
	}
	return w.Owner(shard).Member
}

// serve takes the routed commands of shard, each in its own goroutine
// (the entity runtime orders those of one entity). The subscription is in
// a queue group, so that a command reaches one sidecar even while two
// subscribe (a handoff's lingering subscription, or two sidecars that both
// believe they own the shard): delivered to both, it could run at one and
// be refused (MOVED) at the other, and the retry would run it twice.
func (s *Sharding) serve(shard int) (*nats.Subscription, error) {
	return s.nc.QueueSubscribe(s.cfg.Storage.RouteSubject(shard), "owner", func(msg *nats.Msg) {
		s.hmu.Lock()
		if s.hclosed { // left: the sender tries the shard's next owner
			s.hmu.Unlock()
			s.respond(shard, msg, &route.Result{Error: &route.Error{Code: route.Error_STOPPING, Message: entity.ErrStopping.Error()}})
			return
		}
		s.handlers.Add(1)
		s.hmu.Unlock()
		go func() {
			defer s.handlers.Done()
			s.respond(shard, msg, s.handleRouted(shard, msg))
		}()
	})
}

func (s *Sharding) respond(shard int, msg *nats.Msg, res *route.Result) {
	data, err := proto.Marshal(res)
	if err == nil {
		err = msg.Respond(data)
	}
	if err != nil {
		s.log.Warn("cannot answer a routed command", "shard", shard, "error", err)
	}
}

// handleRouted runs one command routed here by another sidecar. data comes
// from the network: anything that does not decode, names an unknown
// service or method, or belongs to another shard is refused as INVALID.
func (s *Sharding) handleRouted(shard int, msg *nats.Msg) *route.Result {
	var cmd route.Command
	if err := proto.Unmarshal(msg.Data, &cmd); err != nil {
		return &route.Result{Error: &route.Error{Code: route.Error_INVALID, Message: "malformed routed command: " + err.Error()}}
	}
	svc := s.cfg.Model.Services[cmd.GetService()]
	if svc == nil || svc.Methods[cmd.GetName()] == nil {
		return &route.Result{Error: &route.Error{Code: route.Error_INVALID, Message: fmt.Sprintf("%v: %s/%s", model.ErrUnknownMethod, cmd.GetService(), cmd.GetName())}}
	}
	ent := streams.Entity{Type: svc.PersistenceID, Key: cmd.GetEntityKey()}
	if err := ent.Validate(); err != nil {
		return &route.Result{Error: routeErrorOf(err)}
	}
	if int(cmd.GetShard()) != shard || s.own.ShardOf(ent) != shard {
		return &route.Result{Error: &route.Error{Code: route.Error_INVALID, Message: "routed command for another shard"}}
	}
	timeout := s.cfg.CommandTimeout + time.Second // what an ingress waits at most
	if ms := cmd.GetTimeoutMs(); ms > 0 {
		timeout = time.Duration(ms) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ctx, span := s.cfg.Tracer.Remote(ctx, SpanRouted, trace.SpanKindServer, tracing.Headers(msg.Header))
	defer span.End()
	if span.On() {
		span.String("rpc.service", cmd.GetService())
		span.String("rpc.method", cmd.GetName())
		span.String("jetstate.entity.key", cmd.GetEntityKey())
		span.Int("jetstate.shard", int64(shard))
	}
	res, err := s.cfg.Local.Handle(ctx, svc, cmd.GetEntityKey(), cmd.GetName(), cmd.GetPayload())
	if err != nil {
		span.Fail(err)
		return &route.Result{Error: routeErrorOf(err)}
	}
	return &route.Result{ClientAction: res.Action, SideEffects: res.Effects}
}

// routeErrorOf and routeError carry the runtime's errors across sidecars,
// so that the ingress maps them to the same client status.
func routeErrorOf(err error) *route.Error {
	code := route.Error_UNKNOWN
	switch {
	case errors.Is(err, entity.ErrMoved):
		code = route.Error_MOVED
	case errors.Is(err, entity.ErrStopping):
		code = route.Error_STOPPING
	case errors.Is(err, entity.ErrEntityBusy):
		code = route.Error_BUSY
	case streams.TooLarge(err):
		code = route.Error_TOO_LARGE
	case errors.Is(err, entity.ErrEntityFailed):
		code = route.Error_FAILED
	case errors.Is(err, context.DeadlineExceeded):
		code = route.Error_TIMEOUT
	case errors.Is(err, context.Canceled):
		code = route.Error_CANCELLED
	case errors.Is(err, streams.ErrInvalidKey), errors.Is(err, model.ErrUnknownMethod), errors.Is(err, model.ErrBadRequest):
		code = route.Error_INVALID
	}
	return &route.Error{Code: code, Message: err.Error()}
}

func routeError(e *route.Error) error {
	var base error
	switch e.GetCode() {
	case route.Error_MOVED, route.Error_STOPPING:
		base = entity.ErrMoved // the owner is going: try again
	case route.Error_BUSY:
		base = entity.ErrEntityBusy
	case route.Error_FAILED:
		base = entity.ErrEntityFailed
	case route.Error_TIMEOUT:
		base = context.DeadlineExceeded
	case route.Error_CANCELLED:
		base = context.Canceled
	case route.Error_INVALID:
		base = model.ErrBadRequest
	case route.Error_TOO_LARGE:
		return fmt.Errorf("%w: %w (at the owner: %s)", entity.ErrEntityFailed, streams.ErrTooLarge, e.GetMessage())
	default:
		return fmt.Errorf("%w: at the owner: %s", entity.ErrEntityFailed, e.GetMessage())
	}
	return fmt.Errorf("%w (at the owner: %s)", base, e.GetMessage())
}
