package ingress

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/jetstate/jetstate/internal/backoff"
)

// http2Preface opens every HTTP/2 connection made with prior knowledge,
// which is how gRPC clients connect without TLS.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// sniffTimeout bounds how long a new connection may take to send the bytes
// that tell where it goes: an HTTP/1 connection's first bytes (it is
// dropped if none came), an HTTP/2 connection's first request (it goes to
// the native gRPC server if none came).
const sniffTimeout = 10 * time.Second

// maxSniff bounds what is read of an HTTP/2 connection to find its first
// request's headers; a connection that needs more goes to the native gRPC
// server.
const (
	maxSniff       = 64 << 10
	maxSniffFrames = 16
)

// splitListener shares one port between the native gRPC server and the
// HTTP server. A connection whose first bytes are not the HTTP/2 preface
// (HTTP/1.1 JSON, gRPC-Web, h2c upgrade) goes to HTTP as soon as the bytes
// read so far differ from the preface's. An HTTP/2 connection with prior
// knowledge is sent an empty SETTINGS frame at once (gRPC clients wait for
// the server's before they send a request) and goes by the content type of
// its first request: gRPC to the native server, anything else (HTTP/JSON
// with curl --http2-prior-knowledge, gRPC-Web, Connect) to HTTP, which
// serves h2c. Later requests on the connection go where the first went
// (the HTTP side serves gRPC too, only slower). The native server is
// measured 1.6x faster than grpc-go's ServeHTTP behind net/http at 64
// concurrent commands (BenchmarkCommand). Written here rather than taking
// cmux: cmux matches on the first request too but cannot answer the
// SETTINGS gRPC clients wait for, and it is not served by the module proxy
// here.
type splitListener struct {
	inner      net.Listener
	grpc, http *childListener
	sniff      time.Duration // see sniffTimeout
	log        *slog.Logger
	done       chan struct{}
	closeOnce  sync.Once
	wg         sync.WaitGroup
}

func newSplitListener(l net.Listener, sniff time.Duration, log *slog.Logger) *splitListener {
	s := &splitListener{inner: l, sniff: sniff, log: log, done: make(chan struct{})}
	s.grpc = &childListener{parent: s, conns: make(chan net.Conn)}
	s.http = &childListener{parent: s, conns: make(chan net.Conn)}
	return s
}

// Pacing of accept retries, as net/http's Server.Serve.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// run accepts connections until the inner listener is closed. Any other
// failure to accept (out of file descriptors, EMFILE, is the usual one)
// is logged and retried after a pause, 5 ms doubling to 1 s, as net/http
// does: a full descriptor table empties as connections end, and ending
// the sidecar over it would drop every connection it has.
func (s *splitListener) run() error {
	retry := backoff.Backoff{Min: acceptRetryMin, Max: acceptRetryMax}
	for {
		c, err := s.inner.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				s.close()
				return err
			}
			wait := retry.Next()
			s.log.Warn("ingress accept failed, retrying", "error", err, "retry_in", wait)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-s.done:
				t.Stop()
				return net.ErrClosed
			}
			continue
		}
		retry.Reset()
		s.wg.Go(func() { s.route(c) })
	}
}

// route hands c to the server its first bytes call for, with what was
// read replayed.
func (s *splitListener) route(c net.Conn) {
	deadline := time.Now().Add(s.sniff)
	_ = c.SetDeadline(deadline)
	sn := &sniffed{conn: c}
	target, h2 := s.classify(sn)
	_ = c.SetDeadline(time.Time{})
	if target == nil {
		c.Close()
		return
	}
	var r io.Reader = c
	if len(sn.buf) > 0 {
		r = io.MultiReader(bytes.NewReader(sn.buf), c)
	}
	if h2 {
		r = &settingsAckFilter{r: r, pass: len(http2Preface)}
	}
	select {
	case target.conns <- &peekedConn{Conn: c, r: r}:
	case <-s.done:
		c.Close()
	}
}

// classify reads as much of c as it takes to choose its server (nil: close
// it); h2 tells that c was sent the SETTINGS frame (see splitListener).
func (s *splitListener) classify(sn *sniffed) (target *childListener, h2 bool) {
	for len(sn.buf) < len(http2Preface) {
		if err := sn.fill(); err != nil {
			if len(sn.buf) == 0 {
				return nil, false
			}
			return s.http, false // a few bytes, then nothing: HTTP answers them
		}
		if !bytes.HasPrefix(http2Preface, sn.buf[:min(len(sn.buf), len(http2Preface))]) {
			return s.http, false
		}
	}
	if !bytes.Equal(sn.buf[:len(http2Preface)], http2Preface) {
		return s.http, false
	}
	if _, err := sn.conn.Write(emptySettings); err != nil {
		return nil, false
	}
	if grpcContentType(firstContentType(sn)) {
		return s.grpc, true
	}
	return s.http, true
}

