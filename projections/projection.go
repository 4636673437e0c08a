package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/jetstate/jetstate/internal/backoff"
	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/streams"
)

// Consumer metadata keys and the states of a generation.
const (
	metaProjection = "jetstate_projection"
	metaState      = "jetstate_state"
	stateActive    = "active"
	stateBuilding  = "building"
	// metaOrigin is "reset" on a generation made by Reset: a Run whose
	// generation it retired carries on with it.
	metaOrigin  = "jetstate_origin"
	originReset = "reset"
	// metaDeadLetter is the subject the generation's projector puts its
	// dead letters on (Config.DeadLetterSubject), for whoever lists them.
	metaDeadLetter = "jetstate_dead_letter"
)

// pullExpiry bounds a pull request. The server does not wake a resumed
// consumer's waiting pull requests (nats-server 2.15), so a projector
// resumes within this time, when its next request arrives (the default of
// 30 s left a resume unseen for 15 s and more).
const pullExpiry = 5 * time.Second

// Projection turns one service's journals into CloudEvents for a sink
// through a durable JetStream consumer. See the package documentation for
// the contract. A Projection is safe for concurrent use; Run and Rebuild
// each deliver until their context ends or they fail.
type Projection struct {
	js     jetstream.JetStream
	cfg    Config
	stream string
	conv   converter
	log    *slog.Logger
	tracer *tracing.Tracer
	m      *metrics
}

// New returns the projection cfg describes. It does not contact the server.
func New(js jetstream.JetStream, cfg Config) (*Projection, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	stream := cfg.Storage.JournalStream()
	return &Projection{
		js:     js,
		cfg:    cfg,
		stream: stream,
		conv:   converter{stream: stream, source: cfg.Source, resolver: cfg.Resolver},
		log:    cfg.Logger.With("projection", cfg.Name, "service", cfg.Storage.Service),
		tracer: tracing.New(cfg.TracerProvider),
		m:      newMetrics(cfg.Registry, cfg.Storage.Service, cfg.Name),
	}, nil
}

// Config returns the projection's configuration with defaults applied.
func (p *Projection) Config() Config { return p.cfg }

// ConsumerName is the name of the projection's consumer of a generation.
func (p *Projection) ConsumerName(generation int) string {
	return p.cfg.Name + "-g" + strconv.Itoa(generation)
}

// Run delivers the projection's active generation to the sink until ctx
// ends (it then returns nil), a newer generation takes over (it returns
// ErrSuperseded) or it fails. If the projection has no generation yet, Run
// creates generation 1 at the configured start position. A generation
// made by Reset does not end Run: it carries on with it, replaying the
// journals from the beginning into the same sink.
//
// Only one Run (or Rebuild) of a projection may deliver at a time: at start
// it hands messages left unacknowledged by a previous run back to the
// consumer, so they are delivered again before anything newer and
// per-entity order survives crashes.
func (p *Projection) Run(ctx context.Context) error {
	return stopped(ctx, p.run(ctx))
}

// stopped is nil in place of err if err is only ctx ending (in the middle
// of setting a generation up, say): Run and Rebuild return nil then.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return nil
	}
	return err
}

func (p *Projection) run(ctx context.Context) error {
	if p.cfg.Sink == nil {
		return errors.New("projection: no sink configured")
	}
	gens, err := p.generations(ctx)
	if err != nil {
		return err
	}
	gen := activeGeneration(gens)
	if gen == 0 {
		gen = maxGeneration(gens) + 1
		if err := p.createConsumer(ctx, gen, stateActive); err != nil {
			return err
		}
		p.log.InfoContext(ctx, "projection created", "generation", gen, "consumer", p.ConsumerName(gen))
	}
	for {
		err := p.serve(ctx, gen, true)
		if !errors.Is(err, ErrSuperseded) {
			return err
		}
		next, rerr := p.resetSuccessor(ctx, gen)
		if rerr != nil || next == 0 {
			return errors.Join(err, rerr)
		}
		p.log.InfoContext(ctx, "projection reset: replaying from the beginning", "generation", next, "previous", gen)
		gen = next
	}
}

// resetSuccessor returns the active generation if Reset made it after gen,
// or 0.
func (p *Projection) resetSuccessor(ctx context.Context, gen int) (int, error) {
	gens, err := p.generations(ctx)
	if err != nil {
		return 0, err
	}
	for _, g := range slices.Backward(gens) {
		if g.state == stateActive && g.gen > gen {
			if g.info.Config.Metadata[metaOrigin] == originReset {
				return g.gen, nil
			}
			return 0, nil
		}
	}
	return 0, nil
}

