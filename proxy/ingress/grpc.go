package ingress

import (
	"context"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/proxy/model"
)

// frame is a gRPC message passed through without decoding.
type frame struct{ data []byte }

// codec passes frames through as raw bytes and (un)marshals everything
// else (health, reflection) as protobuf. It lets one server serve methods
// it has no generated code for.
type codec struct{}

func (codec) Marshal(v any) ([]byte, error) {
	if f, ok := v.(*frame); ok {
		return f.data, nil
	}
	return proto.Marshal(v.(proto.Message))
}

func (codec) Unmarshal(data []byte, v any) error {
	if f, ok := v.(*frame); ok {
		f.data = append([]byte(nil), data...) // gRPC may reuse its buffer
		return nil
	}
	return proto.Unmarshal(data, v.(proto.Message))
}

func (codec) Name() string { return "proto" }

// grpcServer builds the ingress: every discovered method through one
// generic handler, plus gRPC health and reflection.
func (ing *Server) grpcServer() *grpc.Server {
	gs := grpc.NewServer(append(ing.connLimits(),
		grpc.ForceServerCodec(codec{}),
		grpc.MaxRecvMsgSize(ing.cfg.MaxRequestSize), // checked on the length prefix, before the message is read
		grpc.MaxSendMsgSize(ing.cfg.MaxMessageSize),
		grpc.UnknownServiceHandler(ing.handleGRPC),
	)...)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for name := range ing.cfg.Model.Services {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(gs, hs)
	rpb.RegisterServerReflectionServer(gs, reflection{model: ing.cfg.Model})
	return gs
}

// handleGRPC serves one call to a discovered method.
func (ing *Server) handleGRPC(_ any, stream grpc.ServerStream) error {
	path, ok := grpc.MethodFromServerStream(stream)
	m := ing.cfg.Model.Methods[path]
	if !ok || m == nil {
		return status.Errorf(codes.Unimplemented, "unknown method %s", path)
	}
	if m.Desc.IsStreamingClient() || m.Desc.IsStreamingServer() {
		// Actions stream in every shape, CRDT entities from the server
		// (the model refuses the others).
		if m.Service.EntityType != model.Action && m.Service.EntityType != model.CRDT {
			return status.Errorf(codes.Unimplemented, "streaming method %s is not served", path)
		}
		return ing.stream(stream, m)
	}
	in, err := ing.recvRequest(stream)
	if err != nil {
		return err
	}
	// Only unary calls count as load, from the arrival of their request: a
	// stream's length says how long a client listens, and a request still
	// on its way how slow the client is, not how busy the sidecar is.
	defer ing.cfg.Load.Request()()
	markReached(stream.Context())
	var md *cloudstate.Metadata
	if m.Service.EntityType == model.Action { // entity commands carry no metadata (as the reference proxy)
		md = incomingMetadata(stream)
	}
	ctx, span := ing.span(stream.Context(), m)
	defer span.End()
	resp, err := ing.cfg.Caller.Call(ctx, m, in, md)
	if err != nil {
		span.Fail(err)
		return ing.fail(stream.Context(), path, err)
	}
	if md := outgoingMetadata(resp.GetMetadata()); md.Len() > 0 {
		if err := stream.SetHeader(md); err != nil {
			return err
		}
	}
	return stream.SendMsg(&frame{data: resp.GetPayload().GetValue()})
}

// recvRequest returns a unary call's request message once it arrived, or
// DEADLINE_EXCEEDED if that takes longer than RequestMessageTimeout. A
// handler cannot interrupt RecvMsg, but returning ends the call, which ends
// RecvMsg: so it waits on a goroutine of its own (in recvs, which Run waits
// for), and a silent call costs a goroutine for the timeout, not for ever.
func (ing *Server) recvRequest(stream grpc.ServerStream) ([]byte, error) {
	var in frame
	got := make(chan error, 1)
	ing.recvs.Go(func() { got <- stream.RecvMsg(&in) })
	timer := time.NewTimer(ing.cfg.RequestMessageTimeout)
	defer timer.Stop()
	select {
	case err := <-got:
		if err == nil {
			return in.data, nil
		}
		if _, ok := status.FromError(err); ok {
			return nil, err // e.g. too large, cancelled
		}
		// The body did not arrive whole: for transcoded HTTP/JSON calls,
		// this is where a body that does not parse surfaces.
		return nil, status.Errorf(codes.InvalidArgument, "read request: %v", err)
	case <-timer.C:
		return nil, status.Errorf(codes.DeadlineExceeded, "no request message within %v", ing.cfg.RequestMessageTimeout)
	}
}

// incomingMetadata turns request headers into protocol metadata; the
// bytes of a value that is not UTF-8 (nor "-bin") become U+FFFD.
func incomingMetadata(stream grpc.ServerStream) *cloudstate.Metadata {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if len(md) == 0 {
		return nil
	}
	out := &cloudstate.Metadata{}
	for k, vs := range md {
		if strings.HasPrefix(k, ":") {
			continue
		}
		for _, v := range vs {
			entry := &cloudstate.MetadataEntry{Key: k}
			if strings.HasSuffix(k, "-bin") {
				entry.Value = &cloudstate.MetadataEntry_BytesValue{BytesValue: []byte(v)}
			} else {
				// A header value may hold any byte (HTTP's obs-text, e.g.
				// Latin-1), a protocol string only UTF-8: the command
				// would not marshal.
				entry.Value = &cloudstate.MetadataEntry_StringValue{StringValue: strings.ToValidUTF8(v, "\uFFFD")}
			}
			out.Entries = append(out.Entries, entry)
		}
	}
	return out
}

// outgoingMetadata turns reply metadata into response headers.
func outgoingMetadata(md *cloudstate.Metadata) metadata.MD {
	out := metadata.MD{}
	for _, e := range md.GetEntries() {
		if reservedHeader(e.GetKey()) {
			continue // the transport's own (content type, grpc-status, ...)
		}
		switch v := e.GetValue().(type) {
		case *cloudstate.MetadataEntry_StringValue:
			out.Append(e.GetKey(), v.StringValue)
		case *cloudstate.MetadataEntry_BytesValue:
			if strings.HasSuffix(e.GetKey(), "-bin") {
				out.Append(e.GetKey(), string(v.BytesValue))
			}
		}
	}
	return out
}

// stream serves a streamed action call: the client's messages go to the
// Caller as they arrive; the metadata of the first reply becomes the
// response's headers (they go out with it; later replies' metadata cannot
// reach the client).
func (ing *Server) stream(stream grpc.ServerStream, m *model.Method) error {
	recv := func() ([]byte, error) {
		var in frame
		if err := stream.RecvMsg(&in); err != nil {
			return nil, err
		}
		return in.data, nil
	}
	headerSent := false
	send := func(r *cloudstate.Reply) error {
		if !headerSent {
			headerSent = true
			if md := outgoingMetadata(r.GetMetadata()); md.Len() > 0 {
				if err := stream.SetHeader(md); err != nil {
					return err
				}
			}
		}
		return stream.SendMsg(&frame{data: r.GetPayload().GetValue()})
	}
	ctx, span := ing.span(stream.Context(), m)
	defer span.End()
	if err := ing.cfg.Caller.Stream(ctx, m, incomingMetadata(stream), recv, send); err != nil {
		span.Fail(err)
		return ing.fail(stream.Context(), m.Path, err)
	}
	return nil
}

// span starts the server span of a call of m when tracing is on, a child
// of the trace context the client sent (traceparent, tracestate and
// baggage headers; over HTTP/JSON and gRPC-Web they arrive as metadata
// too). Its name is the method's full name ("package.Service/Method").
func (ing *Server) span(ctx context.Context, m *model.Method) (context.Context, tracing.Span) {
	if ing.cfg.Tracer == nil {
		return ctx, tracing.Span{}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	ctx, span := ing.cfg.Tracer.Remote(ctx, strings.TrimPrefix(m.Path, "/"), trace.SpanKindServer, tracing.Headers(md))
	span.String("rpc.service", string(m.Service.Desc.FullName()))
	span.String("rpc.method", string(m.Desc.Name()))
	return ctx, span
}
