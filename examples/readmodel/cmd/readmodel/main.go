// Command readmodel serves the shopping cart's read model: it receives the
// cart's CloudEvents (from `jetstate project -sink http://...`) on POST /,
// keeps the view in SQLite and answers queries over HTTP. See
// examples/readmodel/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/examples/readmodel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // the next signal kills the process
	}()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "readmodel:", err)
		}
		os.Exit(1)
	}
}

type config struct {
	Listen      string
	DB          string
	Reset       bool
	Descriptors string
	LogLevel    slog.Level
}

func parse(args []string, getenv func(string) string, out io.Writer) (config, error) {
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	var c config
	fs := flag.NewFlagSet("readmodel", flag.ContinueOnError)
	fs.SetOutput(out)
	port := env("PORT", "8081")
	fs.StringVar(&c.Listen, "listen", env("READMODEL_LISTEN", net.JoinHostPort(env("HOST", "127.0.0.1"), port)), "address to serve on [READMODEL_LISTEN, or HOST and PORT]")
	defaultDB := "readmodel.db"
	if dir, err := os.UserCacheDir(); err == nil {
		defaultDB = filepath.Join(dir, "jetstate", "readmodel.db") // beside `jetstate proxy`'s embedded store
	}
	fs.StringVar(&c.DB, "db", env("READMODEL_DB", defaultDB), "SQLite database file [READMODEL_DB]")
	fs.BoolVar(&c.Reset, "reset", false, "empty the view at start (then rebuild the projection: see the README)")
	fs.StringVar(&c.Descriptors, "write-descriptors", "", "write the cart events' FileDescriptorSet (for jetstate project -descriptors) to this file and exit")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *verbose {
		c.LogLevel = slog.LevelDebug
	}
	return c, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	c, err := parse(args, getenv, out)
	if err != nil {
		return err
	}
	if c.Descriptors != "" {
		b, err := proto.Marshal(readmodel.Descriptors())
		if err != nil {
			return err
		}
		return os.WriteFile(c.Descriptors, b, 0o644)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: c.LogLevel}))
	if err := os.MkdirAll(filepath.Dir(c.DB), 0o755); err != nil {
		return err
	}
	store, err := readmodel.Open(ctx, c.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	if c.Reset {
		if err := store.Reset(ctx); err != nil {
			return err
		}
		log.Info("view reset", "db", c.DB)
	}
	lis, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: readmodel.NewServer(store, log), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(out, "read model on http://%s (database %s)\n", lis.Addr(), c.DB)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