// Rebuild replays the journals from the beginning into the sink through a
// new consumer generation while the current one keeps serving (run by
// another Run, here or in another process). Once the new generation has
// caught up, meaning every event appended before its previous state check
// has been accepted by the sink, it becomes the active generation: older
// generations' consumers are deleted (their Run returns ErrSuperseded),
// OnActive is called, and Rebuild goes on delivering new events like Run.
//
// A Rebuild interrupted before the switch resumes its generation when
// called again. Give the rebuild its own sink (a new table, a new
// subject): both generations deliver until the switch.
func (p *Projection) Rebuild(ctx context.Context) error {
	return stopped(ctx, p.rebuild(ctx))
}

func (p *Projection) rebuild(ctx context.Context) error {
	if p.cfg.Sink == nil {
		return errors.New("projection: no sink configured")
	}
	gens, err := p.generations(ctx)
	if err != nil {
		return err
	}
	active := activeGeneration(gens)
	gen := 0
	for _, g := range gens {
		if g.state == stateBuilding && g.gen > active {
			gen = max(gen, g.gen)
		}
	}
	if gen == 0 {
		gen = maxGeneration(gens) + 1
		if err := p.createConsumer(ctx, gen, stateBuilding); err != nil {
			return err
		}
		p.log.InfoContext(ctx, "rebuild started", "generation", gen, "active", active)
	} else {
		p.log.InfoContext(ctx, "rebuild resumed", "generation", gen, "active", active)
	}
	if active == 0 {
		// Nothing serves yet: the rebuild is the projection.
		if err := p.promote(ctx, gen); err != nil {
			return err
		}
		return p.serve(ctx, gen, true)
	}
	return p.serve(ctx, gen, false)
}

// generation is one of the projection's consumers.
type generation struct {
	gen   int
	state string
	info  *jetstream.ConsumerInfo
}

// generations lists the projection's consumers on the journal stream.
func (p *Projection) generations(ctx context.Context) ([]generation, error) {
	s, err := p.js.Stream(ctx, p.stream)
	if err != nil {
		return nil, fmt.Errorf("projection %s: stream %s: %w", p.cfg.Name, p.stream, err)
	}
	var out []generation
	l := s.ListConsumers(ctx)
	for info := range l.Info() {
		gen, ok := p.parseConsumerName(info.Name)
		if !ok || info.Config.Metadata[metaProjection] != p.cfg.Name {
			continue
		}
		out = append(out, generation{gen: gen, state: info.Config.Metadata[metaState], info: info})
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("projection %s: list consumers: %w", p.cfg.Name, err)
	}
	slices.SortFunc(out, func(a, b generation) int { return a.gen - b.gen })
	return out, nil
}

func (p *Projection) parseConsumerName(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, p.cfg.Name+"-g")
	if !ok || rest == "" || rest[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] < '0' || rest[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil
}

func activeGeneration(gens []generation) int {
	active := 0
	for _, g := range gens {
		if g.state == stateActive {
			active = max(active, g.gen)
		}
	}
	return active
}

func maxGeneration(gens []generation) int {
	if len(gens) == 0 {
		return 0
	}
	return gens[len(gens)-1].gen
}

// consumerConfig is the consumer of a generation. A building generation
// starts at the beginning; the first active one where Config.Start says.
func (p *Projection) consumerConfig(gen int, state string) jetstream.ConsumerConfig {
	cc := jetstream.ConsumerConfig{
		Durable:        p.ConsumerName(gen),
		Description:    "jetstate projection " + p.cfg.Name,
		FilterSubjects: p.cfg.filterSubjects(),
		AckPolicy:      jetstream.AckAllPolicy,
		AckWait:        p.cfg.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  p.cfg.MaxAckPending,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		Metadata:       p.metadata(state),
	}
	if p.cfg.AckEach {
		cc.AckPolicy = jetstream.AckExplicitPolicy
	}
	if state == stateActive {
		switch p.cfg.Start {
		case StartNew:
			cc.DeliverPolicy = jetstream.DeliverNewPolicy
		case StartTime:
			cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
			t := p.cfg.StartTime
			cc.OptStartTime = &t
		}
	}
	return cc
}

func (p *Projection) createConsumer(ctx context.Context, gen int, state string) error {
	if _, err := p.js.CreateConsumer(ctx, p.stream, p.consumerConfig(gen, state)); err != nil {
		return fmt.Errorf("projection %s: create consumer %s: %w", p.cfg.Name, p.ConsumerName(gen), err)
	}
	return nil
}

// metadata is the consumer metadata of a generation in state that this
// projector runs.
func (p *Projection) metadata(state string) map[string]string {
	return map[string]string{metaProjection: p.cfg.Name, metaState: state, metaDeadLetter: p.cfg.DeadLetterSubject}
}

