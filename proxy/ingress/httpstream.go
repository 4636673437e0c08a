package ingress

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/vanguard"
	"github.com/jetstate/jetstate/proxy/model"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Server-streaming methods over HTTP/JSON.
//
// vanguard's REST side serves a server stream only when its output is a
// google.api.HttpBody, and even then it buffers the whole response before
// writing it. So REST requests (see vanguardREST) go to a second transcoder, built
// like the first except that every server-streaming method is declared unary
// there, with its google.api.http rule or the default binding made explicit.
// vanguard still matches the route and decodes the path, query and body into
// the request message; it then hands the call to serveStream, which runs the
// action stream itself and writes each reply straight to the client's
// connection, flushed:
//
//   - Accept includes text/event-stream: one server-sent event per reply,
//     `data: <compact JSON>` (same JSON as unary replies);
//   - otherwise newline-delimited JSON (application/x-ndjson), one compact
//     object per line;
//   - output google.api.HttpBody: its data as raw chunks, with the content
//     type of the first reply.
//
// A failure before the first reply is answered like a unary failure (through
// vanguard and errorBody: HTTP 500 with the plain description, 400 for a bad
// request, and so on). A failure after it cannot change the status any more,
// so it ends the stream in-band: an `event: error` whose data is the
// description for SSE, a last line {"error":"<description>"} for NDJSON. A raw
// HttpBody stream has no in-band form, so its connection is aborted and the
// client sees a truncated body rather than a clean end.
//
// The gRPC protocols (gRPC, gRPC-Web, Connect) keep the first transcoder with
// the real descriptors, so their streams are untouched.

// streamRoute is a server-streaming method as the REST ingress serves it.
type streamRoute struct {
	m *model.Method
	// body is the rule's response_body field, nil for the whole message.
	// vanguard does not tell which binding matched, so the main rule's
	// response_body applies to the additional bindings too.
	body protoreflect.FieldDescriptor
	// raw: the body is a google.api.HttpBody, sent as it is.
	raw bool
}

// restTranscoder builds the transcoder for REST requests over the same
// services as the RPC one (opts), delivering unary calls to gs and the
// server-streaming ones to serveStream.
func (ing *Server) restTranscoder(gs http.Handler, types *dynamicpb.Types, opts []vanguard.ServiceOption) (*vanguard.Transcoder, error) {
	routes := map[string]*streamRoute{}
	codec := newJSONCodec(types)
	target := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt := routes[r.URL.Path]; rt != nil {
			ing.serveStream(w, r, rt, codec)
			return
		}
		gs.ServeHTTP(w, r)
	})
	opts = append(opts[:len(opts):len(opts)], vanguard.WithNoTargetCompression()) // serveStream reads plain messages
	services := make([]*vanguard.Service, 0, len(ing.cfg.Model.Services))
	for _, svc := range ing.cfg.Model.Services {
		desc, err := ing.restSchema(svc, routes)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", svc.Desc.FullName(), err)
		}
		services = append(services, vanguard.NewServiceWithSchema(desc, target, opts...))
	}
	return vanguard.NewTranscoder(services,
		vanguard.WithCodec(func(res vanguard.TypeResolver) vanguard.Codec { return newJSONCodec(res) }),
	)
}

// isServerStream reports whether m streams replies to a single request.
func isServerStream(m *model.Method) bool {
	return m.Desc.IsStreamingServer() && !m.Desc.IsStreamingClient()
}

// restSchema returns svc's descriptor for the REST transcoder: svc.Desc
// itself if it has no server-streaming method, else a copy (in a file of its
// own that imports the message types, so those stay the model's) in which
// those methods are unary and carry an explicit rule. It adds them to routes.
func (ing *Server) restSchema(svc *model.Service, routes map[string]*streamRoute) (protoreflect.ServiceDescriptor, error) {
	sdp := protodesc.ToServiceDescriptorProto(svc.Desc)
	deps := map[string]bool{}
	changed := false
	methods := svc.Desc.Methods()
	for i := range methods.Len() {
		md := methods.Get(i)
		deps[md.Input().ParentFile().Path()] = true
		deps[md.Output().ParentFile().Path()] = true
		m := svc.Methods[string(md.Name())]
		if !isServerStream(m) {
			continue
		}
		changed = true
		mp := sdp.GetMethod()[i]
		mp.ServerStreaming = nil
		if mp.Options == nil {
			mp.Options = &descriptorpb.MethodOptions{}
		}
		rule, _ := proto.GetExtension(mp.Options, annotations.E_Http).(*annotations.HttpRule)
		if rule == nil || rule.GetPattern() == nil {
			rule = &annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: m.Path}, Body: "*"}
			proto.SetExtension(mp.Options, annotations.E_Http, rule)
		}
		rt := &streamRoute{m: m}
		bodyType := md.Output()
		if name := rule.GetResponseBody(); name != "" {
			if rt.body = bodyType.Fields().ByName(protoreflect.Name(name)); rt.body == nil {
				return nil, fmt.Errorf("%s: response_body %q is not a field of %s", m.Path, name, bodyType.FullName())
			}
			bodyType = nil
			if !rt.body.IsList() && !rt.body.IsMap() {
				bodyType = rt.body.Message()
			}
		}
		rt.raw = bodyType != nil && bodyType.FullName() == "google.api.HttpBody"
		for _, b := range rule.GetAdditionalBindings() {
			if b.GetResponseBody() != rule.GetResponseBody() {
				ing.cfg.Log.Warn("a server stream over HTTP uses the main rule's response_body for every binding", "method", m.Path)
				break
			}
		}
		routes[m.Path] = rt
	}
	if !changed {
		return svc.Desc, nil
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("jetstate/rest/" + string(svc.Desc.FullName()) + ".proto"),
		Package:    proto.String(string(svc.Desc.ParentFile().Package())),
		Syntax:     proto.String("proto3"),
		Service:    []*descriptorpb.ServiceDescriptorProto{sdp},
		Dependency: slices.Sorted(maps.Keys(deps)),
	}
	fd, err := protodesc.NewFile(fdp, ing.cfg.Model.Files)
	if err != nil {
		return nil, err
	}
	return fd.Services().Get(0), nil
}

