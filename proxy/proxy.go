package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/jetstate/jetstate/internal/backoff"
	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/protocol/cloudstate"
	actionpb "github.com/jetstate/jetstate/protocol/cloudstate/action"
	crdtpb "github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	"github.com/jetstate/jetstate/proxy/entity"
	"github.com/jetstate/jetstate/proxy/eventing"
	"github.com/jetstate/jetstate/proxy/ingress"
	"github.com/jetstate/jetstate/proxy/load"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/proxy/shard"
	"github.com/jetstate/jetstate/streams"
)

// Defaults for Config fields left zero, as the reference proxy's.
const (
	DefaultUserFunction          = "127.0.0.1:8080"
	DefaultListen                = ":9000"
	DefaultPassivationTimeout    = entity.DefaultPassivation
	DefaultCommandTimeout        = entity.DefaultCommandTimeout
	DefaultQueueSize             = entity.DefaultQueueSize
	DefaultMaxMessageSize        = ingress.DefaultMaxMessageSize
	DefaultFunctionKeepalive     = 5 * time.Minute
	DefaultDrainTimeout          = ingress.DefaultDrainTimeout
	DefaultRequestMessageTimeout = ingress.DefaultRequestMessageTimeout
	DefaultRouteTimeout          = shard.DefaultRouteTimeout
	ProxyName                    = "jetstate"
)

// Defaults of the limits on client connections, see Config.
const (
	DefaultReadHeaderTimeout    = ingress.DefaultReadHeaderTimeout
	DefaultBodyTimeout          = ingress.DefaultBodyTimeout
	DefaultIdleTimeout          = ingress.DefaultIdleTimeout
	DefaultMaxConcurrentStreams = ingress.DefaultMaxConcurrentStreams
	DefaultKeepaliveMinTime     = ingress.DefaultKeepaliveMinTime
	DefaultKeepaliveTime        = ingress.DefaultKeepaliveTime
	DefaultKeepaliveTimeout     = ingress.DefaultKeepaliveTimeout
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
	// Enabled lists the entity types served. Default: all four
	// (event-sourced, value entities, CRDTs and actions).
	Enabled []string
	// PassivationTimeout applies to entity types whose discovery answer
	// names none. Default 30 s.
	PassivationTimeout time.Duration
	// CommandTimeout bounds how long the user function may take to answer
	// one entity command (and an activation). Default 1 min.
	CommandTimeout time.Duration
	// CRDTWriteTimeout bounds a CRDT update's MAJORITY or ALL write; past
	// it the command fails ("Failed to update CRDT at requested write
	// consistency"). Default 5 s, as the reference proxy.
	CRDTWriteTimeout time.Duration
	// QueueSize bounds the commands waiting for one entity. Default 100.
	QueueSize int
	// MaxActiveEntities bounds the event-sourced and value entities active
	// at once in this sidecar (each holds a stream to the user function);
	// 0, the default, bounds nothing. At the limit, activating another
	// entity first passivates the least recently used idle one (no command
	// running or queued), as its idle time would; when none is idle the
	// command is refused at once with RESOURCE_EXHAUSTED (nothing ran: it
	// may be retried). CRDT instances are not counted (entity.Limit).
	MaxActiveEntities int
	// MaxMessageSize bounds messages to and from the user function, and
	// replies to clients. Default 12 MiB.
	MaxMessageSize int
	// MaxRequestSize bounds what clients may send (a unary request, each
	// message of a streamed call): a larger request is refused before it
	// is read, with RESOURCE_EXHAUSTED or HTTP 413 naming the limit. The
	// default, and the most it can be, is what the store takes in one
	// write (the server's max_payload, or the service's streams' max
	// message size if smaller, less streams.MessageOverhead), and no more
	// than MaxMessageSize less the same overhead.
	MaxRequestSize int
	// RequestMessageTimeout bounds how long a unary call may take, once
	// opened, to send its request message; then the sidecar ends it with
	// DEADLINE_EXCEEDED. Default 30 s.
	RequestMessageTimeout time.Duration
	// DrainTimeout bounds graceful shutdown. Default 10 s.
	DrainTimeout time.Duration
	// FunctionKeepalive is how often the connection to the user function
	// is pinged while it carries calls (gRPC keepalive; at least 10 s),
	// so that a connection whose peer is gone without closing it (a
	// half-open connection) is given up and dialled again instead of
	// failing every command until the kernel notices, about 15 min later.
	// Default 5 min: what gRPC servers accept by default (pinged more
	// often, grpc-go's and grpc-java's servers close the connection with
	// too_many_pings); set it lower only for a function that permits it.
	FunctionKeepalive time.Duration
	// RouteTimeout bounds how long a command is retried while its shard
	// has no reachable owner (a handoff, or an owner that died and whose
	// membership has not expired yet). Default 30 s.
	RouteTimeout time.Duration

	// Limits on the ingress's client connections (ingress.Config).

	// ReadHeaderTimeout bounds how long an HTTP/1 request's headers may
	// take to arrive. Default 10 s.
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds how long an HTTP request's body may take to
	// arrive (not the calls of client-streaming methods). Default 1 min.
	BodyTimeout time.Duration
	// IdleTimeout closes a client connection (HTTP/1 keep-alive, HTTP/2,
	// gRPC) that had no request in flight for this long. Default 2 min.
	IdleTimeout time.Duration
	// MaxConcurrentStreams bounds the requests in flight on one HTTP/2
	// connection, gRPC or not. Default 250.
	MaxConcurrentStreams int
	// KeepaliveMinTime: a gRPC client that pings more often is disconnected
	// (GOAWAY too_many_pings). Default 5 min.
	KeepaliveMinTime time.Duration
	// KeepalivePermitWithoutStream lets gRPC clients ping while they have
	// no call in flight.
	KeepalivePermitWithoutStream bool
	// KeepaliveTime is how long a client's HTTP/2 connection may be silent
	// before the sidecar pings it; KeepaliveTimeout how long the answer
	// may take before the connection is closed. Defaults 1 min and 20 s.
	KeepaliveTime, KeepaliveTimeout time.Duration

	// Version is reported to the user function in ProxyInfo.
	Version string
	// Logger; nil discards.
	Logger *slog.Logger
	// Registry receives the Prometheus metrics; nil registers nowhere.
	Registry prometheus.Registerer
	// TracerProvider receives the spans of commands (ingress, routing,
	// the function, the journal, side effects, forwards, eventing) and
	// turns on the propagation of trace context (to the owner of a routed
	// command, into journal messages, to actions' metadata); nil: tracing
	// is off and costs nothing.
	TracerProvider trace.TracerProvider
	// DiscoveryBackoff overrides the 1 s..10 s retry pacing (tests).
	DiscoveryBackoff time.Duration
	// Eventing tunes the (cloudstate.eventing) consumers and topics; its
	// Storage, Store, CommandTimeout, Registry and Log are the sidecar's.
	Eventing eventing.Config
}

