package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/jetstate/jetstate/streams"
)

//go:embed templates static
var assets embed.FS

// Defaults for Config fields left zero.
const (
	DefaultFollowInterval = 2 * time.Second
	DefaultRequestTimeout = 10 * time.Second
)

// Config is what a Console shows and allows. A zero field means its
// documented default.
type Config struct {
	// Prefix is the installation's prefix (streams.Config.Prefix). Default
	// "jetstate".
	Prefix string
	// Service, if set, is the service the start page leads to; the others
	// under the prefix stay reachable.
	Service string
	// AllowWrites lets people pause, resume and rebuild projections.
	// Default false: read-only.
	AllowWrites bool
	// Descriptors decode the events of services whose sidecars stored no
	// discovery answer (and types missing from it).
	Descriptors []*descriptorpb.FileDescriptorSet
	// FollowInterval is how often an entity's page asks for new events.
	// Default 2 s.
	FollowInterval time.Duration
	// RequestTimeout bounds the NATS requests of one page. Default 10 s.
	RequestTimeout time.Duration
	// Logger receives failed pages. Nil discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = streams.DefaultPrefix
	}
	if c.FollowInterval <= 0 {
		c.FollowInterval = DefaultFollowInterval
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with the config at once.
func (c Config) Validate() error {
	var errs []error
	storage := streams.Config{Prefix: c.Prefix, Service: c.Service}
	if c.Service == "" {
		storage.Service = "x"
	}
	errs = append(errs, storage.Validate())
	if c.FollowInterval < 0 || c.RequestTimeout < 0 {
		errs = append(errs, errors.New("intervals must not be negative"))
	}
	if _, err := newResolver(nil, c.Descriptors); err != nil {
		errs = append(errs, fmt.Errorf("descriptors: %w", err))
	}
	return errors.Join(errs...)
}

// Console serves the web UI. Its Handler may serve before Run runs; load
// reports appear once Run receives them.
type Console struct {
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	pages map[string]*template.Template
	mux   *http.ServeMux

	mu    sync.Mutex
	loads map[string]map[string]loadReport // service -> member -> latest
}

// New returns a console reading through js (and its connection, for the
// load reports).
func New(cfg Config, js jetstream.JetStream) (*Console, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Console{cfg: cfg, nc: js.Conn(), js: js, loads: map[string]map[string]loadReport{}}
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// Handler serves the console's pages and its embedded assets.
func (c *Console) Handler() http.Handler {
	return http.NewCrossOriginProtection().Handler(c.mux)
}

// Run receives the sidecars' load reports until ctx ends.
func (c *Console) Run(ctx context.Context) error {
	storage := streams.Config{Prefix: c.cfg.Prefix, Service: "x"}
	sub, err := c.nc.Subscribe(storage.LoadSubjects(), c.loadReport)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", storage.LoadSubjects(), err)
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
	return nil
}

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(assets, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /{$}", c.handle(c.home))
	m.HandleFunc("GET /s/{service}/{$}", c.handle(c.servicePage))
	m.HandleFunc("GET /s/{service}/entity", c.handle(c.entityPage))
	m.HandleFunc("GET /s/{service}/entity/events", c.handle(c.entityEvents))
	m.HandleFunc("GET /s/{service}/projections", c.handle(c.projectionsPage))
	m.HandleFunc("GET /s/{service}/projections/{name}", c.handle(c.projectionPage))
	m.HandleFunc("POST /s/{service}/projections/{name}/{op}", c.handle(c.projectionOp))
	m.HandleFunc("GET /s/{service}/eventing", c.handle(c.eventingPage))
	m.HandleFunc("/", c.handle(func(http.ResponseWriter, *http.Request) error {
		return ErrNoPage
	}))
	c.mux = m
}

// handle runs a page with the request timeout and renders its error as a
// page with the error's status: never a panic, never a blank page.
func (c *Console) handle(page func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), c.cfg.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		err := page(w, r)
		if err == nil {
			return
		}
		status := httpStatus(err)
		if status >= 500 {
			c.cfg.Logger.WarnContext(ctx, "console page failed", "path", r.URL.Path, "error", err)
		}
		if r.Header.Get("HX-Request") == "true" && r.Method == http.MethodGet {
			// A poll: keep the page as it is; the next poll tries again.
			w.WriteHeader(http.StatusNoContent)
			return
		}
		c.render(w, status, "error", errorView{
			layout: c.layout(r, r.PathValue("service"), ""),
			Status: status, StatusText: http.StatusText(status), Message: err.Error(),
		})
	}
}

