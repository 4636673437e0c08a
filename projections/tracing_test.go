package projections_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
)

// TestTraceContextExtension: an event whose command was traced carries the
// append's context in the distributed-tracing extension, on every sink and
// in both modes, even from a projector that does not trace; an untraced
// one carries none.
func TestTraceContextExtension(t *testing.T) {
	for _, tc := range []struct {
		name             string
		nats, structured bool
	}{
		{"nats binary", true, false},
		{"nats structured", true, true},
		{"http binary", false, false},
		{"http structured", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			ctx, root := tp.Tracer("test").Start(t.Context(), "command")
			if _, err := e.journal.Append(ctx, streams.Entity{Type: "cart", Key: "traced"}, streams.Version{},
				[]streams.Event{strEvent("a"), strEvent("b")}); err != nil {
				t.Fatal(err)
			}
			root.End()
			e.appendEvents(t, streams.Entity{Type: "cart", Key: "untraced"}, strEvent("c"))
			var appended tracetest.SpanStub
			for _, s := range exp.GetSpans() {
				if s.Name == streams.SpanAppend {
					appended = s
				}
			}
			sc := appended.SpanContext
			want := fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags())
			if !sc.IsValid() || appended.Parent.SpanID() != trace.SpanContextFromContext(ctx).SpanID() {
				t.Fatalf("no append span under the command's: %v", exp.GetSpans())
			}

			var rec *recorder
			var sink projections.Sink
			if tc.nats {
				rec = subscribe(t, e.srv.Connect(t), "cloudevents")
				s, err := projections.NewNATSSink(e.srv.Connect(t), projections.NATSSinkConfig{Subject: "cloudevents", Structured: tc.structured})
				if err != nil {
					t.Fatal(err)
				}
				sink = s
			} else {
				h := newHTTPTarget(t)
				rec = h.rec
				s, err := projections.NewHTTPSink(projections.HTTPSinkConfig{Target: h.URL, Structured: tc.structured})
				if err != nil {
					t.Fatal(err)
				}
				sink = s
			}
			p, err := projections.New(e.js, e.config("view", sink))
			if err != nil {
				t.Fatal(err)
			}
			run(t, p.Run)
			for _, ev := range distinct(rec.waitFor(t, "3 events", func(evs []*event.Event) bool { return len(distinct(evs)) >= 3 })) {
				got, _ := ev.Extensions()[projections.TraceParentExtension].(string)
				switch ev.Subject() {
				case "traced":
					if got != want {
						t.Errorf("event %s: traceparent %q, want the append's %q", ev.ID(), got, want)
					}
				default:
					if got != "" {
						t.Errorf("untraced event %s has traceparent %q", ev.ID(), got)
					}
				}
			}
		})
	}
}
