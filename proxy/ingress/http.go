package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"

	"connectrpc.com/vanguard"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// httpHandler serves what is not native gRPC (see splitListener) through a
// vanguard transcoder that turns HTTP/JSON per the methods' google.api.http
// rules (and the
// the reference proxy's default binding `POST /<service>/<method>` with
// body "*" for methods that have no rule) and gRPC-Web into gRPC calls
// on the same server, so that routing is identical for all of them.
//
// vanguard serves because it reads the rules from the discovered (dynamic)
// descriptors, supports additional_bindings, response_body, path templates,
// query parameters and HttpBody. Two things are adjusted to match the
// reference proxy: JSON is written with default values but without unset
// message fields, compactly; and errors of HTTP/JSON calls have the plain
// failure description as their body rather than a JSON status.
//
// REST requests go to a second transcoder that serves server-streaming
// methods as SSE or newline-delimited JSON (httpstream.go); the RPC
// protocols keep this one.
func (ing *Server) httpHandler(gs *grpc.Server) (http.Handler, error) {
	types := dynamicpb.NewTypes(ing.cfg.Model.Files)
	opts := []vanguard.ServiceOption{
		vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
		vanguard.WithTargetCodecs(vanguard.CodecProto), // our gRPC server takes protobuf only
		vanguard.WithTypeResolver(types),
		vanguard.WithMaxMessageBufferBytes(uint32(ing.cfg.MaxMessageSize)),
	}
	services := make([]*vanguard.Service, 0, len(ing.cfg.Model.Services))
	// Methods without a rule get the reference proxy's default binding
	// POST /<service>/<method> with body "*". That is exactly a Connect
	// unary call with a JSON body, which vanguard serves once the request
	// says it is one. (vanguard's WithRules matches selectors by prefix, so
	// a rule for Get would also land on GetAll.) Server streams get theirs
	// in the REST transcoder.
	defaults := map[string]bool{}
	for path, m := range ing.cfg.Model.Methods {
		if isServerStream(m) {
			continue
		}
		if opts := m.Desc.Options(); opts == nil || !proto.HasExtension(opts, annotations.E_Http) {
			defaults[path] = true
		}
	}
	for _, svc := range ing.cfg.Model.Services {
		services = append(services, vanguard.NewServiceWithSchema(svc.Desc, gs, opts...))
	}
	tc, err := vanguard.NewTranscoder(services,
		vanguard.WithCodec(func(res vanguard.TypeResolver) vanguard.Codec { return newJSONCodec(res) }),
	)
	if err != nil {
		return nil, err
	}
	rest, err := ing.restTranscoder(gs, types, opts)
	if err != nil {
		return nil, err
	}
	queries, err := newRESTQueries(ing.cfg.Model)
	if err != nil {
		return nil, err
	}
	return grpcWebText(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("K-Network-Probe") == "queue" { // Knative's queue-proxy probe
			_, _ = w.Write([]byte("queue"))
			return
		}
		ct := r.Header.Get("Content-Type")
		if strings.HasPrefix(ct, "application/grpc-web") && ing.cfg.Model.Methods[r.URL.Path] == nil {
			// As gRPC answers (vanguard would say 404 Not Found).
			grpcErrorAs(w, ct, status.Newf(codes.Unimplemented, "unknown method %s", r.URL.Path))
			return
		}
		if r.Method == http.MethodPost && defaults[r.URL.Path] && r.Header.Get("Connect-Protocol-Version") == "" &&
			strings.HasPrefix(ct, "application/json") {
			r.Header.Set("Connect-Protocol-Version", "1")
		}
		if queries.refused(w, r) { // a query parameter must not override the path or the body
			return
		}
		ew := &errorBody{ResponseWriter: w}
		if ing.limitBody(w, r, ew) {
			return
		}
		next := tc
		if vanguardREST(r) {
			next = rest
		}
		next.ServeHTTP(ew, r.WithContext(context.WithValue(r.Context(), responseKey{}, ew)))
		ew.finish()
		if ew.abort {
			panic(http.ErrAbortHandler) // a raw stream failed: the client must not see a clean end
		}
	}), int64(ing.cfg.MaxRequestSize)), nil
}

