package cartload_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jetstate/jetstate/examples/shoppingcart/cartload"
)

func TestCheck(t *testing.T) {
	refused := status.Error(codes.Unavailable, "sidecar is stopping")
	maybe := status.Error(codes.Unavailable, "unavailable, retry later (request abc123)")
	ops := []cartload.Op{
		{User: "u", Product: "ok", Phase: "a"},
		{User: "u", Product: "lost", Phase: "a"},
		{User: "u", Product: "twice", Phase: "a"},
		{User: "u", Product: "refused-in", Phase: "b", Err: refused},
		{User: "u", Product: "refused-out", Phase: "b", Err: refused},
		{User: "u", Product: "maybe-in", Phase: "b", Err: maybe},
		{User: "u", Product: "maybe-out", Phase: "b", Err: maybe},
		{User: "u", Product: "unclear", Phase: "b", Err: errors.New("boom")},
	}
	carts := map[string]map[string]int32{"u": {"ok": 1, "twice": 2, "refused-in": 1, "maybe-in": 1, "ghost": 1}}
	problems, phases := cartload.Check(ops, carts)
	for _, want := range []string{
		"add lost was acknowledged but is not in the cart",
		"add twice is in the cart with quantity 2",
		"add refused-in answered",
		"add unclear: unclear answer",
		"cart of u holds ghost, which was never added",
	} {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.HasPrefix(p, want) }) {
			t.Errorf("no problem %q in %q", want, problems)
		}
	}
	if len(problems) != 5 {
		t.Errorf("%d problems, want 5: %q", len(problems), problems)
	}
	if len(phases) != 2 || phases[0].Phase != "a" || phases[0].Applied != 3 || phases[1].NotApplied != 2 || phases[1].Ambiguous != 3 || phases[1].Unclear != 1 {
		t.Errorf("phases %+v", phases)
	}
	if n := phases[1].Errors["rpc error: code = Unavailable desc = unavailable, retry later"]; n != 2 {
		t.Errorf("errors by kind %v: the request ids should be dropped", phases[1].Errors)
	}
}
