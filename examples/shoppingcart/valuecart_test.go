package shoppingcart_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/examples/shoppingcart"
)

// TestValueCartOverGRPCAndHTTP drives the value-entity cart through the
// real sidecar: adds merge by product, a quantity under 1 fails, and the
// stored cart survives a restart of the sidecar and of NATS.
func TestValueCartOverGRPCAndHTTP(t *testing.T) {
	s := startSystemWith(t, shoppingcart.Entity(), shoppingcart.ValueEntity())
	const vsvc = "/" + shoppingcart.ValueServiceName + "/"
	add := func(user, product string, qty int32) error {
		return s.conn.Invoke(t.Context(), vsvc+"AddItem",
			&shoppingcart.AddLineItem{UserId: user, ProductId: product, Name: "Apple", Quantity: qty}, &emptypb.Empty{})
	}
	if err := add("carol", "apple", 2); err != nil {
		t.Fatal(err)
	}
	if code, body := s.http("POST", "/value-cart/carol/items/add", `{"productId":"apple","name":"Apple","quantity":3}`); code != 200 || body != `{}` {
		t.Fatalf("HTTP add = %d %q", code, body)
	}
	if code, body := s.http("POST", "/value-cart/carol/items/add", `{"productId":"pear","name":"Pear","quantity":1}`); code != 200 {
		t.Fatalf("HTTP add = %d %q", code, body)
	}
	err := add("carol", "kiwi", 0)
	if st := status.Convert(err); st.Code() != codes.Unknown || st.Message() != "Cannot add negative quantity of to item kiwi" {
		t.Fatalf("add 0 = %v", err)
	}
	const want = `{"items":[{"productId":"apple","name":"Apple","quantity":5},{"productId":"pear","name":"Pear","quantity":1}]}`
	if code, body := s.http("GET", "/value-carts/carol", ""); code != 200 || body != want {
		t.Fatalf("GET /value-carts/carol = %d %s, want %s", code, body, want)
	}
	// The event-sourced cart of the same user is another entity.
	if code, body := s.http("GET", "/carts/carol", ""); code != 200 || body != `{"items":[]}` {
		t.Fatalf("GET /carts/carol = %d %s", code, body)
	}
	s.stop()
	s.nats.Restart()
	s.startSidecar()
	if code, body := s.http("GET", "/value-carts/carol", ""); code != 200 || body != want {
		t.Fatalf("after restarts GET /value-carts/carol = %d %s, want %s", code, body, want)
	}
}
