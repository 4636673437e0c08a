package readmodel

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/examples/shoppingcart/persistence"
)

// The CloudEvents types of the cart's events (their protobuf full names).
var (
	TypeItemAdded   = string((&persistence.ItemAdded{}).ProtoReflect().Descriptor().FullName())
	TypeItemRemoved = string((&persistence.ItemRemoved{}).ProtoReflect().Descriptor().FullName())
)

// Server answers CloudEvents and queries over HTTP:
//
//	POST /                  a CloudEvent (binary or structured mode)
//	GET  /carts             the carts holding items: [{"cartId","lines","quantity"}]
//	GET  /carts/{id}        a cart: {"cartId","items":[{"productId","name","quantity"}]}
//	GET  /products/top?n=5  the products added most: [{"productId","name","timesAdded","quantityAdded"}]
//	GET  /stats             {"eventsProcessed","carts","products"}
//	POST /admin/reset       empty the view and forget the events (before a rebuild)
type Server struct {
	store *Store
	log   *slog.Logger
	mux   *http.ServeMux
}

// MaxEventBytes bounds a received CloudEvent's body: a cart event is a
// few hundred bytes, and a bigger body is refused (413) unread.
const MaxEventBytes = 1 << 20

// NewServer serves store; log may be nil.
func NewServer(store *Store, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{store: store, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /{$}", s.receive)
	s.mux.HandleFunc("GET /carts", s.carts)
	s.mux.HandleFunc("GET /carts/{id}", s.cart)
	s.mux.HandleFunc("GET /products/top", s.top)
	s.mux.HandleFunc("GET /stats", s.stats)
	s.mux.HandleFunc("POST /admin/reset", s.reset)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// badEvent is an event that can never be applied: 400, dead-lettered.
type badEvent struct{ err error }

func (e badEvent) Error() string { return e.err.Error() }

// receive applies one CloudEvent: 200 once it is in the view (or was
// before, or is of a type the view ignores), 400 if it is malformed, 500
// if it could not be stored (the projection retries).
func (s *Server) receive(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxEventBytes)
	ev, err := cehttp.NewEventFromHTTPRequest(r)
	if err == nil {
		err = ev.Validate()
	}
	if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
		s.log.Warn("CloudEvent too large", "limit", MaxEventBytes)
		http.Error(w, fmt.Sprintf("CloudEvent larger than %d bytes", MaxEventBytes), http.StatusRequestEntityTooLarge)
		return
	}
	if err != nil {
		s.log.Warn("malformed CloudEvent", "error", err)
		http.Error(w, "malformed CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/cloudevents") {
		// Binary mode: attribute headers are percent-encoded (HTTP
		// binding 3.1.3.2), which sdk-go leaves to the application.
		if err := unescapeAttributes(ev); err != nil {
			http.Error(w, "malformed CloudEvent: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	ref := EventRef{Source: ev.Source(), ID: ev.ID(), Type: ev.Type()}
	change, err := decode(ev)
	var bad badEvent
	switch {
	case errors.As(err, &bad):
		s.log.Warn("bad event", "id", ref.ID, "type", ref.Type, "error", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	case change == nil:
		s.log.Info("ignoring an event of a type the view does not use", "id", ref.ID, "type", ref.Type)
		w.WriteHeader(http.StatusOK)
		return
	}
	applied, err := s.store.Apply(r.Context(), ref, change)
	if err != nil {
		s.log.Error("store", "id", ref.ID, "error", err)
		http.Error(w, "store: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if !applied {
		s.log.Debug("duplicate event ignored", "id", ref.ID)
	}
	w.WriteHeader(http.StatusOK)
}

func unescapeAttributes(ev *event.Event) error {
	for _, a := range []struct {
		name string
		get  func() string
		set  func(string)
	}{
		{"id", ev.ID, ev.SetID},
		{"type", ev.Type, ev.SetType},
		{"subject", ev.Subject, ev.SetSubject},
	} {
		v, err := url.PathUnescape(a.get())
		if err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
		a.set(v)
	}
	return nil
}

// decode turns a cart event into its change to the view; other types give
// nil. Errors are badEvent.
func decode(ev *event.Event) (any, error) {
	var msg proto.Message
	switch ev.Type() {
	case TypeItemAdded:
		msg = &persistence.ItemAdded{}
	case TypeItemRemoved:
		msg = &persistence.ItemRemoved{}
	default:
		return nil, nil
	}
	cart := ev.Subject()
	if cart == "" {
		return nil, badEvent{fmt.Errorf("event %s has no subject (the cart id)", ev.ID())}
	}
	var err error
	switch ct := ev.DataContentType(); {
	case strings.HasPrefix(ct, "application/json"):
		err = protojson.Unmarshal(ev.Data(), msg)
	case strings.HasPrefix(ct, "application/protobuf"), strings.HasPrefix(ct, "application/x-protobuf"):
		err = proto.Unmarshal(ev.Data(), msg)
	default:
		err = fmt.Errorf("content type %q: want application/json or application/protobuf", ct)
	}
	if err != nil {
		return nil, badEvent{fmt.Errorf("event %s (%s): data: %w", ev.ID(), ev.Type(), err)}
	}
	switch m := msg.(type) {
	case *persistence.ItemAdded:
		it := m.GetItem()
		if it.GetProductId() == "" {
			return nil, badEvent{fmt.Errorf("event %s: item without a product id", ev.ID())}
		}
		return ItemAdded{CartID: cart, ProductID: it.GetProductId(), Name: it.GetName(), Quantity: it.GetQuantity()}, nil
	case *persistence.ItemRemoved:
		return ItemRemoved{CartID: cart, ProductID: m.GetProductId()}, nil
	}
	return nil, nil
}

func (s *Server) carts(w http.ResponseWriter, r *http.Request) {
	v, err := s.store.Carts(r.Context())
	s.reply(w, v, err)
}

func (s *Server) cart(w http.ResponseWriter, r *http.Request) {
	v, err := s.store.Cart(r.Context(), r.PathValue("id"))
	s.reply(w, v, err)
}

func (s *Server) top(w http.ResponseWriter, r *http.Request) {
	n := 10
	if q := r.URL.Query().Get("n"); q != "" {
		var err error
		if n, err = strconv.Atoi(q); err != nil || n < 1 || n > 1000 {
			http.Error(w, "n must be a number from 1 to 1000", http.StatusBadRequest)
			return
		}
	}
	v, err := s.store.TopProducts(r.Context(), n)
	s.reply(w, v, err)
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	v, err := s.store.Stats(r.Context())
	s.reply(w, v, err)
}

func (s *Server) reset(w http.ResponseWriter, r *http.Request) {
	if err := s.store.Reset(r.Context()); err != nil {
		s.reply(w, nil, err)
		return
	}
	s.log.Info("view reset")
	s.reply(w, map[string]bool{"reset": true}, nil)
}

func (s *Server) reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		s.log.Error("query", "error", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
