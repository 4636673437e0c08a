package shoppingcart

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/sdk"
)

// Names the proxy sees in discovery for the value-entity cart.
const (
	ValueServiceName   = "com.example.shoppingcart.ValueCart"
	ValuePersistenceID = "value-cart"
)

// ValueEntity returns the definition of the value-entity cart (valuecart.proto), to pass to
// sdk.New beside Entity: the same AddItem and GetCart, but the sidecar stores the whole Cart on
// every change instead of journaling events.
func ValueEntity() sdk.Entity {
	e := sdk.NewValueEntity[*Cart](sdk.ValueEntityConfig{ServiceName: ValueServiceName, PersistenceID: ValuePersistenceID})
	sdk.HandleValueCommand(e, "AddItem", addValueItem)
	sdk.HandleValueCommand(e, "GetCart", getValueCart)
	return e
}

// addValueItem adds the item, or its quantity to the product's item already in the cart (which
// keeps its name), as the event-sourced cart does.
func addValueItem(ctx *sdk.ValueEntityContext[*Cart], in *AddLineItem) (*emptypb.Empty, error) {
	if in.GetQuantity() < 1 {
		ctx.Fail(fmt.Sprintf("Cannot add negative quantity of to item %s", in.GetProductId()))
		return nil, nil
	}
	c := ctx.State()
	if i := slices.IndexFunc(c.Items, func(it *LineItem) bool { return it.GetProductId() == in.GetProductId() }); i >= 0 {
		c.Items[i].Quantity += in.GetQuantity()
	} else {
		c.Items = append(c.Items, &LineItem{ProductId: in.GetProductId(), Name: in.GetName(), Quantity: in.GetQuantity()})
	}
	ctx.UpdateState(c)
	return &emptypb.Empty{}, nil
}

func getValueCart(ctx *sdk.ValueEntityContext[*Cart], _ *GetShoppingCart) (*Cart, error) {
	return ctx.State(), nil
}
