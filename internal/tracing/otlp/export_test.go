package otlp_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/internal/tracing/otlp"
)

// received collects what an OTLP receiver was sent.
type received struct {
	mu   sync.Mutex
	reqs []*collectorpb.ExportTraceServiceRequest
}

func (r *received) add(req *collectorpb.ExportTraceServiceRequest) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
}

// spans returns the names of the spans received with the service.name of
// their resource.
func (r *received) spans() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for _, req := range r.reqs {
		for _, rs := range req.GetResourceSpans() {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					out[sp.GetName()] = service
				}
			}
		}
	}
	return out
}

type grpcReceiver struct {
	collectorpb.UnimplementedTraceServiceServer
	r *received
}

func (g grpcReceiver) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	g.r.add(req)
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

// TestExportsToCollector: with the OTEL_* variables pointing at a
// receiver (OTLP over HTTP with protobuf, and over gRPC), a span started
// from the Provider reaches it by the shutdown's flush, under the service
// name OTEL_SERVICE_NAME gives.
func TestExportsToCollector(t *testing.T) {
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			r := &received{}
			var endpoint string
			if protocol == "grpc" {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				gs := grpc.NewServer()
				collectorpb.RegisterTraceServiceServer(gs, grpcReceiver{r: r})
				go func() { _ = gs.Serve(lis) }()
				t.Cleanup(gs.Stop)
				endpoint = "http://" + lis.Addr().String()
			} else {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
					body, err := io.ReadAll(req.Body)
					m := &collectorpb.ExportTraceServiceRequest{}
					if err == nil {
						err = proto.Unmarshal(body, m)
					}
					if err != nil || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
						t.Errorf("receiver got %s %s (%s): %v", req.Method, req.URL.Path, req.Header.Get("Content-Type"), err)
						http.Error(w, "bad request", http.StatusBadRequest)
						return
					}
					r.add(m)
					w.Header().Set("Content-Type", "application/x-protobuf")
					b, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
					_, _ = w.Write(b)
				}))
				t.Cleanup(srv.Close)
				endpoint = srv.URL
			}
			// The exporters read their settings from the process's
			// environment, as in main.
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
			t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
			t.Setenv("OTEL_SERVICE_NAME", "cart-sidecar")
			p, err := otlp.FromEnv(t.Context(), os.Getenv, "jetstate-test")
			if err != nil {
				t.Fatal(err)
			}
			tp := p.TracerProvider()
			if tp == nil {
				t.Fatal("tracing off with an endpoint set")
			}
			_, span := tp.Tracer("test").Start(t.Context(), "jetstate.test")
			span.End()
			if err := p.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := r.spans(); got["jetstate.test"] != "cart-sidecar" {
				t.Fatalf("receiver got spans %v, want jetstate.test of service cart-sidecar", got)
			}
		})
	}
}