func (c Config) withDefaults() Config {
	if c.UserFunction == "" {
		c.UserFunction = DefaultUserFunction
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if len(c.Enabled) == 0 {
		c.Enabled = []string{model.EventSourced, model.ValueEntity, model.CRDT, model.Action}
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
	if c.FunctionKeepalive <= 0 {
		c.FunctionKeepalive = DefaultFunctionKeepalive
	}
	if c.RequestMessageTimeout <= 0 {
		c.RequestMessageTimeout = DefaultRequestMessageTimeout
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
	c.Eventing.Storage = c.Storage
	if c.Provision != nil {
		c.Eventing.Store = *c.Provision
	}
	c.Eventing.CommandTimeout = c.CommandTimeout
	c.Eventing.Registry = c.Registry
	c.Eventing.Log = c.Logger
	c.Eventing.Tracer = tracing.New(c.TracerProvider)
	return c
}

// Validate reports every problem with the config at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	errs := []error{c.Storage.Validate(), c.Eventing.Validate()}
	if c.Provision != nil {
		errs = append(errs, c.Provision.Validate())
	}
	if c.MaxActiveEntities < 0 {
		errs = append(errs, fmt.Errorf("max active entities must not be negative, not %d", c.MaxActiveEntities))
	}
	if c.MaxRequestSize < 0 {
		errs = append(errs, fmt.Errorf("max request size must not be negative, not %d", c.MaxRequestSize))
	}
	for _, t := range c.Enabled {
		if t != model.EventSourced && t != model.ValueEntity && t != model.CRDT && t != model.Action {
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
	model     *model.Model
	discovery cloudstate.EntityDiscoveryClient
	actions   actionpb.ActionProtocolClient
	runtimes  map[string]*entity.Runtime     // by service full name
	crdts     map[string]*entity.CRDTRuntime // by service full name
	crdtStore *streams.CRDTs
	// reqLimit is the ingress's MaxRequestSize (requestLimit).
	reqLimit  int
	load      *load.Stats
	shards    atomic.Pointer[shard.Sharding]
	eventing  *eventing.Eventing
	async     sync.WaitGroup // fire-and-forget side effects
	aborted   chan struct{}  // closed by abortCommands
	abortOnce sync.Once
}

// New returns a sidecar that stores state through js.
func New(cfg Config, js jetstream.JetStream) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Proxy{cfg: cfg, js: js, nc: js.Conn(), log: cfg.Logger, serving: make(chan struct{}), aborted: make(chan struct{})}, nil
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
func (p *Proxy) Model() *model.Model {
	if !p.Ready() {
		return nil
	}
	return p.model
}

// Run discovers the user function (retrying while it is not up), binds the
// storage, opens the ingress and serves until ctx is done; then it stops
// taking requests, drains those in flight (DrainTimeout), hands its shards
// to the other sidecars, closes every entity's stream and returns. A
// discovery answer that does not validate ends Run with a
// *model.ValidationError.
func (p *Proxy) Run(ctx context.Context) error {
	ka := max(p.cfg.FunctionKeepalive, 10*time.Second) // gRPC's floor
	conn, err := grpc.NewClient(p.cfg.UserFunction,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(p.cfg.MaxMessageSize), grpc.MaxCallSendMsgSize(p.cfg.MaxMessageSize)),
		// A ping unanswered within half the interval (at most 20 s) ends
		// the connection; only while calls are open, as servers expect.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: ka, Timeout: min(ka/2, 20*time.Second)}),
		// Static windows, as at the ingress: no ping per reply to estimate them.
		grpc.WithStaticStreamWindowSize(ingress.StreamWindow),
		grpc.WithStaticConnWindowSize(ingress.ConnWindow),
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
	// Once draining began and the drain time is over, whatever still runs
	// (a command hung in the function, a side effect) is cancelled, so that
	// the shard handoff and the stop stay within the drain time instead of
	// the command timeout. Stopped after the handoff, before the runtimes.
	var abortTimer *time.Timer
	defer func() {
		if abortTimer != nil {
			abortTimer.Stop()
		}
	}()
	shards := p.shards.Load()
	if p.crdtStore != nil {
		// The states the replicas store, followed for the whole service
		// before any entity can activate, and the other replicas'
		// write-consistency-ALL confirmations; both until the runtimes
		// stopped (deferred earlier, so run later).
		stopFollow, err := p.followCRDTs(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		defer stopFollow()
		stop, err := p.crdtStore.Answer(shards.Member(), p.crdtMerged)
		if err != nil {
			return fmt.Errorf("crdt confirmations: %w", err)
		}
		defer stop()
	}
	if err := shards.Join(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("join: %w", err)
	}
	shardCtx, stopSharding := context.WithCancel(context.WithoutCancel(ctx))
	shardDone := make(chan struct{})
	go func() { defer close(shardDone); shards.Run(shardCtx) }()
	defer func() {
		// After the ingress drained: hand the shards to the others, then go.
		stopSharding()
		<-shardDone
		lctx, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
		defer cancel()
		shards.Leave(lctx)
	}()
	// Load reports, for the operator's autoscaler; they stop when draining
	// starts.
	reporter := load.NewReporter(p.nc, p.cfg.Storage, shards.Member(), p.load, load.DefaultReportPeriod)
	reporter.OnError = func(err error) { p.log.Warn("load report not published", "error", err) }
	defer load.Start(ctx, reporter)()

	lis, err := net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("ingress: %w", err)
	}
	addr := lis.Addr()
	p.addr.Store(&addr)
	ing, err := ingress.New(ingress.Config{
		Model: p.model, Caller: clientCalls{p}, MaxMessageSize: p.cfg.MaxMessageSize, MaxRequestSize: p.reqLimit,
		DrainTimeout: p.cfg.DrainTimeout, RequestMessageTimeout: p.cfg.RequestMessageTimeout, Load: p.load, Log: p.log,
		Tracer:                       tracing.New(p.cfg.TracerProvider),
		ReadHeaderTimeout:            p.cfg.ReadHeaderTimeout,
		BodyTimeout:                  p.cfg.BodyTimeout,
		IdleTimeout:                  p.cfg.IdleTimeout,
		MaxConcurrentStreams:         p.cfg.MaxConcurrentStreams,
		KeepaliveMinTime:             p.cfg.KeepaliveMinTime,
		KeepalivePermitWithoutStream: p.cfg.KeepalivePermitWithoutStream,
		KeepaliveTime:                p.cfg.KeepaliveTime,
		KeepaliveTimeout:             p.cfg.KeepaliveTimeout,
	})
	if err != nil {
		lis.Close()
		return err
	}
	// Eventing consumers run while the sidecar is ready; they stop when
	// draining begins and are waited for before the runtimes stop. When
	// the drain time is over (abortCommands), the calls they still have in
	// hand are cancelled (their events come back), so the shard handoff
	// after the drain is not held up.
	evCtx, stopEventing := context.WithCancel(context.WithoutCancel(ctx))
	evDone := make(chan struct{})
	defer func() {
		stopEventing()
		<-evDone
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- ing.Run(ctx, lis) }()
	p.ready.Store(true)
	close(p.serving)
	// GOMAXPROCS: how many threads run Go code at once, which sizes the scheduler's costs
	// (docs/bench: a sidecar at a few thousand commands/s is cheaper with fewer).
	p.log.Info("serving", "addr", addr.String(), "services", len(p.model.Services), "gomaxprocs", runtime.GOMAXPROCS(0))
	go func() {
		defer close(evDone)
		if err := p.eventing.Run(evCtx, p.aborted); err != nil {
			p.log.Error("eventing", "error", err)
		}
	}()

	select {
	case err := <-serveErr:
		p.ready.Store(false)
		abortTimer = time.AfterFunc(p.cfg.DrainTimeout, p.abortCommands)
		return err
	case <-ctx.Done():
	}
	p.ready.Store(false)
	p.log.Info("draining")
	stopEventing()
	for _, rt := range p.crdts {
		rt.EndStreams() // long-lived CRDT subscriptions move to another replica
	}
	abortTimer = time.AfterFunc(p.cfg.DrainTimeout, p.abortCommands)
	return <-serveErr
}

// abortCommands ends what still runs once the drain time is over: the
// runtimes stop (the commands they run are cancelled and fail with
// entity.ErrEntityFailed, queued and new ones with entity.ErrStopping, which
// other sidecars retry at the shard's next owner), and the eventing calls
// in hand and asynchronous side effects are cancelled (p.aborted).
func (p *Proxy) abortCommands() {
	p.abortOnce.Do(func() { close(p.aborted) })
	p.log.Warn("drain time over: cancelling the commands still running")
	p.shutdownRuntimes()
}

// followCRDTs follows the states every replica stores and hands them to
// the CRDT runtimes, retrying (logged) while NATS is not available, until
// ctx is done.
func (p *Proxy) followCRDTs(ctx context.Context) (stop func(), err error) {
	bo := backoff.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	deliver := func(e streams.Entity, s streams.CRDTState, deleted bool) {
		for _, rt := range p.crdts {
			rt.Deliver(e, s, deleted)
		}
	}
	for attempt := 1; ; attempt++ {
		_, stop, err := p.crdtStore.FollowAll(context.WithoutCancel(ctx), deliver)
		if err == nil {
			return stop, nil
		}
		wait := bo.Next()
		p.log.WarnContext(ctx, "CRDT states cannot be followed yet, retrying", "attempt", attempt, "in", wait, "error", err)
		if backoff.Sleep(ctx, wait) != nil {
			return nil, fmt.Errorf("follow CRDT states: %w (last attempt: %v)", ctx.Err(), err)
		}
	}
}

// crdtMerged answers a write-consistency-ALL confirmation for entity e
// (entity.CRDTRuntime.Merged of every CRDT service).
func (p *Proxy) crdtMerged(ctx context.Context, e streams.Entity, seq uint64) error {
	for _, rt := range p.crdts {
		if err := rt.Merged(ctx, e, seq); err != nil {
			return err
		}
	}
	return nil
}

// shutdownRuntimes shuts every entity runtime down and waits.
func (p *Proxy) shutdownRuntimes() {
	var wg sync.WaitGroup
	for _, rt := range p.runtimes {
		wg.Go(rt.Shutdown)
	}
	for _, rt := range p.crdts {
		wg.Go(rt.Shutdown)
	}
	wg.Wait()
}

// untilAbort is ctx, cancelled as well when abortCommands runs.
func (p *Proxy) untilAbort(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-p.aborted:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// start discovers the function and builds the runtimes.
func (p *Proxy) start(ctx context.Context, conn *grpc.ClientConn) error {
	m, err := model.Discover(ctx, conn, model.DiscoveryConfig{
		ProxyName: ProxyName, ProxyVersion: p.cfg.Version, Enabled: p.cfg.Enabled,
		BackoffMin: p.cfg.DiscoveryBackoff, BackoffMax: p.cfg.DiscoveryBackoff * 10, Logger: p.log,
	})
	if err != nil {
		return err
	}
	p.model = m
	p.discovery = cloudstate.NewEntityDiscoveryClient(conn)
	p.actions = actionpb.NewActionProtocolClient(conn)
	p.load = &load.Stats{}

	st, err := p.bindStorage(ctx, m)
	if err != nil {
		return err
	}
	p.storeSpec(ctx, m.Spec)
	p.reqLimit = p.requestLimit(st.maxPayload)
	p.log.Info("request size limit", "bytes", p.reqLimit, "store", st.maxPayload)
	shards := shard.New(shard.Config{
		Ownership: st.own, Conn: p.nc, Storage: p.cfg.Storage,
		Info:  shard.MemberInfo{Version: p.cfg.Version, Started: time.Now()},
		Model: m, Local: local{p}, CommandTimeout: p.cfg.CommandTimeout, RouteTimeout: p.cfg.RouteTimeout,
		Registry: p.cfg.Registry, Log: p.log, Tracer: tracing.New(p.cfg.TracerProvider),
	})
	metrics := entity.NewMetrics(p.cfg.Registry)
	limit := entity.NewLimit(p.cfg.MaxActiveEntities) // shared by the runtimes
	runtimes := map[string]*entity.Runtime{}
	crdts := map[string]*entity.CRDTRuntime{}
	for name, svc := range m.Services {
		rc := entity.Config{
			Service: svc, QueueSize: p.cfg.QueueSize, CommandTimeout: p.cfg.CommandTimeout,
			Passivation: p.cfg.PassivationTimeout, Guard: shards, Load: p.load, Metrics: metrics, Limit: limit,
			Log: p.log, ReportError: p.reportError,
		}
		if svc.Passivation > 0 {
			rc.Passivation = svc.Passivation
		}
		switch svc.EntityType {
		case model.EventSourced:
			runtimes[name] = entity.NewEventSourced(rc, eventsourced.NewEventSourcedClient(conn), st.journal, st.snapshots)
		case model.ValueEntity:
			runtimes[name] = entity.NewValue(rc, valueentity.NewValueEntityClient(conn), st.values)
		case model.CRDT:
			rc.WriteTimeout = p.cfg.CRDTWriteTimeout
			crdts[name] = entity.NewCRDT(rc, crdtpb.NewCrdtClient(conn), st.crdts, shards)
		}
	}
	p.runtimes, p.crdts, p.crdtStore = runtimes, crdts, st.crdts
	p.shards.Store(shards)
	return p.bindEventing(ctx, m)
}

// bindEventing creates the eventing stream and consumers the model needs,
// retrying (logged) while NATS is not available, until ctx is done.
func (p *Proxy) bindEventing(ctx context.Context, m *model.Model) error {
	bo := backoff.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for attempt := 1; ; attempt++ {
		ev, err := eventing.New(ctx, p.cfg.Eventing, p.js, m.Eventing, eventCalls{p})
		if err == nil {
			p.eventing = ev
			return nil
		}
		if errors.Is(err, eventing.ErrUnservable) {
			return err
		}
		wait := bo.Next()
		p.log.WarnContext(ctx, "eventing not available yet, retrying", "attempt", attempt, "in", wait, "error", err)
		if backoff.Sleep(ctx, wait) != nil {
			return fmt.Errorf("eventing: %w (last attempt: %v)", ctx.Err(), err)
		}
	}
}

// stores are the service's stores the sidecar uses.
type stores struct {
	journal   *streams.Journal // event-sourced entities
	snapshots *streams.Snapshots
	values    *streams.Values // value entities
	crdts     *streams.CRDTs  // CRDT entities
	own       *streams.Ownership
	// maxPayload is the largest payload one write to them (and one message
	// on the connection: routed commands, topics) can carry.
	maxPayload int
}

// bindStorage provisions the service's streams if configured and binds the
// stores the model's entity types need. NATS may be restarting or electing
// leaders while a sidecar starts, so failures are retried (logged) until
// ctx is done, except a server that is too old.
func (p *Proxy) bindStorage(ctx context.Context, m *model.Model) (stores, error) {
	var needES, needValues, needCRDTs bool
	for _, svc := range m.Services {
		needES = needES || svc.EntityType == model.EventSourced
		needValues = needValues || svc.EntityType == model.ValueEntity
		needCRDTs = needCRDTs || svc.EntityType == model.CRDT
	}
	bo := backoff.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for attempt := 1; ; attempt++ {
		st, err := func() (st stores, err error) {
			if p.cfg.Provision != nil {
				if err = streams.Provision(ctx, p.js, p.cfg.Storage, *p.cfg.Provision); err != nil {
					return
				}
			}
			st.maxPayload = int(p.nc.MaxPayload()) - streams.MessageOverhead
			if needES {
				if st.journal, err = streams.NewJournal(p.js, p.cfg.Storage); err != nil {
					return
				}
				if st.snapshots, err = streams.NewSnapshots(ctx, p.js, p.cfg.Storage); err != nil {
					return
				}
				var n int
				if n, err = st.journal.MaxPayload(ctx); err != nil {
					return
				}
				st.maxPayload = min(st.maxPayload, n)
			}
			if needValues {
				if st.values, err = streams.NewValues(ctx, p.js, p.cfg.Storage); err != nil {
					return
				}
				var n int
				if n, err = st.values.MaxPayload(ctx); err != nil {
					return
				}
				st.maxPayload = min(st.maxPayload, n)
			}
			if needCRDTs {
				if st.crdts, err = streams.NewCRDTs(ctx, p.js, p.cfg.Storage); err != nil {
					return
				}
				var n int
				if n, err = st.crdts.MaxPayload(ctx); err != nil {
					return
				}
				st.maxPayload = min(st.maxPayload, n)
			}
			st.own, err = streams.NewOwnership(ctx, p.js, p.cfg.Storage)
			return
		}()
		if err == nil || errors.Is(err, streams.ErrUnsupportedServer) || errors.Is(err, streams.ErrInvalidName) {
			return st, err
		}
		wait := bo.Next()
		p.log.WarnContext(ctx, "storage not available yet, retrying", "attempt", attempt, "in", wait, "error", err)
		if backoff.Sleep(ctx, wait) != nil {
			return stores{}, fmt.Errorf("storage: %w (last attempt: %v)", ctx.Err(), err)
		}
	}
}

// requestLimit is the largest request the ingress takes: what the store
// takes in one write (storeMax), so that a request the store cannot hold
// is refused before the function runs, and what the command carrying it
// to the function may be (MaxMessageSize, less the command's wrapping);
// smaller if Config.MaxRequestSize says so. A request's events are not the
// request, but a request larger than anything the store takes is almost
// certainly a mistake, and refusing it unread keeps memory bounded.
func (p *Proxy) requestLimit(storeMax int) int {
	limit := min(storeMax, p.cfg.MaxMessageSize-streams.MessageOverhead)
	if p.cfg.MaxRequestSize > 0 {
		limit = min(limit, p.cfg.MaxRequestSize)
	}
	return limit
}

// stopRuntimes closes every entity and waits for side effects in flight.
func (p *Proxy) stopRuntimes() {
	p.shutdownRuntimes()
	p.async.Wait()
}

// OwnedShards is the number of shards this sidecar serves now.
func (p *Proxy) OwnedShards() int {
	if s := p.shards.Load(); s != nil {
		return s.Owned()
	}
	return 0
}

// AdminHandler serves the sidecar's probes and metrics, for a port of its
// own: /ready answers 200 once discovery succeeded and the ingress is
// serving (503 before and while draining), /alive always 200, /metrics the
// Prometheus metrics gathered from g.
func (p *Proxy) AdminHandler(g prometheus.Gatherer) http.Handler { return ingress.Admin(p.Ready, g) }
