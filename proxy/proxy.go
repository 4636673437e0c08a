package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	"github.com/jetstate/jetstate/streams"
)

// Defaults for Config fields left zero, as the reference proxy's.
const (
	DefaultUserFunction       = "127.0.0.1:8080"
	DefaultListen             = ":9000"
	DefaultPassivationTimeout = 30 * time.Second
	DefaultCommandTimeout     = time.Minute
	DefaultQueueSize          = 100
	DefaultMaxMessageSize     = 12 << 20
	DefaultDrainTimeout       = 10 * time.Second
	DefaultRouteTimeout       = 30 * time.Second
	ProxyName                 = "jetstate"
)

// Config configures a sidecar. A zero field means its documented default.
type Config struct {
	// Storage names the service's streams and buckets (streams.Config);
	// Storage.Service is required.
	Storage streams.Config
	// Provision, if set, creates or updates the streams and buckets at
	// start (the operator does this in Kubernetes; the one-machine set-up
	// lets the sidecar do it).
	Provision *streams.StoreConfig
	// UserFunction is the host:port of the user function's gRPC server.
	UserFunction string
	// Listen is the ingress address (gRPC and HTTP/JSON). It is bound only
	// once discovery succeeded.
	Listen string
	// Enabled lists the entity types served. Default: event-sourced, value
	// entities and actions.
	Enabled []string
	// PassivationTimeout applies to entity types whose discovery answer
	// names none. Default 30 s.
	PassivationTimeout time.Duration
	// CommandTimeout bounds how long the user function may take to answer
	// one entity command (and an activation). Default 1 min.
	CommandTimeout time.Duration
	// QueueSize bounds the commands waiting for one entity. Default 100.
	QueueSize int
	// MaxMessageSize bounds messages to and from the user function and
	// clients. Default 12 MiB.
	MaxMessageSize int
	// DrainTimeout bounds graceful shutdown. Default 10 s.
	DrainTimeout time.Duration
	// RouteTimeout bounds how long a command is retried while its shard
	// has no reachable owner (a handoff, or an owner that died and whose
	// membership has not expired yet). Default 30 s.
	RouteTimeout time.Duration
	// Version is reported to the user function in ProxyInfo.
	Version string
	// Logger; nil discards.
	Logger *slog.Logger
	// Registry receives the Prometheus metrics; nil registers nowhere.
	Registry prometheus.Registerer
	// DiscoveryBackoff overrides the 1 s..10 s retry pacing (tests).
	DiscoveryBackoff time.Duration
	// Eventing tunes the (cloudstate.eventing) consumers and topics.
	Eventing EventingConfig
}

