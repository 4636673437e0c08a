package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pauseForever is how far ahead Pause without a deadline pauses.
const pauseForever = 100 * 365 * 24 * time.Hour

// Pause stops delivery of every generation of the projection (the active
// one and a rebuild in progress) until the given time, or until Resume if
// until is zero. The pause is kept by the server on the consumers, so it
// holds across restarts and works from any process: a running projector
// finishes the events it holds and then receives nothing more.
func (p *Projection) Pause(ctx context.Context, until time.Time) error {
	if until.IsZero() {
		until = time.Now().Add(pauseForever)
	}
	return p.eachGeneration(ctx, func(name string) error {
		_, err := p.js.PauseConsumer(ctx, p.stream, name, until)
		return err
	})
}

// Resume lifts a pause of every generation.
func (p *Projection) Resume(ctx context.Context) error {
	return p.eachGeneration(ctx, func(name string) error {
		_, err := p.js.ResumeConsumer(ctx, p.stream, name)
		return err
	})
}

func (p *Projection) eachGeneration(ctx context.Context, f func(consumer string) error) error {
	gens, err := p.generations(ctx)
	if err != nil {
		return err
	}
	if len(gens) == 0 {
		return fmt.Errorf("projection %s: %w", p.cfg.Name, ErrNoProjection)
	}
	for _, g := range gens {
		if err := f(p.ConsumerName(g.gen)); err != nil {
			return fmt.Errorf("projection %s: consumer %s: %w", p.cfg.Name, p.ConsumerName(g.gen), err)
		}
	}
	return nil
}

// GenerationStatus is the state of one consumer generation.
type GenerationStatus struct {
	Generation int
	Consumer   string
	// Active is true for the generation that serves, false for a rebuild
	// in progress.
	Active bool
	// Pending counts journal messages not yet delivered: the lag.
	Pending uint64
	// AckPending counts messages delivered and not yet accepted.
	AckPending int
	// Redelivered counts messages delivered more than once and still
	// unacknowledged.
	Redelivered int
	// AckFloor is the stream sequence up to which every message is done.
	AckFloor uint64
	// Delivered is the stream sequence of the last message delivered.
	Delivered uint64
	// Paused reports a pause, PausedUntil its end.
	Paused      bool
	PausedUntil time.Time
	Created     time.Time
}

// Status reports every generation of the projection, oldest first. It
// fails with ErrNoProjection if the projection never ran.
func (p *Projection) Status(ctx context.Context) ([]GenerationStatus, error) {
	gens, err := p.generations(ctx)
	if err != nil {
		return nil, err
	}
	if len(gens) == 0 {
		return nil, fmt.Errorf("projection %s: %w", p.cfg.Name, ErrNoProjection)
	}
	out := make([]GenerationStatus, len(gens))
	for i, g := range gens {
		out[i] = statusOf(g, p.ConsumerName(g.gen))
	}
	return out, nil
}

func statusOf(g generation, name string) GenerationStatus {
	info := g.info
	s := GenerationStatus{
		Generation:  g.gen,
		Consumer:    name,
		Active:      g.state == stateActive,
		Pending:     info.NumPending,
		AckPending:  info.NumAckPending,
		Redelivered: info.NumRedelivered,
		AckFloor:    info.AckFloor.Stream,
		Delivered:   info.Delivered.Stream,
		Paused:      info.Paused,
		Created:     info.Created,
	}
	if info.Paused && info.Config.PauseUntil != nil {
		s.PausedUntil = *info.Config.PauseUntil
	}
	return s
}

// Delete removes every generation's consumer: the projection forgets its
// position (its Run returns an error). The sink's data is not touched.
func (p *Projection) Delete(ctx context.Context) error {
	return p.eachGeneration(ctx, func(name string) error {
		err := p.js.DeleteConsumer(ctx, p.stream, name)
		if err == jetstream.ErrConsumerNotFound {
			return nil
		}
		return err
	})
}
