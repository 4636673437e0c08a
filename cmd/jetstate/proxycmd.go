package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/proxy/eventing"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/embedded"
)

// proxyConfig is what `jetstate proxy` needs.
type proxyConfig struct {
	Proxy       proxy.Config
	NATSURL     string // empty: embedded server
	NATSCreds   string
	NATSNKey    string
	NATSTLS     natsTLS
	DataDir     string // embedded server's store
	EmbedPort   int
	AdminListen string
	Pprof       bool // net/http/pprof on the admin address
	Provision   bool
	Replicas    int
	Sync        streams.Durability // the embedded server fsyncs so; provisioning records it
	LogLevel    slog.Level
	// getenv reads the OTEL_* variables that set tracing up; nil: off.
	getenv func(string) string
}

func parseProxy(args []string, getenv func(string) string, out io.Writer) (proxyConfig, error) {
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(out)
	var c proxyConfig
	service := fs.String("service", env("JETSTATE_SERVICE", "default"), "jetstate service name: names its streams and buckets [JETSTATE_SERVICE]")
	prefix := fs.String("prefix", env("JETSTATE_PREFIX", ""), "first part of every stream, bucket and subject name (default jetstate) [JETSTATE_PREFIX]")
	httpPort, httpErr := envPort(getenv, "HTTP_PORT", 9000)
	host := fs.String("host", env("JETSTATE_HOST", ""), "ingress host to bind: an address of this machine, 0.0.0.0 or :: for every interface (default 127.0.0.1 with the embedded server: this machine only; with -nats-url every interface, as a pod's clients and probes reach its IP) [JETSTATE_HOST]")
	port := fs.String("port", httpPort, "ingress port, gRPC and HTTP/JSON [HTTP_PORT]")
	ufHost := fs.String("user-function-host", env("USER_FUNCTION_HOST", "127.0.0.1"), "user function host [USER_FUNCTION_HOST]")
	userPort, userErr := envPort(getenv, "USER_FUNCTION_PORT", 8080)
	ufPort := fs.String("user-function-port", userPort, "user function port [USER_FUNCTION_PORT]")
	fs.StringVar(&c.NATSURL, "nats-url", env("NATS_URL", ""), "NATS servers; empty starts an embedded JetStream server [NATS_URL]")
	fs.StringVar(&c.NATSCreds, "nats-creds", env("NATS_CREDS", ""), "NATS credentials file [NATS_CREDS]")
	fs.StringVar(&c.NATSNKey, "nats-nkey", env("NATS_NKEY", ""), "NATS nkey seed file [NATS_NKEY]")
	c.NATSTLS.flags(fs, env)
	fs.StringVar(&c.DataDir, "data", env("JETSTATE_DATA", dataDir("proxy")), "embedded server's data directory, with the seed of the one nkey user it admits ("+embedded.SeedFileName+", made at the first start) [JETSTATE_DATA]")
	fs.IntVar(&c.EmbedPort, "embedded-nats-port", -1, "client port of the embedded server (-1: any free port)")
	sync := fs.String("sync", env("JETSTATE_SYNC", string(streams.DurabilityFlush)), "durability: flush (fsync every 2 min: a power loss can lose the writes of the last 2 min) or always (fsync before every ack, much slower); the embedded server fsyncs so, a NATS server by its own sync_interval (provisioning records the intent) [JETSTATE_SYNC]")
	metricsPort, metricsErr := envPort(getenv, "METRICS_PORT", 9090)
	fs.StringVar(&c.AdminListen, "admin", "", "address of /ready, /alive and /metrics (default 127.0.0.1:<METRICS_PORT> with the embedded server, else :<METRICS_PORT>, every interface) [METRICS_PORT]")
	fs.BoolVar(&c.Pprof, "pprof", env("JETSTATE_PPROF", "") == "true", "serve Go's profiles (net/http/pprof) under /debug/pprof/ on the admin address, for benchmarks and diagnosis; off by default, as profiles show the process's internals and cost CPU while taken [JETSTATE_PPROF]")
	fs.BoolVar(&c.Provision, "provision", env("JETSTATE_PROVISION", "") == "true", "create or update the streams and buckets at start (always with the embedded server) [JETSTATE_PROVISION]")
	fs.IntVar(&c.Replicas, "replicas", 1, "stream replicas when provisioning: 1 or 3")
	shards := fs.Int("shards", 0, "shards of the service when provisioning, fixed once provisioned (default 100)")
	memberTTL := fs.Duration("member-ttl", 0, "when provisioning: how long a silent sidecar keeps its shards (default 6s)")
	routeTimeout := fs.Duration("route-timeout", 0, "how long a command waits for its shard to have a reachable owner (default 30s)")
	functionKeepalive := fs.Duration("function-keepalive", 0, "how often the connection to the user function is pinged while it carries calls, to notice a dead peer; at least 10s, and only as often as the function's gRPC server permits (default 5m)")
	passivation := fs.Duration("passivation-timeout", 0, "idle time before an entity is passivated (default 30s) [PASSIVATION_TIMEOUT]")
	maxActive := fs.Int("max-active-entities", 0, "most event-sourced and value entities active at once (each holds a stream to the user function); at the limit the least recently used idle one is passivated first, and with none idle a command for another is refused with RESOURCE_EXHAUSTED, retryable (default 0: no limit)")
	timeout := fs.Duration("command-timeout", 0, "how long the user function may take per command (default 1m)")
	crdtWrite := fs.Duration("crdt-write-timeout", 0, "how long a CRDT update may take to reach write consistency MAJORITY or ALL (default 5s)")
	maxRequest := fs.Int("max-request-size", 0, "largest request a client may send, in bytes (default and most: what the store takes in one write, less 1 KiB)")
	requestMessageTimeout := fs.Duration("request-message-timeout", 0, "how long a unary call may take, once opened, to send its request (default 30s)")
	readHeaderTimeout := fs.Duration("read-header-timeout", 0, "how long an HTTP/1 request's headers may take to arrive (default 10s)")
	bodyTimeout := fs.Duration("body-timeout", 0, "how long an HTTP request's body may take to arrive; client streams are not bounded (default 1m)")
	idleTimeout := fs.Duration("idle-timeout", 0, "a client connection (HTTP/1.1 keep-alive, HTTP/2, gRPC) with no request in flight for this long is closed (default 2m)")
	maxStreams := fs.Int("max-concurrent-streams", 0, "requests in flight on one HTTP/2 or gRPC client connection (default 250)")
	kaMinTime := fs.Duration("keepalive-min-time", 0, "a gRPC client pinging more often is disconnected, GOAWAY too_many_pings (default 5m)")
	kaWithoutStream := fs.Bool("keepalive-permit-without-stream", false, "let gRPC clients ping while they have no call in flight")
	kaTime := fs.Duration("keepalive-time", 0, "a client's HTTP/2 connection silent for this long is pinged (default 1m)")
	kaTimeout := fs.Duration("keepalive-timeout", 0, "a ping unanswered for this long closes the connection (default 20s)")
	evTries := fs.Int("eventing-max-tries", 0, "tries of one event before it goes to the dead-letter subject (default 10)")
	evShared := fs.Bool("eventing-shared", false, "every sidecar consumes each eventing subscription together (throughput), instead of one at a time (an entity's events in order across replicas)")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := errors.Join(httpErr, userErr, metricsErr); err != nil {
		return c, err
	}
	if v := getenv("PASSIVATION_TIMEOUT"); v != "" && *passivation == 0 {
		d, err := time.ParseDuration(v)
		if err != nil {
			return c, fmt.Errorf("PASSIVATION_TIMEOUT: %w", err)
		}
		*passivation = d
	}
	// One machine (the embedded server) listens on loopback only; a
	// sidecar on a NATS cluster (Kubernetes: the operator always sets
	// NATS_URL) on every interface, where clients, the Service and the
	// kubelet's probes reach the pod's IP.
	bindHost := ""
	if c.NATSURL == "" {
		bindHost = "127.0.0.1"
	}
	if *host == "" {
		*host = bindHost
	}
	if c.AdminListen == "" {
		c.AdminListen = net.JoinHostPort(bindHost, metricsPort)
	}
	c.Proxy = proxy.Config{
		Storage:               streams.Config{Prefix: *prefix, Service: *service},
		UserFunction:          net.JoinHostPort(*ufHost, *ufPort),
		Listen:                net.JoinHostPort(*host, *port),
		PassivationTimeout:    *passivation,
		MaxActiveEntities:     *maxActive,
		CommandTimeout:        *timeout,
		CRDTWriteTimeout:      *crdtWrite,
		RouteTimeout:          *routeTimeout,
		FunctionKeepalive:     *functionKeepalive,
		RequestMessageTimeout: *requestMessageTimeout,
		MaxRequestSize:        *maxRequest,
		Eventing:              eventing.Config{MaxTries: *evTries, Shared: *evShared},

		ReadHeaderTimeout:            *readHeaderTimeout,
		BodyTimeout:                  *bodyTimeout,
		IdleTimeout:                  *idleTimeout,
		MaxConcurrentStreams:         *maxStreams,
		KeepaliveMinTime:             *kaMinTime,
		KeepalivePermitWithoutStream: *kaWithoutStream,
		KeepaliveTime:                *kaTime,
		KeepaliveTimeout:             *kaTimeout,
	}
	if *verbose {
		c.LogLevel = slog.LevelDebug
	}
	if c.NATSURL == "" {
		c.Provision = true
		if c.NATSCreds != "" || c.NATSNKey != "" || c.NATSTLS != (natsTLS{}) {
			// The embedded server admits only its own nkey user.
			return c, errors.New("NATS credentials and TLS files need -nats-url (NATS_URL): the embedded server uses its own credentials, in -data")
		}
	}
	switch c.Sync = streams.Durability(*sync); c.Sync {
	case streams.DurabilityFlush, streams.DurabilityAlways:
	default:
		return c, fmt.Errorf("-sync must be %q or %q, not %q", streams.DurabilityFlush, streams.DurabilityAlways, *sync)
	}
	if c.Provision {
		c.Proxy.Provision = &streams.StoreConfig{Replicas: c.Replicas, Shards: *shards, MemberTTL: *memberTTL, Durability: c.Sync}
	}
	c.getenv = getenv
	return c, c.Proxy.Validate()
}