// jsonCodec is vanguard's JSON codec writing like the reference proxy
// (Java JsonFormat with default values): lowerCamelCase names, default
// scalars and empty lists emitted, unset message fields omitted, compact.
type jsonCodec struct{ *vanguard.JSONCodec }

func newJSONCodec(res vanguard.TypeResolver) jsonCodec {
	c := vanguard.NewJSONCodec(res)
	c.MarshalOptions.EmitUnpopulated = false
	c.MarshalOptions.EmitDefaultValues = true
	return jsonCodec{c}
}

func (c jsonCodec) MarshalAppend(base []byte, msg proto.Message) ([]byte, error) {
	b, err := c.JSONCodec.MarshalAppend(nil, msg)
	if err != nil {
		return nil, err
	}
	return compactAppend(base, b)
}

func (c jsonCodec) MarshalAppendField(base []byte, msg proto.Message, field protoreflect.FieldDescriptor) ([]byte, error) {
	b, err := c.JSONCodec.MarshalAppendField(nil, msg, field)
	if err != nil {
		return nil, err
	}
	return compactAppend(base, b)
}

// compactAppend removes the insignificant spaces protojson inserts.
func compactAppend(base, b []byte) ([]byte, error) {
	buf := bytes.NewBuffer(base)
	if err := json.Compact(buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// errorBody rewrites JSON error bodies of HTTP/JSON calls into the plain
// error message, as the reference proxy answers (HTTP 500 with the failure
// description). Successful responses pass through untouched.
type errorBody struct {
	http.ResponseWriter
	status  int
	hold    bool // an error body is being buffered
	buf     bytes.Buffer
	reached atomic.Bool // the request got to handleGRPC whole
	// streamed: a server stream writes to ResponseWriter itself (on the
	// request's goroutine) and what the transcoder writes is dropped.
	streamed bool
	abort    bool // end the response by aborting the connection
	// tooLarge: the request, or what it would have stored, is over a size
	// limit; its RESOURCE_EXHAUSTED is 413, not vanguard's 429 (busy).
	tooLarge atomic.Bool
}

// responseKey marks, in a transcoded request's context, the client's
// *errorBody: handleGRPC sets its reached flag once it has the request
// message (a failure before that is the request's fault, a body that does
// not decode, which vanguard reports as UNKNOWN), and serveStream writes
// server streams to it.
type responseKey struct{}

// markReached records that a transcoded request arrived whole.
func markReached(ctx context.Context) {
	if e, ok := ctx.Value(responseKey{}).(*errorBody); ok {
		e.reached.Store(true)
	}
}

func (e *errorBody) WriteHeader(code int) {
	if e.status != 0 || e.streamed {
		return
	}
	e.status = code
	e.hold = code >= 400 && strings.Contains(e.Header().Get("Content-Type"), "json")
	if !e.hold {
		e.ResponseWriter.WriteHeader(code)
	}
}

func (e *errorBody) Write(b []byte) (int, error) {
	if e.streamed {
		return len(b), nil
	}
	if e.status == 0 {
		e.WriteHeader(http.StatusOK)
	}
	if e.hold {
		return e.buf.Write(b)
	}
	return e.ResponseWriter.Write(b)
}

// Flush lets streamed (server-sent) responses through.
func (e *errorBody) Flush() {
	if f, ok := e.ResponseWriter.(http.Flusher); ok && !e.hold && !e.streamed {
		f.Flush()
	}
}

// finish writes a held error. The gRPC handler behind the transcoder may
// have set its own headers since, so the error's are set afresh.
func (e *errorBody) finish() {
	if !e.hold {
		return
	}
	var st struct {
		Message string `json:"message"`
	}
	msg := e.buf.String()
	if json.Unmarshal(e.buf.Bytes(), &st) == nil && st.Message != "" {
		msg = st.Message
	}
	if e.status == http.StatusInternalServerError && !e.reached.Load() {
		e.status = http.StatusBadRequest
	}
	if e.tooLarge.Load() {
		e.status = http.StatusRequestEntityTooLarge
	}
	h := e.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	e.ResponseWriter.WriteHeader(e.status)
	_, _ = e.ResponseWriter.Write([]byte(msg))
}
