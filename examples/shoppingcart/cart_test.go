package shoppingcart_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/examples/shoppingcart"
	"github.com/jetstate/jetstate/examples/shoppingcart/persistence"
	"github.com/jetstate/jetstate/protocol/cloudstate"
	es "github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/sdk"
)

// The tests play the proxy's role against the cart served by the sdk over loopback gRPC, and
// compare the exact messages the user function sends.

// serve starts the cart's user function and returns a connection to it.
func serve(t *testing.T) *grpc.ClientConn {
	t.Helper()
	srv, err := sdk.New(sdk.Config{
		Logger:          slog.New(slog.NewTextHandler(t.Output(), nil)),
		ShutdownTimeout: time.Second,
	}, shoppingcart.Entity())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return conn
}

// entity is the proxy's side of one cart's stream.
type entity struct {
	t      *testing.T
	stream es.EventSourced_HandleClient
	user   string
	nextID int64
}

// open starts the stream of user's cart, with an optional snapshot at sequence snapshotSeq and
// the journal events after it.
func open(t *testing.T, conn *grpc.ClientConn, user string, snapshotSeq int64, snapshot *persistence.Cart, events ...proto.Message) *entity {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	stream, err := es.NewEventSourcedClient(conn).Handle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := &entity{t: t, stream: stream, user: user}
	init := &es.EventSourcedInit{ServiceName: shoppingcart.ServiceName, EntityId: user}
	if snapshot != nil {
		init.Snapshot = &es.EventSourcedSnapshot{SnapshotSequence: snapshotSeq, Snapshot: anyOf(snapshot)}
	}
	e.send(&es.EventSourcedStreamIn{Message: &es.EventSourcedStreamIn_Init{Init: init}})
	for i, ev := range events {
		e.send(&es.EventSourcedStreamIn{Message: &es.EventSourcedStreamIn_Event{Event: &es.EventSourcedEvent{
			Sequence: snapshotSeq + int64(i) + 1, Payload: anyOf(ev),
		}}})
	}
	return e
}

func (e *entity) send(in *es.EventSourcedStreamIn) {
	e.t.Helper()
	if err := e.stream.Send(in); err != nil {
		e.t.Fatalf("send: %v", err)
	}
}

// call sends a command and returns the reply, which must be for that command.
func (e *entity) call(name string, payload proto.Message) *es.EventSourcedReply {
	e.t.Helper()
	e.nextID++
	e.send(&es.EventSourcedStreamIn{Message: &es.EventSourcedStreamIn_Command{Command: &cloudstate.Command{
		EntityId: e.user, Id: e.nextID, Name: name, Payload: anyOf(payload),
	}}})
	out, err := e.stream.Recv()
	if err != nil {
		e.t.Fatalf("recv: %v", err)
	}
	r := out.GetReply()
	if r == nil || r.GetCommandId() != e.nextID {
		e.t.Fatalf("got %v, want the reply to command %d", out, e.nextID)
	}
	return r
}

// expect calls and compares the whole reply with want, whose command id is filled in.
func (e *entity) expect(name string, payload proto.Message, want *es.EventSourcedReply) {
	e.t.Helper()
	got := e.call(name, payload)
	want.CommandId = e.nextID
	if f := want.GetClientAction().GetFailure(); f != nil {
		f.CommandId = e.nextID
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		e.t.Fatalf("%s: unexpected reply (-want +got):\n%s", name, diff)
	}
}

// expectCart calls GetCart and compares the cart.
func (e *entity) expectCart(items ...*shoppingcart.LineItem) {
	e.t.Helper()
	e.expect("GetCart", &shoppingcart.GetShoppingCart{UserId: e.user}, &es.EventSourcedReply{ClientAction: reply(&shoppingcart.Cart{Items: items})})
}

// passivate half-closes the stream and expects the user function to end it.
func (e *entity) passivate() {
	e.t.Helper()
	if err := e.stream.CloseSend(); err != nil {
		e.t.Fatal(err)
	}
	if m, err := e.stream.Recv(); !errors.Is(err, io.EOF) {
		e.t.Fatalf("recv = %v, %v; want the end of the stream", m, err)
	}
}

