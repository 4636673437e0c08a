package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/proxy/model"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxMessageSize        = 12 << 20
	DefaultDrainTimeout          = 10 * time.Second
	DefaultRequestMessageTimeout = 30 * time.Second
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultBodyTimeout           = time.Minute
	DefaultIdleTimeout           = 2 * time.Minute
	DefaultMaxConcurrentStreams  = 250
	DefaultKeepaliveMinTime      = 5 * time.Minute
	DefaultKeepaliveTime         = time.Minute
	DefaultKeepaliveTimeout      = 20 * time.Second
)

// Caller runs the calls the ingress receives (the command router, package
// proxy). Its errors are mapped to a status by Status.
type Caller interface {
	// Call runs a unary call of m with the serialized request and returns
	// the reply once state changes are stored, synchronous side effects
	// have run and forwards have been followed. A reply without payload is
	// the output type's default message.
	Call(ctx context.Context, m *model.Method, request []byte, md *cloudstate.Metadata) (*cloudstate.Reply, error)
	// Stream runs a streamed (client-, server- or bidi-streaming) action
	// call of m: recv returns the client's serialized messages in order
	// (io.EOF when they end), send takes each reply in order. md is the
	// call's metadata.
	Stream(ctx context.Context, m *model.Method, md *cloudstate.Metadata, recv func() ([]byte, error), send func(*cloudstate.Reply) error) error
}

// Load counts the unary requests in flight, for the autoscaler: each from
// the arrival of its request message until its answer. Streamed calls do
// not count.
type Load interface {
	Request() (done func())
}

// Config configures the ingress.
type Config struct {
	// Model is what the ingress serves; required.
	Model *model.Model
	// Caller runs the calls; required.
	Caller Caller
	// MaxMessageSize bounds reply messages and what the HTTP transcoder
	// buffers. Default 12 MiB.
	MaxMessageSize int
	// MaxRequestSize bounds request messages (each, in a streamed call) and
	// HTTP request bodies: a larger one is refused before it is read, with
	// RESOURCE_EXHAUSTED or HTTP 413 naming the limit. Default and upper
	// bound: MaxMessageSize.
	MaxRequestSize int
	// DrainTimeout bounds how long Run lets calls in flight finish once
	// its context ends. Default 10 s.
	DrainTimeout time.Duration
	// RequestMessageTimeout bounds how long a unary call may take, once
	// opened, to send its request message; then it ends with
	// DEADLINE_EXCEEDED. Default 30 s.
	RequestMessageTimeout time.Duration
	// Load; nil: not measured.
	Load Load
	// Tracer starts a span per call, continuing the client's trace
	// context; nil: off.
	Tracer *tracing.Tracer

	// Limits on client connections (slow or idle clients, stream floods).

	// ReadHeaderTimeout bounds how long an HTTP/1 request's headers may
	// take to arrive. Default 10 s.
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds how long an HTTP request's body may take to
	// arrive, counted from when its handler starts; the calls of
	// client-streaming methods are not bounded. Default 1 min.
	BodyTimeout time.Duration
	// IdleTimeout closes a client connection that had no request in
	// flight for this long: HTTP/1 keep-alive, HTTP/2 and gRPC
	// connections (gRPC's MaxConnectionIdle, a GOAWAY). Default 2 min.
	IdleTimeout time.Duration
	// MaxConcurrentStreams bounds the requests in flight on one HTTP/2
	// connection, gRPC or not: clients queue the others (grpc-go does), or
	// they are refused (RST_STREAM REFUSED_STREAM). Default 250.
	MaxConcurrentStreams int
	// KeepaliveMinTime is how often a gRPC client may ping at most; one
	// that pings more often is disconnected (GOAWAY too_many_pings).
	// Default 5 min, grpc-go's.
	KeepaliveMinTime time.Duration
	// KeepalivePermitWithoutStream lets gRPC clients ping while they have
	// no call in flight (grpc-go's default: they may not).
	KeepalivePermitWithoutStream bool
	// KeepaliveTime is how long an HTTP/2 connection (gRPC or not) may be
	// silent before the server pings it; KeepaliveTimeout how long the
	// answer may take before the connection is closed. Defaults 1 min and
	// 20 s.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// Log; nil discards.
	Log *slog.Logger

	// sniffTimeout overrides sniffTimeout (tests).
	sniffTimeout time.Duration
}

