package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
)

const projectionUsage = `Usage: jetstate projection <command> [name] [flags]

Operates a service's projections through their consumers on the server, from
any machine, whether a projector runs or not:

  list      every projection of the service with its lag
  status    a projection's generations: lag, acknowledged and delivered positions, pause
  pause     stop delivery (-for or -until bound it; default until resume), then wait
            (up to 20 s) until a running projector has sent the events it held
  resume    lift a pause
  rebuild   replay every event from the beginning into the projection's sink, in
            place: a running projector carries on with the new generation. Empty the
            read model first (pause, reset it, rebuild, resume). For a rebuild into a
            new sink beside the serving one, run 'jetstate project -rebuild'.
  delete    forget the projection's position (the sink's data is not touched); stop
            its projector first, or it starts the projection over (at its -start)

`

// projectionConfig is what `jetstate projection` needs.
type projectionConfig struct {
	Op      string
	NATS    natsFlags
	Storage streams.Config
	Name    string
	Until   time.Time // pause: zero means until resumed
}

var projectionOps = []string{"list", "status", "pause", "resume", "rebuild", "delete"}

func parseProjection(args []string, getenv func(string) string, out io.Writer) (projectionConfig, error) {
	env := envLookup(getenv)
	var c projectionConfig
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(out, projectionUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return c, flag.ErrHelp
		}
		return c, fmt.Errorf("projection: want a command: %s", strings.Join(projectionOps, ", "))
	}
	c.Op, args = args[0], args[1:]
	known := false
	for _, op := range projectionOps {
		known = known || op == c.Op
	}
	if !known {
		fmt.Fprint(out, projectionUsage)
		return c, fmt.Errorf("projection: unknown command %q (want %s)", c.Op, strings.Join(projectionOps, ", "))
	}
	fs := flag.NewFlagSet("projection "+c.Op, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, projectionUsage)
		fs.PrintDefaults()
	}
	c.NATS.register(fs, env)
	fs.StringVar(&c.Storage.Service, "service", env("JETSTATE_SERVICE", ""), "service (required) [JETSTATE_SERVICE]")
	fs.StringVar(&c.Storage.Prefix, "prefix", env("JETSTATE_PREFIX", ""), "subject and stream prefix (default jetstate) [JETSTATE_PREFIX]")
	fs.StringVar(&c.Name, "name", env("JETSTATE_PROJECTION", ""), "projection name; may be given as the argument after the command [JETSTATE_PROJECTION]")
	var pauseFor time.Duration
	var until string
	if c.Op == "pause" {
		fs.DurationVar(&pauseFor, "for", 0, "pause for this long")
		fs.StringVar(&until, "until", "", "pause until this RFC 3339 time")
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	// The name may come first: `jetstate projection status cart-view -service shop`.
	if fs.NArg() > 0 && c.Op != "list" {
		if c.Name == "" || c.Name == env("JETSTATE_PROJECTION", "") {
			c.Name = fs.Arg(0)
			if err := fs.Parse(fs.Args()[1:]); err != nil {
				return c, err
			}
		}
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if c.Storage.Service == "" {
		errs = append(errs, errors.New("-service (or JETSTATE_SERVICE) is required"))
	} else if err := c.Storage.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Op != "list" {
		cfg := projections.Config{Storage: c.Storage, Name: c.Name}
		if c.Name == "" {
			errs = append(errs, errors.New("the projection's name is required (the argument after the command, or -name)"))
		} else if c.Storage.Service != "" {
			if err := cfg.Validate(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	switch {
	case pauseFor < 0:
		errs = append(errs, fmt.Errorf("-for %v is negative", pauseFor))
	case pauseFor > 0 && until != "":
		errs = append(errs, errors.New("give -for or -until, not both"))
	case pauseFor > 0:
		c.Until = time.Now().Add(pauseFor)
	case until != "":
		t, err := time.Parse(time.RFC3339, until)
		if err != nil {
			errs = append(errs, fmt.Errorf("-until: %w", err))
		}
		c.Until = t
	}
	return c, errors.Join(errs...)
}

func runProjection(ctx context.Context, c projectionConfig, out io.Writer) error {
	nc, err := c.NATS.connect(ctx, "jetstate projection "+c.Op, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = projectionOp(ctx, js, c, out)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("service %q is not provisioned (no stream %s)", c.Storage.Service, c.Storage.JournalStream())
	case errors.Is(err, projections.ErrNoProjection):
		return fmt.Errorf("service %q has no projection %q ('jetstate projection list -service %s' shows them)", c.Storage.Service, c.Name, c.Storage.Service)
	}
	return err
}

func projectionOp(ctx context.Context, js jetstream.JetStream, c projectionConfig, out io.Writer) error {
	if c.Op == "list" {
		list, err := projections.List(ctx, js, c.Storage)
		if err != nil {
			return err
		}
		printProjections(out, c.Storage, list)
		return nil
	}
	p, err := projections.New(js, projections.Config{Storage: c.Storage, Name: c.Name})
	if err != nil {
		return err
	}
	switch c.Op {
	case "status":
		st, err := p.Status(ctx)
		if err != nil {
			return err
		}
		printStatus(out, c, st)
	case "pause":
		if err := p.Pause(ctx, c.Until); err != nil {
			return err
		}
		if c.Until.IsZero() {
			fmt.Fprintf(out, "projection %s paused until resumed\n", c.Name)
		} else {
			fmt.Fprintf(out, "projection %s paused until %s\n", c.Name, c.Until.UTC().Format(time.RFC3339))
		}
		held, err := waitHeld(ctx, p)
		if err != nil {
			return err
		}
		if held == 0 {
			fmt.Fprintln(out, "no event in flight: the sink receives nothing more until resumed")
		} else {
			fmt.Fprintf(out, "%d events received before the pause are not acknowledged yet: a projector is still sending them, "+
				"or one that stopped holds them (they come again on resume); 'status' shows them as ACK PENDING\n", held)
		}
	case "resume":
		if err := p.Resume(ctx); err != nil {
			return err
		}
		fmt.Fprintf(out, "projection %s resumed\n", c.Name)
	case "rebuild":
		gen, err := p.Reset(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "projection %s: generation %d replays every event from the beginning (a running projector switches to it)\n", c.Name, gen)
	case "delete":
		if err := p.Delete(ctx); err != nil {
			return err
		}
		fmt.Fprintf(out, "projection %s deleted\n", c.Name)
	}
	return nil
}

// pauseWait bounds how long pause waits for a projector to send the events
// it received before the pause.
const pauseWait = 20 * time.Second

// waitHeld waits until no generation of a paused projection has events
// delivered and not acknowledged (a running projector finishes those it
// holds, up to max ack pending of them), or pauseWait passes. It returns
// how many are still held.
func waitHeld(ctx context.Context, p *projections.Projection) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, pauseWait)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	held := 0
	for {
		st, err := p.Status(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return held, nil
			}
			return 0, err
		}
		held = 0
		for _, g := range st {
			held += g.AckPending
		}
		if held == 0 {
			return 0, nil
		}
		select {
		case <-ctx.Done():
			return held, nil
		case <-t.C:
		}
	}
}

func printProjections(out io.Writer, storage streams.Config, list []projections.Summary) {
	if len(list) == 0 {
		fmt.Fprintf(out, "service %s has no projections\n", storage.Service)
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tGENERATION\tSTATE\tPENDING\tACK PENDING\tDELIVERED\tPAUSED\tTYPES")
	for _, s := range list {
		for _, g := range s.Generations {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s\n", s.Name, g.Generation, state(g), g.Pending, g.AckPending,
				g.Delivered, paused(g), entityTypes(storage, g.Filter))
		}
	}
	tw.Flush()
}

func printStatus(out io.Writer, c projectionConfig, st []projections.GenerationStatus) {
	fmt.Fprintf(out, "projection %s of service %s\n\n", c.Name, c.Storage.Service)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GENERATION\tCONSUMER\tSTATE\tPENDING\tACK PENDING\tREDELIVERED\tACK FLOOR\tDELIVERED\tPAUSED\tTYPES\tCREATED")
	for _, g := range st {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", g.Generation, g.Consumer, state(g), g.Pending, g.AckPending,
			g.Redelivered, g.AckFloor, g.Delivered, paused(g), entityTypes(c.Storage, g.Filter), g.Created.UTC().Format(time.RFC3339))
	}
	tw.Flush()
}

func state(g projections.GenerationStatus) string {
	if g.Active {
		return "active"
	}
	return "rebuilding"
}

func paused(g projections.GenerationStatus) string {
	switch {
	case !g.Paused:
		return "no"
	case g.PausedUntil.IsZero() || time.Until(g.PausedUntil) > 10*365*24*time.Hour:
		return "yes"
	}
	return "until " + g.PausedUntil.UTC().Format(time.RFC3339)
}

// entityTypes turns consumer filters back into entity types.
func entityTypes(storage streams.Config, filter []string) string {
	if storage.Prefix == "" {
		storage.Prefix = streams.DefaultPrefix
	}
	head := storage.Prefix + "." + storage.Service + "."
	var types []string
	for _, f := range filter {
		rest, ok := strings.CutPrefix(f, head)
		if !ok {
			types = append(types, f)
			continue
		}
		if rest == ">" {
			return "all"
		}
		tok := strings.TrimSuffix(rest, ".>")
		if t, err := streams.DecodeToken(tok); err == nil {
			tok = t
		}
		if q := strconv.Quote(tok); q[1:len(q)-1] != tok {
			tok = q // show an odd type unambiguously
		}
		types = append(types, tok)
	}
	return strings.Join(types, ",")
}