// serveStream serves a server-streaming call that the REST transcoder
// decoded and sent as a unary gRPC request (w and r are its side of it).
// The replies go to the client's own response (the *errorBody in r's
// context), which from then on drops what the transcoder writes. The call
// runs on the client's request goroutine and ends with its context, so a
// client that goes away cancels the function's stream.
func (ing *Server) serveStream(w http.ResponseWriter, r *http.Request, rt *streamRoute, codec jsonCodec) {
	resp, ok := r.Context().Value(responseKey{}).(*errorBody)
	if !ok {
		grpcError(w, status.New(codes.Internal, "stream served outside the HTTP ingress"))
		return
	}
	// One gRPC message, uncompressed (the transcoder's services do not
	// compress towards their target).
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(ing.cfg.MaxMessageSize)+5))
	if err != nil {
		grpcError(w, status.Newf(codes.InvalidArgument, "read request: %v", err))
		return
	}
	if len(body) < 5 || body[0] != 0 || int(binary.BigEndian.Uint32(body[1:])) != len(body)-5 {
		grpcError(w, status.New(codes.Internal, "transcoded request is not one uncompressed gRPC message"))
		return
	}
	markReached(r.Context())
	s := &httpStream{
		req: r, md: headerMetadata(r.Header), in: body[5:], resp: resp, route: rt, codec: codec,
		sse: acceptsEventStream(r.Header),
	}
	err = ing.stream(s, rt.m)
	switch {
	case err == nil:
		s.start(s.contentType("application/octet-stream")) // no reply at all: an empty body
	case !s.started:
		grpcError(w, Status(err))
	case r.Context().Err() == nil: // a client that went away gets nothing
		s.fail(status.Convert(err).Message())
	}
}

// httpStream is the grpc.ServerStream that stream serves a REST
// server stream through: it receives the one decoded request and writes
// each reply to the client as an event, a line or a raw chunk.
type httpStream struct {
	req     *http.Request
	md      metadata.MD
	in      []byte // the request message; nil once received
	resp    *errorBody
	route   *streamRoute
	codec   jsonCodec
	sse     bool
	started bool
	header  metadata.MD // the function's reply metadata, sent with the status
}

func (s *httpStream) Context() context.Context {
	return metadata.NewIncomingContext(s.req.Context(), s.md)
}

func (s *httpStream) RecvMsg(m any) error {
	if s.in == nil {
		return io.EOF
	}
	m.(*frame).data, s.in = s.in, nil
	return nil
}

// SendMsg writes one reply and flushes it.
func (s *httpStream) SendMsg(m any) error {
	out := dynamicpb.NewMessage(s.route.m.Desc.Output())
	if err := proto.Unmarshal(m.(*frame).data, out); err != nil {
		return status.Errorf(codes.Internal, "reply is not a %s: %v", out.Descriptor().FullName(), err)
	}
	var chunk []byte
	var err error
	switch {
	case s.route.raw:
		var body protoreflect.Message = out
		if s.route.body != nil {
			body = out.Get(s.route.body).Message()
		}
		fields := body.Descriptor().Fields()
		ct := body.Get(fields.ByName("content_type")).String()
		if ct == "" {
			ct = "application/octet-stream"
		}
		s.start(ct)
		chunk = body.Get(fields.ByName("data")).Bytes()
	case s.sse:
		s.start(s.contentType(""))
		chunk, err = s.marshal([]byte("data: "), out)
		chunk = append(chunk, "\n\n"...)
	default:
		s.start(s.contentType(""))
		chunk, err = s.marshal(nil, out)
		chunk = append(chunk, '\n')
	}
	if err != nil {
		return status.Errorf(codes.Internal, "reply to JSON: %v", err)
	}
	return s.write(chunk)
}