// Server serves a user function's services on one port: native gRPC,
// gRPC-Web and HTTP/JSON (google.api.http), plus gRPC health and
// reflection.
type Server struct {
	cfg  Config
	gs   *grpc.Server
	http http.Handler
	// recvs are the goroutines waiting for unary calls' request messages
	// (recvRequest); each ends with its call.
	recvs sync.WaitGroup
}

// New builds the ingress for cfg.Model.
func New(cfg Config) (*Server, error) {
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.MaxRequestSize <= 0 || cfg.MaxRequestSize > cfg.MaxMessageSize {
		cfg.MaxRequestSize = cfg.MaxMessageSize
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.RequestMessageTimeout <= 0 {
		cfg.RequestMessageTimeout = DefaultRequestMessageTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Load == nil {
		cfg.Load = noLoad{}
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxConcurrentStreams <= 0 || cfg.MaxConcurrentStreams > math.MaxUint32 {
		cfg.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if cfg.KeepaliveMinTime <= 0 {
		cfg.KeepaliveMinTime = DefaultKeepaliveMinTime
	}
	if cfg.KeepaliveTime <= 0 {
		cfg.KeepaliveTime = DefaultKeepaliveTime
	}
	if cfg.KeepaliveTimeout <= 0 {
		cfg.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	if cfg.sniffTimeout <= 0 {
		cfg.sniffTimeout = sniffTimeout
	}
	ing := &Server{cfg: cfg}
	ing.gs = ing.grpcServer()
	h, err := ing.httpHandler(ing.gs)
	if err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	ing.http = ing.bodyTimeout(h)
	return ing, nil
}

type noLoad struct{}

func (noLoad) Request() func() { return func() {} }

// Run serves on lis until ctx ends, then stops accepting, lets the calls in
// flight finish for at most DrainTimeout, closes the rest and returns nil.
// If the listener fails first, Run closes everything and returns the
// error. lis is closed when Run returns.
func (ing *Server) Run(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{Handler: ing.http, ErrorLog: slog.NewLogLogger(ing.cfg.Log.Handler(), slog.LevelDebug)}
	ing.limitHTTP(srv)
	// HTTP/2 with prior knowledge comes here when its first request is not
	// gRPC (see splitListener).
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	split := newSplitListener(lis, ing.cfg.sniffTimeout, ing.cfg.Log)
	serveErr := make(chan error, 3)
	go func() { serveErr <- split.run() }()
	go func() { serveErr <- ing.gs.Serve(split.grpc) }()
	go func() { serveErr <- srv.Serve(split.http) }()
	select {
	case err := <-serveErr:
		split.close()
		ing.gs.Stop()
		srv.Close()
		split.wg.Wait()
		ing.recvs.Wait()
		if isClosed(err) || errors.Is(err, http.ErrServerClosed) {
			err = errors.New("listener closed")
		}
		return fmt.Errorf("ingress: %w", err)
	case <-ctx.Done():
	}
	// Stop accepting, let calls in flight finish (bounded), then close.
	split.close()
	dctx, cancel := context.WithTimeout(context.Background(), ing.cfg.DrainTimeout)
	defer cancel()
	drained := make(chan struct{})
	go func() {
		ing.gs.GracefulStop()
		_ = srv.Shutdown(dctx)
		close(drained)
	}()
	select {
	case <-drained:
	case <-dctx.Done():
		ing.gs.Stop()
		srv.Close()
	}
	split.wg.Wait()
	ing.recvs.Wait()
	return nil
}
