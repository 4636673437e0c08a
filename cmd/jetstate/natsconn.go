package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetstate/jetstate/internal/backoff"
	"github.com/jetstate/jetstate/streams/embedded"
)

// dataDir is the default data directory of the embedded server of
// `jetstate <command>` (proxy, run): <user cache>/jetstate/<command>.
func dataDir(command string) string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "jetstate", command)
	}
	return ".jetstate"
}

// natsFlags are the NATS connection settings of the commands that talk to
// an existing server (shards, project, projection).
type natsFlags struct {
	URL, Creds, NKey string
	TLS              natsTLS
	// Seeds are the embedded servers' seed files tried when the server
	// wants credentials and none were given (see connect): the one in
	// JETSTATE_DATA if set, else those in the default data directories of
	// `jetstate proxy` and `jetstate run`.
	Seeds []string
}

func (n *natsFlags) register(fs *flag.FlagSet, env func(key, def string) string) {
	fs.StringVar(&n.URL, "nats-url", env("NATS_URL", nats.DefaultURL), "NATS server(s) [NATS_URL]")
	fs.StringVar(&n.Creds, "nats-creds", env("NATS_CREDS", ""), "NATS credentials file [NATS_CREDS]")
	fs.StringVar(&n.NKey, "nats-nkey", env("NATS_NKEY", ""), "NATS nkey seed file [NATS_NKEY]; with none of these and a server on this machine that wants credentials: the embedded server's seed, <data>/"+embedded.SeedFileName+" (data: JETSTATE_DATA, else the default of 'jetstate proxy', then of 'jetstate run')")
	n.TLS.flags(fs, env)
	if dir := env("JETSTATE_DATA", ""); dir != "" {
		n.Seeds = []string{embedded.SeedFile(dir)}
	} else {
		n.Seeds = []string{embedded.SeedFile(dataDir("proxy")), embedded.SeedFile(dataDir("run"))}
	}
}

// local reports whether the settings point at an embedded server: no
// credentials or TLS files, and every URL names this machine.
func (n natsFlags) local() bool {
	if n.Creds != "" || n.NKey != "" || n.TLS != (natsTLS{}) {
		return false
	}
	for u := range strings.SplitSeq(n.URL, ",") {
		u = strings.TrimSpace(u)
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		p, err := url.Parse(u)
		if err != nil {
			return false
		}
		host := p.Hostname()
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return false
		}
	}
	return true
}

// Pacing of connect's tries while the server cannot be reached.
const (
	connectRetryMin = 100 * time.Millisecond
	connectRetryMax = 2 * time.Second
)

// connect connects to NATS with the credentials and TLS files given. When
// none are given and the server is on this machine, it connects without
// credentials, and if the server refuses that (an embedded server of
// `jetstate proxy` or `jetstate run` admits only its own nkey) with the
// seed of each embedded server in n.Seeds in turn: `make run`'s server is
// reached with no flags, and the seed never goes to a server that asks for
// none. With wait it keeps trying while the server cannot be reached, until
// ctx ends; without, it fails at once.
func (n natsFlags) connect(ctx context.Context, name string, wait bool, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := natsOptions(n.Creds, n.NKey, append([]nats.Option{nats.Name(name)}, extra...)...)
	if err != nil {
		return nil, err
	}
	opts = append(opts, n.TLS.options()...)
	if !n.local() {
		if wait {
			opts = append(opts, nats.RetryOnFailedConnect(true))
		}
		nc, err := nats.Connect(n.URL, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect %s: %w", n.URL, err)
		}
		return nc, nil
	}
	bo := backoff.Backoff{Min: connectRetryMin, Max: connectRetryMax}
	for {
		nc, err := nats.Connect(n.URL, opts...)
		switch {
		case err == nil:
			return nc, nil
		case errors.Is(err, nats.ErrAuthorization):
			return n.connectEmbedded(opts)
		case !wait || !errors.Is(err, nats.ErrNoServers):
			return nil, fmt.Errorf("connect %s: %w", n.URL, err)
		}
		if backoff.Sleep(ctx, bo.Next()) != nil {
			return nil, fmt.Errorf("connect %s: %w", n.URL, ctx.Err())
		}
	}
}

// connectEmbedded connects with the first of n.Seeds that exists and that
// the server admits.
func (n natsFlags) connectEmbedded(opts []nats.Option) (*nats.Conn, error) {
	var errs []error
	for _, seed := range n.Seeds {
		if _, err := os.Stat(seed); err != nil {
			continue
		}
		opt, err := nats.NkeyOptionFromSeed(seed)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", seed, err))
			continue
		}
		nc, err := nats.Connect(n.URL, append(opts, opt)...)
		if err == nil {
			return nc, nil
		}
		errs = append(errs, fmt.Errorf("with %s: %w", seed, err))
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("connect %s: %w: the server wants credentials (-nats-creds, -nats-nkey), and no embedded server's seed is here (%s)",
			n.URL, nats.ErrAuthorization, strings.Join(n.Seeds, ", "))
	}
	return nil, fmt.Errorf("connect %s: the server wants credentials (-nats-creds, -nats-nkey): %w", n.URL, errors.Join(errs...))
}
