package ingress

import (
	"io"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Limits on client connections (Config: ReadHeaderTimeout ... KeepaliveTimeout):
// slow, idle and greedy clients must not hold the sidecar's connections,
// goroutines and descriptors for ever.

// StreamWindow and ConnWindow are the HTTP/2 flow-control windows the sidecar gives its
// gRPC peers (clients at the ingress, and the user function's replies): how much a peer may
// send on one call, and on one connection, before the sidecar has read it. They are static:
// as large as grpc-go's dynamic windows grow for a fast peer within a few round trips, so a
// 4 MiB message crosses in a few windows, without the pings that estimating them costs.
const (
	StreamWindow = 1 << 20
	ConnWindow   = 8 << 20
)

// connLimits are the gRPC server's options for them.
func (ing *Server) connLimits() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(uint32(ing.cfg.MaxConcurrentStreams)),
		// Static flow-control windows: grpc-go's dynamic ones (BDP estimation) answer
		// nearly every request with a window update and a ping of their own, and the
		// client acknowledges each ping: about one more write on each side per command.
		grpc.StaticStreamWindowSize(StreamWindow),
		grpc.StaticConnWindowSize(ConnWindow),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             ing.cfg.KeepaliveMinTime,
			PermitWithoutStream: ing.cfg.KeepalivePermitWithoutStream,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: ing.cfg.IdleTimeout,
			Time:              ing.cfg.KeepaliveTime,
			Timeout:           ing.cfg.KeepaliveTimeout,
		}),
	}
}

// limitHTTP sets them on the HTTP server (HTTP/1.1 and h2c).
func (ing *Server) limitHTTP(srv *http.Server) {
	srv.ReadHeaderTimeout = ing.cfg.ReadHeaderTimeout
	srv.IdleTimeout = ing.cfg.IdleTimeout
	srv.HTTP2 = &http.HTTP2Config{
		MaxConcurrentStreams: ing.cfg.MaxConcurrentStreams,
		SendPingTimeout:      ing.cfg.KeepaliveTime,
		PingTimeout:          ing.cfg.KeepaliveTimeout,
	}
}

// bodyTimeout gives the body of each request BodyTimeout to arrive, from
// when the request reaches the handler. http.Server's ReadTimeout would not
// do: over HTTP/1.1 its deadline stays on the connection while the handler
// runs, and when it passes, net/http's background read cancels the
// request, which would end server streams (SSE) after ReadTimeout. Here the
// deadline is lifted as soon as the body has been read, and the calls of
// client-streaming methods (gRPC or Connect through the HTTP side), whose
// body is open-ended, have none.
func (ing *Server) bodyTimeout(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := ing.cfg.Model.Methods[r.URL.Path]; r.Body == nil || r.Body == http.NoBody || (m != nil && m.Desc.IsStreamingClient()) {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(ing.cfg.BodyTimeout)) != nil {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = &deadlineBody{ReadCloser: r.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline once the whole body has been read.
// A body that failed keeps it: over HTTP/1.1, net/http reads what is left
// of a body after the handler, and would wait for the rest of a trickle.
type deadlineBody struct {
	io.ReadCloser
	lift func()
	once sync.Once
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.lift)
	}
	return n, err
}
