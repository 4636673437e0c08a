// Command shoppingcart is the shopping cart user function. It serves the CloudState protocol
// on HOST:PORT (default 127.0.0.1:8080), where the jetstate sidecar connects to it, until it is
// interrupted; a second interrupt kills it.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/jetstate/jetstate/examples/shoppingcart"
	"github.com/jetstate/jetstate/sdk"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // the next signal kills the process
	}()
	if err := run(ctx); err != nil {
		slog.Error("shoppingcart", slog.Any("err", err))
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	srv, err := sdk.New(sdk.Config{ServiceName: "shopping-cart"}, shoppingcart.Entity(), shoppingcart.ValueEntity())
	if err != nil {
		return fmt.Errorf("shopping cart entity: %w", err)
	}
	return srv.ListenAndServe(ctx)
}