func (s *httpStream) marshal(base []byte, msg proto.Message) ([]byte, error) {
	if s.route.body != nil {
		return s.codec.MarshalAppendField(base, msg, s.route.body)
	}
	return s.codec.MarshalAppend(base, msg)
}

// contentType is the stream's content type; raw streams take theirs from
// the first reply, else rawDefault.
func (s *httpStream) contentType(rawDefault string) string {
	switch {
	case s.route.raw:
		return rawDefault
	case s.sse:
		return "text/event-stream"
	}
	return "application/x-ndjson"
}

// start sends the response's status and headers, once; from then on the
// transcoder's own writes are dropped.
func (s *httpStream) start(contentType string) {
	if s.started {
		return
	}
	s.started = true
	s.resp.streamed = true
	h := s.resp.ResponseWriter.Header()
	for k, vs := range s.header {
		if reservedHeader(k) {
			continue
		}
		for _, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				v = base64.RawStdEncoding.EncodeToString([]byte(v))
			}
			h.Add(k, v)
		}
	}
	h.Set("Content-Type", contentType)
	if contentType == "text/event-stream" {
		h.Set("Cache-Control", "no-cache")
	}
	s.resp.ResponseWriter.WriteHeader(http.StatusOK)
}

func (s *httpStream) write(b []byte) error {
	if _, err := s.resp.ResponseWriter.Write(b); err != nil {
		return err
	}
	return http.NewResponseController(s.resp.ResponseWriter).Flush()
}

// fail ends a started stream with a failure (see the top of this file).
func (s *httpStream) fail(description string) {
	var b []byte
	switch {
	case s.route.raw:
		s.resp.abort = true
		return
	case s.sse:
		b = append(b, "event: error\n"...)
		for line := range strings.SplitSeq(strings.ReplaceAll(strings.ReplaceAll(description, "\r\n", "\n"), "\r", "\n"), "\n") {
			b = append(append(append(b, "data: "...), line...), '\n')
		}
		b = append(b, '\n')
	default:
		b, _ = json.Marshal(struct {
			Error string `json:"error"`
		}{description})
		b = append(b, '\n')
	}
	_ = s.write(b)
}

// SetHeader keeps the metadata of the function's first reply for the HTTP
// response's headers (binary "-bin" values in base64, as gRPC sends them);
// once the stream started, headers can no longer change. Trailers do not
// reach HTTP streams.
func (s *httpStream) SetHeader(md metadata.MD) error {
	if s.started {
		return errors.New("http stream: headers already sent")
	}
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *httpStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }
func (s *httpStream) SetTrailer(metadata.MD)          {}

// reservedHeader tells the headers that the HTTP transport or the stream's
// own framing own, which reply metadata must not set, in any letter case.
func reservedHeader(k string) bool {
	k = strings.ToLower(k)
	switch k {
	case "content-type", "content-length", "transfer-encoding", "connection", "cache-control", "te", "trailer", "upgrade":
		return true
	}
	return strings.HasPrefix(k, "grpc-") || strings.HasPrefix(k, ":")
}

// acceptsEventStream tells whether an Accept header lists text/event-stream
// (with a non-zero quality).
func acceptsEventStream(h http.Header) bool {
	for _, v := range h.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt != "text/event-stream" {
				continue
			}
			if q, err := strconv.ParseFloat(params["q"], 64); params["q"] == "" || (err == nil && q > 0) {
				return true
			}
		}
	}
	return false
}

// headerMetadata turns the transcoded request's headers into the metadata
// a gRPC server would see (reserved gRPC headers dropped, -bin values
// base64-decoded).
func headerMetadata(h http.Header) metadata.MD {
	md := metadata.MD{}
	for k, vs := range h {
		k = strings.ToLower(k)
		if k == "content-type" || k == "te" || strings.HasPrefix(k, "grpc-") {
			continue
		}
		for _, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(v, "="))
				if err != nil {
					continue
				}
				v = string(b)
			}
			md.Append(k, v)
		}
	}
	return md
}

// grpcError answers the transcoder's gRPC request with a trailers-only
// failure; the transcoder turns it into the HTTP error (errorBody then makes
// the body the plain message).
func grpcError(w http.ResponseWriter, st *status.Status) { grpcErrorAs(w, "application/grpc", st) }

// grpcErrorAs is grpcError for another gRPC content type (gRPC-Web).
func grpcErrorAs(w http.ResponseWriter, contentType string, st *status.Status) {
	var msg strings.Builder
	for _, c := range []byte(st.Message()) { // gRPC's percent-encoding
		if c < ' ' || c > '~' || c == '%' {
			fmt.Fprintf(&msg, "%%%02X", c)
		} else {
			msg.WriteByte(c)
		}
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Grpc-Status", strconv.Itoa(int(st.Code())))
	h.Set("Grpc-Message", msg.String())
	w.WriteHeader(http.StatusOK)
}