// emptySettings is a SETTINGS frame without parameters: every setting
// keeps its initial value until the server that gets the connection sends
// its own.
var emptySettings = []byte{0, 0, 0, byte(http2.FrameSettings), 0, 0, 0, 0, 0}

// firstContentType reads an HTTP/2 connection's frames, after the preface,
// up to its first request's headers and returns their content type, or
// "application/grpc" when the client sends something else first (a PING),
// too much, nothing in time, or frames that do not parse: those go to the
// native gRPC server, where HTTP/2 with prior knowledge always went.
func firstContentType(sn *sniffed) string {
	const fallback = "application/grpc"
	sn.off = len(http2Preface)
	fr := http2.NewFramer(io.Discard, sn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = maxSniff
	for range maxSniffFrames {
		f, err := fr.ReadFrame()
		if err != nil {
			return fallback
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			for _, h := range f.RegularFields() {
				if h.Name == "content-type" { // HTTP/2 field names are lowercase
					return h.Value
				}
			}
			return ""
		case *http2.SettingsFrame, *http2.WindowUpdateFrame, *http2.PriorityFrame, *http2.UnknownFrame:
		default:
			return fallback
		}
	}
	return fallback
}

// grpcContentType tells the content types grpc-go's server serves.
func grpcContentType(ct string) bool {
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// sniffed is what was read of a connection while classifying it. Read
// serves it from off on, reading more as needed, up to maxSniff bytes.
type sniffed struct {
	conn net.Conn
	buf  []byte
	off  int
}

var errSniffedTooMuch = errors.New("ingress: too much read before the first request")

// fill reads once more from the connection.
func (s *sniffed) fill() error {
	if len(s.buf) >= maxSniff {
		return errSniffedTooMuch
	}
	if len(s.buf) == cap(s.buf) {
		s.buf = append(s.buf, make([]byte, min(max(2*cap(s.buf), 512), maxSniff)-len(s.buf))...)[:len(s.buf)]
	}
	n, err := s.conn.Read(s.buf[len(s.buf):cap(s.buf)])
	s.buf = s.buf[:len(s.buf)+n]
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

func (s *sniffed) Read(b []byte) (int, error) {
	for s.off == len(s.buf) {
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(b, s.buf[s.off:])
	s.off += n
	return n, nil
}

// settingsAckFilter passes an HTTP/2 connection's bytes through to its
// server, less the client's first SETTINGS acknowledgement, which
// acknowledges emptySettings: the server did not send that frame, and
// net/http's HTTP/2 server ends a connection that acknowledges more
// SETTINGS than it sent. Once that frame is dropped it is transparent.
type settingsAckFilter struct {
	r       io.Reader
	pass    int // bytes of the preface or the current frame still to pass
	header  [9]byte
	held    int    // bytes of the next frame header read
	out     []byte // header bytes to pass before the rest
	dropped bool
}

func (f *settingsAckFilter) Read(b []byte) (int, error) {
	for {
		switch {
		case len(f.out) > 0:
			n := copy(b, f.out)
			f.out = f.out[n:]
			return n, nil
		case f.dropped:
			return f.r.Read(b)
		case f.pass > 0:
			n, err := f.r.Read(b[:min(len(b), f.pass)])
			f.pass -= n
			return n, err
		}
		n, err := f.r.Read(f.header[f.held:])
		f.held += n
		if f.held < len(f.header) {
			if err != nil {
				return 0, err
			}
			continue
		}
		f.held = 0
		length := int(f.header[0])<<16 | int(f.header[1])<<8 | int(f.header[2])
		if http2.FrameType(f.header[3]) == http2.FrameSettings && http2.Flags(f.header[4]).Has(http2.FlagSettingsAck) && length == 0 {
			f.dropped = true
		} else {
			f.out, f.pass = f.header[:], length
		}
		if err != nil {
			return 0, err
		}
	}
}

func (s *splitListener) close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.inner.Close()
	})
}

// childListener hands out the connections routed to one server.
type childListener struct {
	parent *splitListener
	conns  chan net.Conn
}

func (l *childListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.parent.done:
		return nil, net.ErrClosed
	}
}

// Close closes the shared listener: both servers stop accepting.
func (l *childListener) Close() error {
	l.parent.close()
	return nil
}

func (l *childListener) Addr() net.Addr { return l.parent.inner.Addr() }

// peekedConn replays the bytes read while sniffing.
type peekedConn struct {
	net.Conn
	r io.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// isClosed tells a clean stop from a failure of the listener.
func isClosed(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled)
}
