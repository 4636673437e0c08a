package console_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/console"
	"github.com/jetstate/jetstate/examples/shoppingcart"
	"github.com/jetstate/jetstate/internal/systemtest"
	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/proxy/eventing"
	"github.com/jetstate/jetstate/sdk"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// The console's tests run against real parts: an in-process NATS server,
// the shopping cart function, a sidecar in front of it and a projection
// of its journal ("cart-view") into a sink that refuses products named
// "poison" (dead letters).

const (
	service    = "shoppingcart"
	projection = "cart-view"
	cartSvc    = "/com.example.shoppingcart.ShoppingCart/"
)

type system struct {
	t    *testing.T
	js   jetstream.JetStream
	conn *grpc.ClientConn
	proj *projections.Projection

	mu       sync.Mutex
	accepted int // events the sink took
}

func startSystem(t *testing.T) *system {
	t.Helper()
	s := &system{t: t, js: streamstest.RunServer(t).JetStream(t)}
	s.conn = startSidecar(t, s.js, service, sdk.Config{ServiceName: "shopping-cart"}, shoppingcart.Entity())

	s.proj = runProjection(t, s, projection, "", func(ev *event.Event) error {
		if strings.Contains(string(ev.Data()), "poison") {
			return projections.ErrRejected
		}
		s.mu.Lock()
		s.accepted++
		s.mu.Unlock()
		return nil
	})
	return s
}

// startSidecar runs a function with entities and a sidecar for service in
// front of it (eventing events tried once), and returns a client of its
// ingress.
func startSidecar(t *testing.T, js jetstream.JetStream, service string, fcfg sdk.Config, entities ...sdk.Entity) *grpc.ClientConn {
	t.Helper()
	p := systemtest.RunSidecar(t, js, proxy.Config{
		Storage:      streams.Config{Service: service},
		Provision:    &streams.StoreConfig{},
		UserFunction: systemtest.ServeFunction(t, fcfg, entities...),
		Listen:       "127.0.0.1:0",
		Eventing:     eventing.Config{MaxTries: 1},
	})
	return systemtest.Dial(t, p.Addr().String())
}

// add adds qty of product to user's cart through the sidecar.
func (s *system) add(user, product string, qty int32) {
	s.t.Helper()
	err := s.conn.Invoke(s.t.Context(), cartSvc+"AddItem",
		&shoppingcart.AddLineItem{UserId: user, ProductId: product, Name: strings.ToUpper(product), Quantity: qty}, &emptypb.Empty{})
	if err != nil {
		s.t.Fatalf("add %s to %s's cart: %v", product, user, err)
	}
}

// projected waits until the projection delivered every journal message
// and has none in flight.
func (s *system) projected() {
	s.t.Helper()
	waitUntil(s.t, "the projection caught up", func() bool {
		st, err := s.proj.Status(s.t.Context())
		return err == nil && len(st) > 0 && st[len(st)-1].Pending == 0 && st[len(st)-1].AckPending == 0
	})
}

// paused reports whether the projection's active generation is paused.
func (s *system) paused() bool {
	s.t.Helper()
	st, err := s.proj.Status(s.t.Context())
	if err != nil {
		s.t.Fatal(err)
	}
	for _, g := range st {
		if g.Active {
			return g.Paused
		}
	}
	return false
}

// startConsole serves a console over the system's NATS server.
func startConsole(t *testing.T, js jetstream.JetStream, cfg console.Config) string {
	t.Helper()
	cfg.FollowInterval = 200 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	c, err := console.New(cfg, js)
	if err != nil {
		t.Fatal(err)
	}
	systemtest.Go(t, c.Run)
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// waitUntil polls ok (an event's visible effect) until it holds or 20 s pass.
func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runProjection runs projection name of the system's service into a sink
// calling take, with its dead letters on dead ("": the default), until
// the test ends.
func runProjection(t *testing.T, s *system, name, dead string, take func(*event.Event) error) *projections.Projection {
	t.Helper()
	p, err := projections.New(s.js, projections.Config{
		Storage: streams.Config{Service: service}, Name: name, DeadLetterSubject: dead, InfoInterval: 50 * time.Millisecond,
		Sink: projections.SinkFunc(func(_ context.Context, ev *event.Event) error { return take(ev) }),
	})
	if err != nil {
		t.Fatal(err)
	}
	systemtest.Go(t, p.Run)
	return p
}