// natsOptions adds the credentials (a creds file and/or an nkey seed file)
// to opts.
func natsOptions(creds, nkey string, opts ...nats.Option) ([]nats.Option, error) {
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	if nkey != "" {
		opt, err := nats.NkeyOptionFromSeed(nkey)
		if err != nil {
			return nil, fmt.Errorf("nkey: %w", err)
		}
		opts = append(opts, opt)
	}
	return opts, nil
}

// natsTLS is the TLS material for the NATS connection, as files (the
// operator mounts them from secrets).
type natsTLS struct {
	CA, Cert, Key string
}

func (t *natsTLS) flags(fs *flag.FlagSet, env func(key, def string) string) {
	fs.StringVar(&t.CA, "nats-tls-ca", env("NATS_TLS_CA", ""), "PEM file of the CAs that sign the NATS servers' certificates [NATS_TLS_CA]")
	fs.StringVar(&t.Cert, "nats-tls-cert", env("NATS_TLS_CERT", ""), "client certificate (PEM) for mutual TLS with NATS; needs -nats-tls-key [NATS_TLS_CERT]")
	fs.StringVar(&t.Key, "nats-tls-key", env("NATS_TLS_KEY", ""), "client certificate's key (PEM) [NATS_TLS_KEY]")
}

// options are the nats.go options for the files given.
func (t natsTLS) options() []nats.Option {
	var opts []nats.Option
	if t.CA != "" {
		opts = append(opts, nats.RootCAs(t.CA))
	}
	if t.Cert != "" || t.Key != "" {
		opts = append(opts, nats.ClientCert(t.Cert, t.Key))
	}
	return opts
}