// prepare brings an existing consumer's adjustable settings (filters,
// ack wait, max ack pending, the dead-letter subject) in line with the config and hands messages a
// previous run left unacknowledged back to it, so they come before any
// newer message. It returns the consumer and the consumer sequence its
// next delivery will carry.
func (p *Projection) prepare(ctx context.Context, gen int) (jetstream.Consumer, uint64, error) {
	name := p.ConsumerName(gen)
	cons, err := p.js.Consumer(ctx, p.stream, name)
	if err != nil {
		return nil, 0, fmt.Errorf("projection %s: consumer %s: %w", p.cfg.Name, name, err)
	}
	info := cons.CachedInfo()
	cc := info.Config
	want := p.cfg.filterSubjects()
	if !slices.Equal(cc.FilterSubjects, want) && !(len(want) == 1 && cc.FilterSubject == want[0]) ||
		cc.AckWait != p.cfg.AckWait || cc.MaxAckPending != p.cfg.MaxAckPending ||
		cc.Metadata[metaDeadLetter] != p.cfg.DeadLetterSubject {
		cc.FilterSubject, cc.FilterSubjects = "", want
		cc.AckWait, cc.MaxAckPending = p.cfg.AckWait, p.cfg.MaxAckPending
		cc.Metadata = maps.Clone(cc.Metadata)
		if cc.Metadata == nil {
			cc.Metadata = map[string]string{}
		}
		cc.Metadata[metaDeadLetter] = p.cfg.DeadLetterSubject
		if cons, err = p.js.UpdateConsumer(ctx, p.stream, cc); err != nil {
			return nil, 0, fmt.Errorf("projection %s: update consumer %s: %w", p.cfg.Name, name, err)
		}
		info = cons.CachedInfo()
	}
	if info.NumWaiting > 0 {
		if info, err = p.waitPullsExpired(ctx, cons); err != nil {
			return nil, 0, err
		}
	}
	if info.NumAckPending > 0 {
		resp, err := p.js.ResetConsumer(ctx, p.stream, name)
		if err != nil {
			return nil, 0, fmt.Errorf("projection %s: reset consumer %s to its ack floor: %w", p.cfg.Name, name, err)
		}
		p.log.InfoContext(ctx, "redelivering unacknowledged messages of a previous run",
			"generation", gen, "unacknowledged", info.NumAckPending, "from_stream_seq", resp.ResetSeq)
		// A reset numbers deliveries from 1 again. (Not the consumer's
		// info after it: a pull request left over from an interrupted
		// connection may have taken deliveries already, which this run
		// must see as missing.)
		return cons, 1, nil
	}
	return cons, info.Delivered.Consumer + 1, nil
}

