package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/jetstate/jetstate/protocol/jetstate/load"
	"github.com/jetstate/jetstate/proxy"
	"github.com/jetstate/jetstate/streams"
)

// Issue 12, item 1: unary calls that were opened but never sent their
// request counted as load from the moment they opened, so 2000 silent
// streams made the reports say request_concurrency=2000. A request counts
// from its message's arrival; streamed calls never count.
func TestSilentCallsAreNotLoad(t *testing.T) {
	h := startHarness(t, nil)
	sub, err := h.js.Conn().SubscribeSync(streams.Config{Service: "test"}.LoadSubject())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.StartLoadReports(t.Context(), h.p, 50*time.Millisecond)()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const silent = 20
	for range silent {
		// Opening a stream sends its headers: the server starts the call's
		// handler, which then waits for the request message.
		if _, err := h.conn.NewStream(ctx, &grpc.StreamDesc{}, "/test.Counter/Get"); err != nil {
			t.Fatal(err)
		}
	}
	// A server stream held open with its first reply received: it is in the
	// function, and still not a request.
	hold, err := h.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/test.Echo/Hold")
	if err != nil {
		t.Fatal(err)
	}
	one := h.types.msg("Value")
	one.Set(one.Descriptor().Fields().ByName("n"), protoreflect.ValueOfInt64(1))
	if err := hold.SendMsg(one); err != nil {
		t.Fatal(err)
	}
	hold.CloseSend()
	if err := hold.RecvMsg(h.types.msg("Value")); err != nil {
		t.Fatal(err)
	}
	// The health check is served on the same connection after the silent
	// streams' headers: once it answers, the server has started their
	// handlers. It is not a call of the function, so it is no load either.
	if _, err := healthpb.NewHealthClient(h.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	// Every report from now on covers only silent streams and the held
	// stream: no request, no request time. Three reports of a non-empty
	// interval are plenty for the silent handlers, started before the
	// health check, to have counted themselves if they did.
	var seen []*load.Report
	for len(seen) < 3 {
		msg, err := sub.NextMsg(time.Minute) // a failsafe
		if err != nil {
			t.Fatal(err)
		}
		var rep load.Report
		if err := proto.Unmarshal(msg.Data, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.IntervalNanos > 0 {
			seen = append(seen, &rep)
		}
	}
	for _, rep := range seen {
		if rep.RequestConcurrency != 0 || rep.RequestCount != 0 || rep.RequestTimeNanos != 0 {
			t.Fatalf("with %d silent calls and a held stream the report says %v; want no requests", silent, rep)
		}
	}
}

// Issue 12, item 1: a unary call whose request message does not arrive
// within Config.RequestMessageTimeout is ended by the sidecar with
// DEADLINE_EXCEEDED (its handler returns instead of waiting for ever).
func TestSilentCallIsEnded(t *testing.T) {
	h := startHarness(t, func(c *proxy.Config) { c.RequestMessageTimeout = 100 * time.Millisecond })
	// The client sets no deadline; a minute is only a failsafe, and it
	// cancels (CANCELLED), so it cannot pass for the server's answer.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	failsafe := time.AfterFunc(time.Minute, cancel)
	defer failsafe.Stop()
	s, err := h.conn.NewStream(ctx, &grpc.StreamDesc{}, "/test.Counter/Get")
	if err != nil {
		t.Fatal(err)
	}
	err = s.RecvMsg(h.types.msg("Value"))
	if st := status.Convert(err); st.Code() != codes.DeadlineExceeded || !strings.Contains(st.Message(), "100ms") {
		t.Fatalf("silent call = %v, want DEADLINE_EXCEEDED from the sidecar naming its 100ms", err)
	}
	// A call that sends its request in time is served as before.
	h.mustCall("Counter/Add", "s", ptr(1), 1)
}