func anyOf(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func reply(m proto.Message) *cloudstate.ClientAction {
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: &cloudstate.Reply{Payload: anyOf(m)}}}
}

func failure(description string) *cloudstate.ClientAction {
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: &cloudstate.Failure{Description: description}}}
}

func empty() *cloudstate.ClientAction { return reply(&emptypb.Empty{}) }

func add(user, product, name string, quantity int32) *shoppingcart.AddLineItem {
	return &shoppingcart.AddLineItem{UserId: user, ProductId: product, Name: name, Quantity: quantity}
}

func item(product, name string, quantity int32) *shoppingcart.LineItem {
	return &shoppingcart.LineItem{ProductId: product, Name: name, Quantity: quantity}
}

func pitem(product, name string, quantity int32) *persistence.LineItem {
	return &persistence.LineItem{ProductId: product, Name: name, Quantity: quantity}
}

func added(product, name string, quantity int32) *persistence.ItemAdded {
	return &persistence.ItemAdded{Item: pitem(product, name, quantity)}
}

func removed(product string) *persistence.ItemRemoved {
	return &persistence.ItemRemoved{ProductId: product}
}

func events(ms ...proto.Message) []*anypb.Any {
	var out []*anypb.Any
	for _, m := range ms {
		out = append(out, anyOf(m))
	}
	return out
}

func TestCart(t *testing.T) {
	conn := serve(t)

	t.Run("new cart is empty", func(t *testing.T) {
		e := open(t, conn, "empty", 0, nil)
		e.expectCart()
		e.passivate()
	})

	t.Run("add, merge and get", func(t *testing.T) {
		e := open(t, conn, "alice", 0, nil)
		e.expect("AddItem", add("alice", "p1", "Apple", 2), &es.EventSourcedReply{ClientAction: empty(), Events: events(added("p1", "Apple", 2))})
		e.expect("AddItem", add("alice", "p2", "Pear", 1), &es.EventSourcedReply{ClientAction: empty(), Events: events(added("p2", "Pear", 1))})
		e.expect("AddItem", add("alice", "p1", "Apple!", 3), &es.EventSourcedReply{ClientAction: empty(), Events: events(added("p1", "Apple!", 3))})
		e.expectCart(item("p1", "Apple", 5), item("p2", "Pear", 1))
		e.passivate()
	})

	t.Run("quantity under 1 fails", func(t *testing.T) {
		e := open(t, conn, "bob", 0, nil)
		e.expect("AddItem", add("bob", "p1", "Apple", -1), &es.EventSourcedReply{ClientAction: failure("Cannot add negative quantity of to item p1")})
		e.expect("AddItem", add("bob", "p1", "Apple", 0), &es.EventSourcedReply{ClientAction: failure("Cannot add negative quantity of to item p1")})
		e.expectCart()
		e.passivate()
	})

	t.Run("remove", func(t *testing.T) {
		e := open(t, conn, "carol", 0, nil)
		e.expect("RemoveItem", &shoppingcart.RemoveLineItem{UserId: "carol", ProductId: "p1"},
			&es.EventSourcedReply{ClientAction: failure("Cannot remove item p1 because it is not in the cart.")})
		e.expect("AddItem", add("carol", "p1", "Apple", 1), &es.EventSourcedReply{ClientAction: empty(), Events: events(added("p1", "Apple", 1))})
		e.expect("AddItem", add("carol", "p2", "Pear", 2), &es.EventSourcedReply{ClientAction: empty(), Events: events(added("p2", "Pear", 2))})
		e.expect("RemoveItem", &shoppingcart.RemoveLineItem{UserId: "carol", ProductId: "p1"},
			&es.EventSourcedReply{ClientAction: empty(), Events: events(removed("p1"))})
		e.expectCart(item("p2", "Pear", 2))
		e.expect("RemoveItem", &shoppingcart.RemoveLineItem{UserId: "carol", ProductId: "p1"},
			&es.EventSourcedReply{ClientAction: failure("Cannot remove item p1 because it is not in the cart.")})
		e.passivate()
	})

	t.Run("recovery from the journal", func(t *testing.T) {
		e := open(t, conn, "dave", 0, nil, added("p1", "Apple", 1), added("p2", "Pear", 2), added("p1", "Apple", 4), removed("p2"))
		e.expectCart(item("p1", "Apple", 5))
		e.passivate()
	})

	t.Run("recovery from a snapshot and events", func(t *testing.T) {
		snap := &persistence.Cart{Items: []*persistence.LineItem{pitem("p1", "Apple", 1), pitem("p2", "Pear", 2)}}
		e := open(t, conn, "erin", 100, snap, added("p3", "Fig", 3), removed("p1"))
		e.expectCart(item("p2", "Pear", 2), item("p3", "Fig", 3))
		e.passivate()
	})

	t.Run("snapshot every 100 events", func(t *testing.T) {
		e := open(t, conn, "frank", 0, nil)
		want := &persistence.Cart{}
		for i := range 100 {
			product := fmt.Sprintf("p%d", i%7)
			r := e.call("AddItem", add("frank", product, product, 1))
			if k := slices.IndexFunc(want.Items, func(it *persistence.LineItem) bool { return it.ProductId == product }); k >= 0 {
				want.Items[k].Quantity++
			} else {
				want.Items = append(want.Items, pitem(product, product, 1))
			}
			if i < 99 && r.GetSnapshot() != nil {
				t.Fatalf("snapshot after %d events", i+1)
			}
			if i == 99 {
				if diff := cmp.Diff(anyOf(want), r.GetSnapshot(), protocmp.Transform()); diff != "" {
					t.Fatalf("snapshot after 100 events (-want +got):\n%s", diff)
				}
			}
		}
		e.passivate()
	})
}

