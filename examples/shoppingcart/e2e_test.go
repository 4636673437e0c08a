package shoppingcart_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jhump/protoreflect/grpcreflect"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/examples/shoppingcart"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/sdk"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

// system is the whole thing: NATS, the cart function and the sidecar, all
// real, on loopback.
type system struct {
	t      testing.TB
	nats   *streamstest.Server
	js     jetstream.JetStream
	ufAddr string
	addr   string // the sidecar's ingress
	conn   *grpc.ClientConn
	stop   func()
}

func startSystem(t *testing.T) *system {
	t.Helper()
	return startSystemTB(t)
}

func startSystemTB(t testing.TB) *system {
	t.Helper()
	return startSystemWith(t, shoppingcart.Entity())
}

// startSystemWith is the system with a function serving entities.
func startSystemWith(t testing.TB, entities ...sdk.Entity) *system {
	t.Helper()
	s := &system{t: t, nats: streamstest.RunServer(t)}
	s.js = s.nats.JetStream(t)
	srv, err := sdk.New(sdk.Config{ServiceName: "shopping-cart"}, entities...)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ufAddr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Serve(ctx, lis)
	t.Cleanup(cancel)
	s.startSidecar()
	return s
}

func (s *system) startSidecar() {
	t := s.t
	t.Helper()
	p, err := proxy.New(proxy.Config{
		Storage:      streams.Config{Service: "shoppingcart"},
		Provision:    &streams.StoreConfig{},
		UserFunction: s.ufAddr,
		Listen:       "127.0.0.1:0",
	}, s.js)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Serving():
	case err := <-done:
		t.Fatalf("sidecar stopped before serving: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("sidecar not serving within 20s")
	}
	s.addr = p.Addr().String()
	if s.conn, err = grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	stopped := false
	s.stop = func() {
		if !stopped {
			stopped = true
			s.conn.Close()
			cancel()
			<-done
		}
	}
	t.Cleanup(s.stop)
}

const svc = "/com.example.shoppingcart.ShoppingCart/"

func (s *system) add(user, product string, qty int32) error {
	return s.conn.Invoke(s.t.Context(), svc+"AddItem",
		&shoppingcart.AddLineItem{UserId: user, ProductId: product, Name: strings.ToUpper(product), Quantity: qty}, &emptypb.Empty{})
}

func (s *system) cart(user string) map[string]int32 {
	s.t.Helper()
	var c shoppingcart.Cart
	if err := s.conn.Invoke(s.t.Context(), svc+"GetCart", &shoppingcart.GetShoppingCart{UserId: user}, &c); err != nil {
		s.t.Fatal(err)
	}
	out := map[string]int32{}
	for _, it := range c.GetItems() {
		out[it.GetProductId()] = it.GetQuantity()
	}
	return out
}

func (s *system) http(method, path, body string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.t.Context(), method, "http://"+s.addr+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestCartOverGRPCAndHTTP(t *testing.T) {
	s := startSystem(t)
	if err := s.add("alice", "apple", 2); err != nil {
		t.Fatal(err)
	}
	if code, body := s.http("POST", "/cart/alice/items/add", `{"productId":"apple","name":"APPLE","quantity":3}`); code != 200 || body != `{}` {
		t.Fatalf("HTTP add = %d %q", code, body)
	}
	if code, body := s.http("POST", "/cart/alice/items/add", `{"productId":"pear","name":"PEAR","quantity":1}`); code != 200 {
		t.Fatalf("HTTP add = %d %q", code, body)
	}
	if code, body := s.http("GET", "/carts/alice", ""); code != 200 ||
		body != `{"items":[{"productId":"apple","name":"APPLE","quantity":5},{"productId":"pear","name":"PEAR","quantity":1}]}` {
		t.Fatalf("GET /carts/alice = %d %s", code, body)
	}
	if code, body := s.http("GET", "/carts/alice/items", ""); code != 200 ||
		body != `[{"productId":"apple","name":"APPLE","quantity":5},{"productId":"pear","name":"PEAR","quantity":1}]` {
		t.Fatalf("GET /carts/alice/items = %d %s", code, body)
	}
	if code, body := s.http("POST", "/cart/alice/items/pear/remove", ""); code != 200 {
		t.Fatalf("remove = %d %q", code, body)
	}
	if code, body := s.http("POST", "/cart/alice/items/pear/remove", ""); code != 500 || body != "Cannot remove item pear because it is not in the cart." {
		t.Fatalf("remove absent = %d %q", code, body)
	}
	err := s.add("alice", "kiwi", 0)
	if st := status.Convert(err); st.Code() != codes.Unknown || st.Message() != "Cannot add negative quantity of to item kiwi" {
		t.Fatalf("add 0 = %v", err)
	}
	if got := s.cart("alice"); len(got) != 1 || got["apple"] != 5 {
		t.Fatalf("cart = %v", got)
	}
	// An unknown user has an empty cart; defaults are emitted over HTTP.
	if code, body := s.http("GET", "/carts/nobody", ""); code != 200 || body != `{"items":[]}` {
		t.Fatalf("empty cart = %d %s", code, body)
	}
}

// TestCartSurvivesRestarts restarts the sidecar and the NATS server: the
// cart is intact, recovered from the journal.
func TestCartSurvivesRestarts(t *testing.T) {
	s := startSystem(t)
	for i := range 7 {
		if err := s.add("bob", fmt.Sprint("p", i%3), 1); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int32{"p0": 3, "p1": 2, "p2": 2}
	s.stop()
	s.nats.Restart()
	s.startSidecar()
	got := s.cart("bob")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restarts cart = %v, want %v", got, want)
	}
}

// TestRacingCommandsOnOneCart sends concurrent adds to one cart: they are
// serialized and none is lost.
func TestRacingCommandsOnOneCart(t *testing.T) {
	s := startSystem(t)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if err := s.add("carol", fmt.Sprint("p", i%2), 1); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := s.cart("carol"); got["p0"] != n/2 || got["p1"] != n/2 {
		t.Fatalf("cart = %v, want %d of each", got, n/2)
	}
}

// TestReflectionAsGrpcurlUsesIt resolves the cart service through the
// reflection client grpcurl is built on (it tries v1 and falls back to
// v1alpha), so `grpcurl -plaintext localhost:9000 list` and `describe` work.
func TestReflectionAsGrpcurlUsesIt(t *testing.T) {
	s := startSystem(t)
	rc := grpcreflect.NewClientAuto(t.Context(), s.conn)
	defer rc.Reset()
	services, err := rc.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(services) != "[grpc.reflection.v1alpha.ServerReflection com.example.shoppingcart.ShoppingCart]" {
		t.Fatalf("services %v", services)
	}
	sd, err := rc.ResolveService(shoppingcart.ServiceName)
	if err != nil {
		t.Fatal(err)
	}
	var methods []string
	for _, m := range sd.GetMethods() {
		methods = append(methods, m.GetName()+"("+m.GetInputType().GetName()+")")
	}
	if got := strings.Join(methods, " "); got != "AddItem(AddLineItem) RemoveItem(RemoveLineItem) GetCart(GetShoppingCart)" {
		t.Fatalf("methods %s", got)
	}
}