func (c Config) withDefaults() Config {
	if c.UserFunction == "" {
		c.UserFunction = DefaultUserFunction
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if len(c.Enabled) == 0 {
		c.Enabled = []string{EventSourced, ValueEntity, Action}
	}
	if c.PassivationTimeout <= 0 {
		c.PassivationTimeout = DefaultPassivationTimeout
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.RouteTimeout <= 0 {
		c.RouteTimeout = DefaultRouteTimeout
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Eventing = c.Eventing.withDefaults()
	return c
}

// Validate reports every problem with the config at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	errs := []error{c.Storage.Validate(), c.Eventing.Validate()}
	if c.Provision != nil {
		errs = append(errs, c.Provision.Validate())
	}
	for _, t := range c.Enabled {
		if t != EventSourced && t != ValueEntity && t != Action {
			errs = append(errs, fmt.Errorf("entity type %q is not supported", t))
		}
	}
	return errors.Join(errs...)
}

// Proxy is the sidecar: it discovers the user function, serves its
// services to clients and runs its entities on JetStream.
type Proxy struct {
	cfg     Config
	js      jetstream.JetStream
	nc      *nats.Conn
	log     *slog.Logger
	ready   atomic.Bool
	addr    atomic.Pointer[net.Addr]
	serving chan struct{} // closed once the ingress serves

	// Set once by start, read-only afterwards.
	model     *Model
	discovery cloudstate.EntityDiscoveryClient
	actions   actionpb.ActionProtocolClient
	runtimes  map[protoreflect.FullName]*entities
	metrics   *metrics
	sharding  *sharding
	eventing  *eventing
	async     sync.WaitGroup // fire-and-forget side effects and routed commands
}

// New returns a sidecar that stores state through js.
func New(cfg Config, js jetstream.JetStream) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Proxy{cfg: cfg, js: js, nc: js.Conn(), log: cfg.Logger, serving: make(chan struct{})}, nil
}

// Ready reports whether discovery succeeded and the ingress is serving.
func (p *Proxy) Ready() bool { return p.ready.Load() }

// Serving is closed once discovery succeeded and the ingress serves (Addr is
// then set). It is never closed if Run ends before that.
func (p *Proxy) Serving() <-chan struct{} { return p.serving }

// Addr is the ingress address once it is bound, else nil.
func (p *Proxy) Addr() net.Addr {
	if a := p.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// Model is what discovery found; nil before.
func (p *Proxy) Model() *Model {
	if !p.Ready() {
		return nil
	}
	return p.model
}

// Run discovers the user function (retrying while it is not up), binds the
// storage, opens the ingress and serves until ctx is done; then it stops
// taking requests, drains those in flight (DrainTimeout), closes every
// entity's stream and returns. A discovery answer that does not validate
// ends Run with a *ValidationError.
func (p *Proxy) Run(ctx context.Context) error {
	conn, err := grpc.NewClient(p.cfg.UserFunction,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(p.cfg.MaxMessageSize), grpc.MaxCallSendMsgSize(p.cfg.MaxMessageSize)),
	)
	if err != nil {
		return fmt.Errorf("user function %s: %w", p.cfg.UserFunction, err)
	}
	defer conn.Close()
	if err := p.start(ctx, conn); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before the function was up: a clean stop
		}
		return err
	}
	defer p.stopRuntimes()
	if err := p.sharding.join(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("join: %w", err)
	}
	shardCtx, stopSharding := context.WithCancel(context.WithoutCancel(ctx))
	shardDone := make(chan struct{})
	go func() { defer close(shardDone); p.sharding.run(shardCtx) }()
	defer func() {
		// After the ingress drained: hand the shards to the others, then go.
		stopSharding()
		<-shardDone
		lctx, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
		defer cancel()
		p.sharding.leave(lctx)
	}()
	defer p.startLoadReports(ctx)() // for the operator's autoscaler; stops when draining starts

	lis, err := net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("ingress: %w", err)
	}
	addr := lis.Addr()
	p.addr.Store(&addr)
	gs := p.grpcServer()
	handler, err := p.httpHandler(gs)
	if err != nil {
		lis.Close()
		return fmt.Errorf("ingress: %w", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug)}
	split := newSplitListener(lis)
	serveErr := make(chan error, 3)
	go func() { serveErr <- split.run() }()
	go func() { serveErr <- gs.Serve(split.grpc) }()
	go func() { serveErr <- srv.Serve(split.http) }()
	// Eventing consumers run while the sidecar is ready; they stop when
	// draining begins and are waited for before the runtimes stop.
	evCtx, cancelEventing := context.WithCancel(context.WithoutCancel(ctx))
	abort := make(chan struct{})
	abortEventing := sync.OnceFunc(func() { close(abort) })
	if p.eventing != nil {
		p.eventing.abort = abort
	}
	// stopEventing stops the consumers and gives the events in hand the
	// drain time to finish; then their calls are cancelled (the messages
	// come back), so the shard handoff after the drain is not held up.
	stopEventing := sync.OnceFunc(func() {
		cancelEventing()
		time.AfterFunc(p.cfg.DrainTimeout, abortEventing)
	})
	evDone := make(chan struct{})
	defer func() {
		stopEventing()
		<-evDone
		abortEventing()
	}()
	p.ready.Store(true)
	close(p.serving)
	p.log.Info("serving", "addr", addr.String(), "services", len(p.model.Services))
	go func() {
		defer close(evDone)
		if err := p.eventing.run(evCtx); err != nil {
			p.log.Error("eventing", "error", err)
		}
	}()

	select {
	case err := <-serveErr:
		p.ready.Store(false)
		split.close()
		gs.Stop()
		srv.Close()
		if isClosed(err) || errors.Is(err, http.ErrServerClosed) {
			err = errors.New("listener closed")
		}
		return fmt.Errorf("ingress: %w", err)
	case <-ctx.Done():
	}
	p.ready.Store(false)
	p.log.Info("draining")
	stopEventing()
	// Stop accepting, let calls in flight finish (bounded), then close.
	split.close()
	dctx, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
	defer cancel()
	drained := make(chan struct{})
	go func() {
		gs.GracefulStop()
		_ = srv.Shutdown(dctx)
		close(drained)
	}()
	select {
	case <-drained:
	case <-dctx.Done():
		gs.Stop()
		srv.Close()
	}
	split.wg.Wait()
	return nil
}