// runProxy runs the sidecar (and the embedded NATS server when no NATS_URL
// is given) until ctx is done.
func runProxy(ctx context.Context, c proxyConfig, out io.Writer) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: c.LogLevel}))
	url, nkey := c.NATSURL, c.NATSNKey
	if url == "" {
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return err
		}
		srv, err := embedded.Start(embedded.Config{Port: c.EmbedPort, StoreDir: c.DataDir, SyncAlways: c.Sync == streams.DurabilityAlways})
		if err != nil {
			return err
		}
		defer srv.Shutdown()
		url, nkey = srv.ClientURL(), srv.SeedFile()
		fmt.Fprintf(out, "embedded NATS %s with JetStream at %s (data in %s, sync: %s; clients sign in with the nkey seed %s)\n", srv.Version(), url, c.DataDir, c.Sync, nkey)
	}
	opts, err := natsOptions(c.NATSCreds, nkey, streams.ClientOptions("jetstate proxy "+c.Proxy.Storage.Service, log)...)
	if err != nil {
		return err
	}
	opts = append(opts, c.NATSTLS.options()...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := streams.CheckServer(ctx, js); err != nil {
		return err
	}

	tp, stopTracing, err := startTracing(ctx, c.getenv, "jetstate-proxy", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c.Proxy.Registry = reg
	c.Proxy.Logger = log
	c.Proxy.TracerProvider = tp
	p, err := proxy.New(c.Proxy, js)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	admin := p.AdminHandler(reg)
	if c.Pprof {
		admin = withPprof(admin)
	}
	serveAdmin(gctx, g, c.AdminListen, admin)
	g.Go(func() error {
		fmt.Fprintf(out, "sidecar for service %q: user function %s, ingress %s, admin %s\n",
			c.Proxy.Storage.Service, c.Proxy.UserFunction, c.Proxy.Listen, c.AdminListen)
		err := p.Run(gctx)
		if err == nil && ctx.Err() == nil {
			err = errors.New("sidecar stopped")
		}
		return err
	})
	return g.Wait()
}
