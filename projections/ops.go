package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams"
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
	// Filter is the consumer's subject filters: the projected entity types.
	Filter []string
	// DeadLetterSubject is where the generation's projector puts dead
	// letters; empty if unknown (a generation made before the projector recorded it).
	DeadLetterSubject string
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
		Filter:      info.Config.FilterSubjects,

		DeadLetterSubject: info.Config.Metadata[metaDeadLetter],
	}
	if len(s.Filter) == 0 && info.Config.FilterSubject != "" {
		s.Filter = []string{info.Config.FilterSubject}
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
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil
		}
		return err
	})
}

// Reset starts the projection over in place: a new generation that reads
// the journals from the beginning becomes the active one at once and
// every older generation (a rebuild in progress too) is deleted. A
// running Run carries on with the new generation, so the projection's sink
// receives every event again (with the ids it had); a rebuild's Run
// returns ErrSuperseded. A paused projection stays paused, so a read model
// can be emptied before Resume lets the replay in. Reset returns the new
// generation; it fails with ErrNoProjection if the projection never ran.
//
// Unlike Rebuild, Reset has no second sink and no overlap: the view is
// rebuilt where it is, which suits a read model that was reset (a read
// model that dedupes by event id must forget the ids it saw).
func (p *Projection) Reset(ctx context.Context) (int, error) {
	gens, err := p.generations(ctx)
	if err != nil {
		return 0, err
	}
	if len(gens) == 0 {
		return 0, fmt.Errorf("projection %s: %w", p.cfg.Name, ErrNoProjection)
	}
	gen := maxGeneration(gens) + 1
	cc := p.consumerConfig(gen, stateBuilding) // from the beginning
	cc.Metadata = p.metadata(stateActive)
	cc.Metadata[metaOrigin] = originReset
	var cur *jetstream.ConsumerInfo
	for _, g := range gens {
		if g.gen == activeGeneration(gens) {
			cur = g.info
		}
	}
	if cur != nil {
		// Keep the running projection's filters and pause.
		cc.FilterSubjects = cur.Config.FilterSubjects
		if len(cc.FilterSubjects) == 0 && cur.Config.FilterSubject != "" {
			cc.FilterSubjects = []string{cur.Config.FilterSubject}
		}
		// And its dead-letter subject: Reset is run by an operator's tool,
		// whose Config may not know it.
		if dl, ok := cur.Config.Metadata[metaDeadLetter]; ok {
			cc.Metadata[metaDeadLetter] = dl
		} else {
			delete(cc.Metadata, metaDeadLetter)
		}
		if cur.Paused && cur.Config.PauseUntil != nil {
			t := *cur.Config.PauseUntil
			cc.PauseUntil = &t
		}
	}
	if _, err := p.js.CreateConsumer(ctx, p.stream, cc); err != nil {
		return 0, fmt.Errorf("projection %s: create consumer %s: %w", p.cfg.Name, p.ConsumerName(gen), err)
	}
	for _, g := range gens {
		if err := p.js.DeleteConsumer(ctx, p.stream, p.ConsumerName(g.gen)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return 0, fmt.Errorf("projection %s: retire generation %d: %w", p.cfg.Name, g.gen, err)
		}
	}
	p.log.InfoContext(ctx, "projection reset", "generation", gen)
	return gen, nil
}

// Summary is one projection of a service, as List finds it.
type Summary struct {
	Name        string
	Generations []GenerationStatus // oldest first
}

// DeadLetterSubject is where the projection's dead letters go: the subject
// its serving generation's projector was configured with (or, without one
// serving, the newest generation's), or empty if no generation says.
func (s Summary) DeadLetterSubject() string {
	if g, ok := s.Active(); ok && g.DeadLetterSubject != "" {
		return g.DeadLetterSubject
	}
	for _, g := range slices.Backward(s.Generations) {
		if g.DeadLetterSubject != "" {
			return g.DeadLetterSubject
		}
	}
	return ""
}

// Active returns the generation that serves, if any.
func (s Summary) Active() (GenerationStatus, bool) {
	for _, g := range slices.Backward(s.Generations) {
		if g.Active {
			return g, true
		}
	}
	return GenerationStatus{}, false
}

// List returns the projections of the service storage names (Prefix and
// Service), sorted by name: every consumer of its journal stream that a
// Projection made. It fails wrapping jetstream.ErrStreamNotFound if the
// service is not provisioned.
func List(ctx context.Context, js jetstream.JetStream, storage streams.Config) ([]Summary, error) {
	if err := storage.Validate(); err != nil {
		return nil, err
	}
	name := storage.JournalStream()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("list projections: stream %s: %w", name, err)
	}
	byName := map[string]*Summary{}
	l := s.ListConsumers(ctx)
	for info := range l.Info() {
		proj := info.Config.Metadata[metaProjection]
		rest, ok := strings.CutPrefix(info.Name, proj+"-g")
		gen, err := strconv.Atoi(rest)
		if proj == "" || !ok || err != nil || gen < 1 || strconv.Itoa(gen) != rest {
			continue
		}
		sum := byName[proj]
		if sum == nil {
			sum = &Summary{Name: proj}
			byName[proj] = sum
		}
		g := generation{gen: gen, state: info.Config.Metadata[metaState], info: info}
		sum.Generations = append(sum.Generations, statusOf(g, info.Name))
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("list projections: %w", err)
	}
	out := make([]Summary, 0, len(byName))
	for _, sum := range byName {
		slices.SortFunc(sum.Generations, func(a, b GenerationStatus) int { return a.Generation - b.Generation })
		out = append(out, *sum)
	}
	slices.SortFunc(out, func(a, b Summary) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
