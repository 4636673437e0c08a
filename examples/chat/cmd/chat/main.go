// Command chat is the chat sample's user function and page. It serves the CloudState protocol
// on HOST:PORT (default 127.0.0.1:8080), where the jetstate sidecar connects to it, and the page
// on -web (default 127.0.0.1:8082), passing the page's API calls on to the sidecar's HTTP port
// at -sidecar, until it is interrupted; a second interrupt kills it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/jetstate/jetstate/examples/chat"
	"github.com/jetstate/jetstate/examples/chat/web"
	"github.com/jetstate/jetstate/sdk"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // the next signal kills the process
	}()
	webAddr := flag.String("web", env("CHAT_WEB", "127.0.0.1:8082"), "address of the page [CHAT_WEB]")
	sidecar := flag.String("sidecar", env("CHAT_SIDECAR", "http://127.0.0.1:9000"), "the sidecar's HTTP/JSON ingress, where the page's API calls go [CHAT_SIDECAR]")
	flag.Parse()
	if err := run(ctx, *webAddr, *sidecar); err != nil {
		slog.Error("chat", slog.Any("err", err))
		os.Exit(1)
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, webAddr, sidecar string) error {
	api, err := url.Parse(sidecar)
	if err != nil || api.Scheme == "" || api.Host == "" {
		return fmt.Errorf("sidecar %q is not a URL like http://127.0.0.1:9000", sidecar)
	}
	entities, err := chat.Entities()
	if err != nil {
		return err
	}
	srv, err := sdk.New(sdk.Config{ServiceName: "chat"}, entities...)
	if err != nil {
		return fmt.Errorf("chat entities: %w", err)
	}
	lis, err := net.Listen("tcp", webAddr)
	if err != nil {
		return fmt.Errorf("page: %w", err)
	}
	page := &http.Server{Handler: web.Handler(api, nil), ReadHeaderTimeout: 10 * time.Second}
	slog.Info("chat page", slog.String("url", "http://"+lis.Addr().String()+"/"))

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.ListenAndServe(ctx) })
	g.Go(func() error {
		if err := page.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("page: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		// Streams stay open as long as their browsers do: close them rather than wait.
		return page.Close()
	})
	return g.Wait()
}