// TestDiscovery: the proxy learns the cart entity and gets every descriptor it needs to route
// and transcode HTTP, including the google.api.http options.
func TestDiscovery(t *testing.T) {
	conn := serve(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	spec, err := cloudstate.NewEntityDiscoveryClient(conn).Discover(ctx, &cloudstate.ProxyInfo{ProtocolMinorVersion: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := []*cloudstate.Entity{{EntityType: "cloudstate.eventsourced.EventSourced", ServiceName: "com.example.shoppingcart.ShoppingCart", PersistenceId: "shopping-cart"}}
	if diff := cmp.Diff(want, spec.GetEntities(), protocmp.Transform()); diff != "" {
		t.Errorf("entities (-want +got):\n%s", diff)
	}

	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(spec.GetProto(), &set); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range set.GetFile() {
		names = append(names, f.GetName())
	}
	for _, f := range []string{
		"shoppingcart/shoppingcart.proto", "shoppingcart/persistence/domain.proto", "cloudstate/entity_key.proto",
		"google/api/annotations.proto", "google/api/http.proto", "google/protobuf/descriptor.proto", "google/protobuf/empty.proto",
	} {
		if !slices.Contains(names, f) {
			t.Errorf("descriptor set lacks %s: %v", f, names)
		}
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatalf("the descriptor set does not build: %v", err)
	}
	d, err := files.FindDescriptorByName("com.example.shoppingcart.ShoppingCart.GetCart")
	if err != nil {
		t.Fatal(err)
	}
	rule := proto.GetExtension(d.(protoreflect.MethodDescriptor).Options(), annotations.E_Http).(*annotations.HttpRule)
	wantRule := &annotations.HttpRule{
		Pattern:            &annotations.HttpRule_Get{Get: "/carts/{user_id}"},
		AdditionalBindings: []*annotations.HttpRule{{Pattern: &annotations.HttpRule_Get{Get: "/carts/{user_id}/items"}, ResponseBody: "items"}},
	}
	if diff := cmp.Diff(wantRule, rule, protocmp.Transform()); diff != "" {
		t.Errorf("GetCart http rule (-want +got):\n%s", diff)
	}
}