// waitPullsExpired waits until the consumer has no pull request waiting,
// or for as long as one of this package's lasts (pullExpiry), and returns
// the consumer's info. Before a run starts, a waiting request is one left
// over: by the iterator of a run interrupted by a reconnection (nats.go
// 1.55 subscribes the inbox of an iterator drained while reconnecting
// again and never unsubscribes it, so the server keeps serving its
// requests), or by a projector that died without closing its connection.
// Deliveries to it never arrive; after a reset they would be taken for
// messages the new run has not got yet and be lost to it until the ack
// wait.
func (p *Projection) waitPullsExpired(ctx context.Context, cons jetstream.Consumer) (*jetstream.ConsumerInfo, error) {
	deadline := time.Now().Add(pullExpiry + time.Second)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("projection %s: consumer %s: %w", p.cfg.Name, cons.CachedInfo().Name, err)
		}
		if info.NumWaiting == 0 || time.Now().After(deadline) {
			return info, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// promote makes gen the active generation and deletes the older ones.
func (p *Projection) promote(ctx context.Context, gen int) error {
	name := p.ConsumerName(gen)
	cons, err := p.js.Consumer(ctx, p.stream, name)
	if err != nil {
		return fmt.Errorf("projection %s: consumer %s: %w", p.cfg.Name, name, err)
	}
	cc := cons.CachedInfo().Config
	cc.Metadata = p.metadata(stateActive)
	if _, err := p.js.UpdateConsumer(ctx, p.stream, cc); err != nil {
		return fmt.Errorf("projection %s: activate consumer %s: %w", p.cfg.Name, name, err)
	}
	gens, err := p.generations(ctx)
	if err != nil {
		return err
	}
	for _, g := range gens {
		if g.gen >= gen {
			continue
		}
		if err := p.js.DeleteConsumer(ctx, p.stream, p.ConsumerName(g.gen)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("projection %s: retire generation %d: %w", p.cfg.Name, g.gen, err)
		}
	}
	p.log.InfoContext(ctx, "generation active", "generation", gen)
	return nil
}

// superseded reports whether a generation newer than gen is active.
func (p *Projection) superseded(ctx context.Context, gen int) (bool, error) {
	gens, err := p.generations(ctx)
	if err != nil {
		return false, err
	}
	return activeGeneration(gens) > gen, nil
}

// serve delivers generation gen until ctx ends or it fails. A building
// generation is promoted once it has caught up. A delivery that went
// missing (errLost) starts the generation over from its ack floor.
//
// Setting the generation's consumer up is retried, with the sink's
// back-off, while it fails for a reason that passes (streams.Transient: the
// consumer has no leader yet after its server stopped, the connection is
// reconnecting); a missing consumer or stream ends it.
func (p *Projection) serve(ctx context.Context, gen int, active bool) error {
	announced := false
	bo := backoff.Backoff{Min: p.cfg.RetryMin, Max: p.cfg.RetryMax}
	for {
		var err error
		active, err = p.serveOnce(ctx, gen, active, &announced)
		switch {
		case ctx.Err() != nil:
			return err
		case errors.Is(err, errLost):
			p.log.WarnContext(ctx, "starting over from the ack floor", "generation", gen, "error", err)
			bo.Reset()
		case errors.As(err, new(setUpError)) && streams.Transient(err):
			p.log.WarnContext(ctx, "consumer not reachable; trying again", "generation", gen, "error", err)
			if werr := bo.Wait(ctx); werr != nil {
				return werr // stopped: Run returns nil
			}
		default:
			return err
		}
	}
}

// setUpError is a failure to set a generation's consumer up for delivery.
type setUpError struct{ err error }

func (e setUpError) Error() string { return e.err.Error() }
func (e setUpError) Unwrap() error { return e.err }

// serveOnce delivers generation gen from its ack floor until ctx ends or
// it fails. It returns whether the generation is active.
func (p *Projection) serveOnce(ctx context.Context, gen int, active bool, announced *bool) (bool, error) {
	cons, next, err := p.prepare(ctx, gen)
	if err != nil {
		return active, setUpError{err}
	}
	p.m.generation.Set(float64(gen))
	if active && !*announced && p.cfg.OnActive != nil {
		p.cfg.OnActive(gen)
	}
	*announced = *announced || active
	d, err := newDelivery(p, p.cfg.Sink, cons, gen, next)
	if err != nil {
		return active, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return d.q.Run(gctx, func(ctx context.Context) error { return p.consume(ctx, cons, gen, d) })
	})
	g.Go(func() error {
		var err error
		active, err = p.watch(gctx, cons, gen, active)
		return err
	})
	g.Go(func() error {
		if err := d.acks.run(gctx); err != nil {
			return fmt.Errorf("projection %s: %w", p.cfg.Name, err)
		}
		return nil
	})
	g.Go(func() error {
		select {
		case <-gctx.Done():
			return nil
		case err := <-d.lost:
			return fmt.Errorf("projection %s: %w", p.cfg.Name, err)
		}
	})
	err = g.Wait()
	d.acks.finish(ctx)
	*announced = *announced || active
	return active, err
}

// watch reads the consumer's state every InfoInterval: it sets the lag
// metrics, notices a newer active generation, and promotes a building one
// once it has caught up. It reports whether the generation is active when
// it returns.
func (p *Projection) watch(ctx context.Context, cons jetstream.Consumer, gen int, active bool) (bool, error) {
	t := time.NewTicker(p.cfg.InfoInterval)
	defer t.Stop()
	var prevDelivered uint64
	prevCaughtUp := false // the previous check found nothing left to deliver
	for {
		select {
		case <-ctx.Done():
			return active, nil
		case <-t.C:
		}
		info, err := cons.Info(ctx)
		if err != nil {
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				return active, p.consumerGone(ctx, gen)
			}
			if ctx.Err() != nil {
				return active, nil
			}
			p.log.DebugContext(ctx, "consumer info", "error", err)
			continue
		}
		p.m.pending.Set(float64(info.NumPending))
		p.m.ackPending.Set(float64(info.NumAckPending))
		p.m.paused.Set(boolFloat(info.Paused))
		if active {
			if sup, err := p.superseded(ctx, gen); err == nil && sup {
				p.log.InfoContext(ctx, "generation superseded", "generation", gen)
				return active, ErrSuperseded
			}
			continue
		}
		// Caught up: nothing left to deliver, and everything that had
		// been delivered at the previous check is accepted by the sink.
		if prevCaughtUp && info.AckFloor.Stream >= prevDelivered {
			if err := p.promote(ctx, gen); err != nil {
				return active, err
			}
			active = true
			if p.cfg.OnActive != nil {
				p.cfg.OnActive(gen)
			}
			continue
		}
		prevDelivered, prevCaughtUp = info.Delivered.Stream, info.NumPending == 0
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
