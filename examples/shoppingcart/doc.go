// Package shoppingcart is the CloudState shopping cart sample written with the jetstate Go SDK:
// an event-sourced entity per user (persistence id "shopping-cart") implementing the gRPC
// service com.example.shoppingcart.ShoppingCart of shoppingcart.proto.
//
// AddItem emits ItemAdded (it fails for a quantity under 1), RemoveItem emits ItemRemoved (it
// fails for a product not in the cart), GetCart returns the cart. Items of the same product are
// merged by adding their quantities; the cart keeps the order in which products were first
// added. The state is snapshotted every 100 events (the SDK's default).
//
// ValueEntity is the same cart as a value entity (com.example.shoppingcart.ValueCart of
// valuecart.proto, persistence id "value-cart"): AddItem and GetCart, the whole Cart stored on
// every change. The multi-process benchmark (bench/e2e) drives both.
//
// The generated Go of shoppingcart.proto and valuecart.proto is in this package; that of the
// events and snapshot (persistence/domain.proto) in package persistence. cmd/shoppingcart is
// the runnable user function; it serves both carts.
package shoppingcart

//go:generate go tool -modfile=../../tools/buf/go.mod buf generate ../.. --config buf.config.yaml --template buf.gen.yaml --path shoppingcart.proto --path valuecart.proto --path persistence/domain.proto