// layout is what every page's frame shows.
type layout struct {
	Title       string
	Prefix      string
	Service     string
	Tab         string
	AllowWrites bool
}

func (c *Console) layout(r *http.Request, service, tab string) layout {
	title := "jetstate console"
	if service != "" {
		title = service + " · " + title
	}
	return layout{Title: title, Prefix: c.cfg.Prefix, Service: service, Tab: tab, AllowWrites: c.cfg.AllowWrites}
}

type errorView struct {
	layout
	Status     int
	StatusText string
	Message    string
}

// render executes the page template into a buffer first, so that a
// template failure becomes a 500 instead of half a page.
func (c *Console) render(w http.ResponseWriter, status int, page string, data any) {
	var buf bytes.Buffer
	t := c.pages[page]
	if err := t.ExecuteTemplate(&buf, "page", data); err != nil {
		c.cfg.Logger.Error("console template", "page", page, "error", err)
		http.Error(w, "template "+page+" failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderFragment executes one named template (an htmx fragment).
func (c *Console) renderFragment(w http.ResponseWriter, page, name string, data any) {
	var buf bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&buf, name, data); err != nil {
		c.cfg.Logger.Error("console template", "page", page, "fragment", name, "error", err)
		http.Error(w, "template failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// opsView is a projection's buttons.
type opsView struct {
	Service, Name, From string
	AllowWrites, Paused bool
}

var pageNames = []string{"error", "home", "service", "entity", "projections", "projection", "eventing"}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"time": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
		},
		"join": strings.Join,
		"opsOf": func(service string, allow bool, p Projection, from string) opsView {
			return opsView{Service: service, AllowWrites: allow, Name: p.Name, Paused: p.Paused, From: from}
		},
	}
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/parts.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console templates: %w", err)
		}
		pages[name] = t
	}
	return pages, nil
}

// storage returns the streams config of the request's service, checking
// that the service is provisioned.
func (c *Console) storage(r *http.Request) (streams.Config, error) {
	s := streams.Config{Prefix: c.cfg.Prefix, Service: r.PathValue("service")}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("%w: service %q: %w", ErrUnknownService, s.Service, err)
	}
	if _, err := c.js.Stream(r.Context(), s.JournalStream()); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return s, fmt.Errorf("%w: %q is not provisioned under prefix %q (no stream %s)", ErrUnknownService, s.Service, c.cfg.Prefix, s.JournalStream())
		}
		return s, fmt.Errorf("stream %s: %w", s.JournalStream(), err)
	}
	return s, nil
}

// services lists the services provisioned under the prefix, by name.
func (c *Console) services(ctx context.Context) ([]string, error) {
	var names []string
	l := c.js.ListStreams(ctx)
	for info := range l.Info() {
		svc := info.Config.Metadata["jetstate.service"]
		if svc != "" && info.Config.Name == (streams.Config{Prefix: c.cfg.Prefix, Service: svc}).JournalStream() {
			names = append(names, svc)
		}
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	slices.Sort(names)
	return names, nil
}

type homeView struct {
	layout
	Services []string
}

// home leads to the configured service, or to the only one, or lists them.
func (c *Console) home(w http.ResponseWriter, r *http.Request) error {
	names, err := c.services(r.Context())
	if err != nil {
		return err
	}
	target := c.cfg.Service
	if target == "" && len(names) == 1 {
		target = names[0]
	}
	if target != "" && slices.Contains(names, target) {
		http.Redirect(w, r, "/s/"+target+"/", http.StatusSeeOther)
		return nil
	}
	c.render(w, http.StatusOK, "home", homeView{layout: c.layout(r, "", ""), Services: names})
	return nil
}
