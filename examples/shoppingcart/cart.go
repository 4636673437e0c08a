package shoppingcart

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/examples/shoppingcart/persistence"
	"github.com/jetstate/jetstate/sdk"
)

// Names the proxy sees in discovery.
const (
	ServiceName   = "com.example.shoppingcart.ShoppingCart"
	PersistenceID = "shopping-cart"
)

// Entity returns the definition of the shopping cart entity, to pass to sdk.New.
func Entity() sdk.Entity {
	e := sdk.NewEventSourced(sdk.EventSourcedConfig{ServiceName: ServiceName, PersistenceID: PersistenceID}, newCart)
	sdk.HandleCommand(e, "AddItem", (*cart).addItem)
	sdk.HandleCommand(e, "RemoveItem", (*cart).removeItem)
	sdk.HandleCommand(e, "GetCart", (*cart).getCart)
	sdk.HandleEvent(e, (*cart).itemAdded)
	sdk.HandleEvent(e, (*cart).itemRemoved)
	sdk.HandleSnapshot(e, (*cart).snapshot, (*cart).restore)
	return e
}

// cart is the state of one user's cart: its items in the order they were first added.
type cart struct {
	items []*persistence.LineItem
}

func newCart(string) *cart { return &cart{} }

// find returns the index of productID's item, or -1.
func (c *cart) find(productID string) int {
	return slices.IndexFunc(c.items, func(it *persistence.LineItem) bool { return it.GetProductId() == productID })
}

func (c *cart) addItem(ctx *sdk.EventSourcedContext, in *AddLineItem) (*emptypb.Empty, error) {
	if in.GetQuantity() < 1 {
		ctx.Fail(fmt.Sprintf("Cannot add negative quantity of to item %s", in.GetProductId()))
		return nil, nil
	}
	ctx.Emit(&persistence.ItemAdded{Item: &persistence.LineItem{
		ProductId: in.GetProductId(), Name: in.GetName(), Quantity: in.GetQuantity(),
	}})
	return &emptypb.Empty{}, nil
}

func (c *cart) removeItem(ctx *sdk.EventSourcedContext, in *RemoveLineItem) (*emptypb.Empty, error) {
	if c.find(in.GetProductId()) < 0 {
		ctx.Fail(fmt.Sprintf("Cannot remove item %s because it is not in the cart.", in.GetProductId()))
		return nil, nil
	}
	ctx.Emit(&persistence.ItemRemoved{ProductId: in.GetProductId()})
	return &emptypb.Empty{}, nil
}

func (c *cart) getCart(_ *sdk.EventSourcedContext, _ *GetShoppingCart) (*Cart, error) {
	out := &Cart{}
	for _, it := range c.items {
		out.Items = append(out.Items, &LineItem{ProductId: it.GetProductId(), Name: it.GetName(), Quantity: it.GetQuantity()})
	}
	return out, nil
}

// itemAdded adds the item, or its quantity to the product's item already in the cart (which
// keeps its name).
func (c *cart) itemAdded(ev *persistence.ItemAdded) error {
	item := ev.GetItem()
	if i := c.find(item.GetProductId()); i >= 0 {
		c.items[i].Quantity += item.GetQuantity()
		return nil
	}
	c.items = append(c.items, proto.Clone(item).(*persistence.LineItem))
	return nil
}

func (c *cart) itemRemoved(ev *persistence.ItemRemoved) error {
	if i := c.find(ev.GetProductId()); i >= 0 {
		c.items = slices.Delete(c.items, i, i+1)
	}
	return nil
}

func (c *cart) snapshot() (*persistence.Cart, error) {
	s := &persistence.Cart{}
	for _, it := range c.items {
		s.Items = append(s.Items, proto.Clone(it).(*persistence.LineItem))
	}
	return s, nil
}

func (c *cart) restore(s *persistence.Cart) error {
	c.items = c.items[:0]
	for _, it := range s.GetItems() {
		c.items = append(c.items, proto.Clone(it).(*persistence.LineItem))
	}
	return nil
}