// start discovers the function and builds the runtimes.
func (p *Proxy) start(ctx context.Context, conn *grpc.ClientConn) error {
	model, err := Discover(ctx, conn, DiscoveryConfig{
		ProxyName: ProxyName, ProxyVersion: p.cfg.Version, Enabled: p.cfg.Enabled,
		BackoffMin: p.cfg.DiscoveryBackoff, BackoffMax: p.cfg.DiscoveryBackoff * 10, Logger: p.log,
	})
	if err != nil {
		return err
	}
	p.model = model
	p.discovery = cloudstate.NewEntityDiscoveryClient(conn)
	p.actions = actionpb.NewActionProtocolClient(conn)
	p.runtimes = map[protoreflect.FullName]*entities{}
	p.metrics = newMetrics(p.cfg.Registry, p.activeEntities)

	es, values, own, err := p.bindStorage(ctx, model)
	if err != nil {
		return err
	}
	p.sharding = newSharding(own, p.nc, p.cfg.Storage, MemberInfo{Version: p.cfg.Version, Started: time.Now()}, p.log)
	p.sharding.serveFn = p.serveShard
	p.sharding.drop = func(shard int) {
		var wg sync.WaitGroup
		for _, rt := range p.runtimes {
			wg.Go(func() { rt.passivateShard(shard) })
		}
		wg.Wait()
	}
	es.guard = p.sharding.guard
	if p.cfg.Registry != nil {
		p.cfg.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "jetstate_proxy_shards_owned", Help: "Shards this sidecar serves.",
		}, func() float64 { return float64(p.sharding.owned.Load()) }))
	}
	for _, svc := range model.Services {
		rc := runtimeConfig{
			queueSize:      p.cfg.QueueSize,
			commandTimeout: p.cfg.CommandTimeout,
			passivation:    p.cfg.PassivationTimeout,
			log:            p.log,
		}
		if svc.Passivation > 0 {
			rc.passivation = svc.Passivation
		}
		var open opener
		switch svc.EntityType {
		case EventSourced:
			open = openEventSourced(eventsourced.NewEventSourcedClient(conn), svc, es, p.metrics, p.log)
		case ValueEntity:
			open = openValueEntity(valueentity.NewValueEntityClient(conn), svc, values, p.sharding.guard, p.metrics, p.log)
		default:
			continue
		}
		rt := newEntities(string(svc.Desc.FullName()), rc, open, p.metrics)
		rt.shardOf = func(id string) int { return own.ShardOf(streams.Entity{Type: svc.PersistenceID, Key: id}) }
		rt.serves = p.sharding.serves
		p.runtimes[svc.Desc.FullName()] = rt
	}
	return p.bindEventing(ctx, model)
}

// bindEventing creates the eventing stream and consumers the model needs,
// retrying (logged) while NATS is not available, until ctx is done.
func (p *Proxy) bindEventing(ctx context.Context, model *Model) error {
	m := newEventingMetrics(p.cfg.Registry)
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ev, err := p.newEventing(ctx, model.Eventing, m)
		if err == nil {
			p.eventing = ev
			return nil
		}
		if errors.Is(err, errEventingUnservable) {
			return err
		}
		p.log.WarnContext(ctx, "eventing not available yet, retrying", "attempt", attempt, "in", wait, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("eventing: %w (last attempt: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// bindStorage provisions the service's streams if configured and binds the
// stores the model's entity types need. NATS may be restarting or electing
// leaders while a sidecar starts, so failures are retried (logged) until
// ctx is done, except a server that is too old.
func (p *Proxy) bindStorage(ctx context.Context, model *Model) (esStore, *streams.Values, *streams.Ownership, error) {
	var needES, needValues bool
	for _, svc := range model.Services {
		needES = needES || svc.EntityType == EventSourced
		needValues = needValues || svc.EntityType == ValueEntity
	}
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		es, values, own, err := func() (es esStore, values *streams.Values, own *streams.Ownership, err error) {
			if p.cfg.Provision != nil {
				if err = streams.Provision(ctx, p.js, p.cfg.Storage, *p.cfg.Provision); err != nil {
					return
				}
			}
			if needES {
				if es.journal, err = streams.NewJournal(p.js, p.cfg.Storage); err != nil {
					return
				}
				if es.snapshots, err = streams.NewSnapshots(ctx, p.js, p.cfg.Storage); err != nil {
					return
				}
			}
			if needValues {
				if values, err = streams.NewValues(ctx, p.js, p.cfg.Storage); err != nil {
					return
				}
			}
			own, err = streams.NewOwnership(ctx, p.js, p.cfg.Storage)
			return
		}()
		if err == nil || errors.Is(err, streams.ErrUnsupportedServer) || errors.Is(err, streams.ErrInvalidName) {
			return es, values, own, err
		}
		p.log.WarnContext(ctx, "storage not available yet, retrying", "attempt", attempt, "in", wait, "error", err)
		select {
		case <-ctx.Done():
			return esStore{}, nil, nil, fmt.Errorf("storage: %w (last attempt: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func (p *Proxy) activeEntities() map[string]int {
	out := map[string]int{}
	for name, rt := range p.runtimes {
		out[string(name)] = rt.count()
	}
	return out
}

// stopRuntimes closes every entity and waits for side effects in flight.
func (p *Proxy) stopRuntimes() {
	var wg sync.WaitGroup
	for _, rt := range p.runtimes {
		wg.Go(rt.shutdown)
	}
	wg.Wait()
	p.async.Wait()
}

// OwnedShards is the number of shards this sidecar serves now.
func (p *Proxy) OwnedShards() int {
	if p.sharding == nil {
		return 0
	}
	return int(p.sharding.owned.Load())
}
