package console

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
)

// Generation is one consumer generation of a projection as a page shows it.
type Generation struct {
	projections.GenerationStatus
	State  string // "active" or "rebuilding"
	Paused string // "no", "yes" or "until <time>"
	Types  string
}

// Projection is one projection as a page shows it.
type Projection struct {
	Name        string
	Generations []Generation
	Paused      bool // its active generation is paused
	DeadLetters uint64
	DeadSubject string
	DeadStream  string // the stream storing DeadSubject, "" if none
}

func generationOf(storage streams.Config, g projections.GenerationStatus) Generation {
	out := Generation{GenerationStatus: g, State: "rebuilding", Paused: "no", Types: entityTypes(storage, g.Filter)}
	if g.Active {
		out.State = "active"
	}
	switch {
	case !g.Paused:
	case g.PausedUntil.IsZero() || time.Until(g.PausedUntil) > 10*365*24*time.Hour:
		out.Paused = "yes"
	default:
		out.Paused = "until " + g.PausedUntil.UTC().Format(time.RFC3339)
	}
	return out
}

// entityTypes turns consumer filters back into entity types.
func entityTypes(storage streams.Config, filter []string) string {
	all := storage.JournalSubjects()
	var types []string
	for _, f := range filter {
		if f == all {
			return "all"
		}
		if e, err := storage.ParseSubject(f); err == nil && e.Key == ">" {
			types = append(types, e.Type)
			continue
		}
		types = append(types, f)
	}
	if len(types) == 0 {
		return "all"
	}
	return fmt.Sprint(types)
}

// deadLetterSubject is where projection s puts its dead letters: the
// subject its projector records in its consumer (`jetstate project
// -dead-letter`), or by default projections.Config.DeadLetterSubject's
// default.
func deadLetterSubject(storage streams.Config, s projections.Summary) string {
	if subject := s.DeadLetterSubject(); subject != "" {
		return subject
	}
	prefix := storage.Prefix
	if prefix == "" {
		prefix = streams.DefaultPrefix
	}
	return prefix + "_deadletter." + storage.Service + "." + s.Name
}

type projectionsView struct {
	layout
	Projections []Projection
}

func (c *Console) projectionsPage(w http.ResponseWriter, r *http.Request) error {
	storage, err := c.storage(r)
	if err != nil {
		return err
	}
	list, err := projections.List(r.Context(), c.js, storage)
	if err != nil {
		return err
	}
	v := projectionsView{layout: c.layout(r, storage.Service, "projections")}
	for _, s := range list {
		p := Projection{Name: s.Name, DeadSubject: deadLetterSubject(storage, s)}
		for _, g := range s.Generations {
			p.Generations = append(p.Generations, generationOf(storage, g))
		}
		if g, ok := s.Active(); ok {
			p.Paused = g.Paused
		}
		var stream jetstream.Stream
		if stream, p.DeadLetters, err = c.deadLetterCount(r.Context(), p.DeadSubject); err != nil {
			return err
		}
		p.DeadStream = streamName(stream)
		v.Projections = append(v.Projections, p)
	}
	c.render(w, http.StatusOK, "projections", v)
	return nil
}

type projectionView struct {
	layout
	Projection
	Dead []DeadLetter
}

func (c *Console) projection(r *http.Request) (streams.Config, *projections.Projection, error) {
	storage, err := c.storage(r)
	if err != nil {
		return storage, nil, err
	}
	p, err := projections.New(c.js, projections.Config{Storage: storage, Name: r.PathValue("name")})
	if err != nil {
		return storage, nil, fmt.Errorf("%w: projection %.64q: %w", ErrBadInput, r.PathValue("name"), err)
	}
	return storage, p, nil
}

// projectionPage shows one projection's generations and dead letters.
func (c *Console) projectionPage(w http.ResponseWriter, r *http.Request) error {
	storage, p, err := c.projection(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	st, err := p.Status(ctx)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	v := projectionView{layout: c.layout(r, storage.Service, "projections"),
		Projection: Projection{Name: name, DeadSubject: deadLetterSubject(storage, projections.Summary{Name: name, Generations: st})}}
	for _, g := range st {
		v.Generations = append(v.Generations, generationOf(storage, g))
		if g.Active {
			v.Paused = g.Paused
		}
	}
	in, err := c.info(ctx, storage)
	if err != nil {
		return err
	}
	if v.Dead, v.DeadLetters, v.DeadStream, err = c.deadLetters(ctx, storage, v.DeadSubject, in.Resolver); err != nil {
		return err
	}
	c.render(w, http.StatusOK, "projection", v)
	return nil
}

// projectionOp pauses, resumes or rebuilds a projection, as `jetstate
// projection` does, and goes back to the page it came from.
func (c *Console) projectionOp(w http.ResponseWriter, r *http.Request) error {
	if !c.cfg.AllowWrites {
		return ErrReadOnly
	}
	op := r.PathValue("op")
	if op != "pause" && op != "resume" && op != "rebuild" {
		return fmt.Errorf("%w: unknown operation %.32q (pause, resume or rebuild)", ErrBadInput, op)
	}
	storage, p, err := c.projection(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	switch op {
	case "pause":
		err = p.Pause(ctx, time.Time{})
	case "resume":
		err = p.Resume(ctx)
	case "rebuild":
		_, err = p.Reset(ctx)
	}
	if err != nil {
		return err
	}
	c.cfg.Logger.InfoContext(ctx, "projection changed from the console", "service", storage.Service, "projection", r.PathValue("name"), "operation", op)
	back := "/s/" + url.PathEscape(storage.Service) + "/projections"
	if r.FormValue("from") == "projection" {
		back += "/" + url.PathEscape(r.PathValue("name"))
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
	return nil
}
