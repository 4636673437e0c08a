package sdk_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	es "github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	act "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/action"
	"github.com/jetstate/jetstate/sdk"
	tm "github.com/jetstate/jetstate/sdk/internal/testmodel"
)

const unhandled = "jetstate.sdk.testmodel.Unhandled"

func process(*esState, *sdk.EventSourcedContext, *tm.Request) (*tm.Response, error) {
	return &tm.Response{}, nil
}

// TestNewChecksEntities: New reports every problem of the definitions, all at once.
func TestNewChecksEntities(t *testing.T) {
	newES := func(service string) *sdk.EventSourced[*esState] {
		return sdk.NewEventSourced(sdk.EventSourcedConfig{ServiceName: service}, func(string) *esState { return &esState{} })
	}
	for _, tc := range []struct {
		name     string
		cfg      sdk.Config
		entities func() []sdk.Entity
		want     []string // substrings of the error; none means New succeeds
	}{
		{
			name:     "no entities",
			entities: func() []sdk.Entity { return nil },
			want:     []string{"no entities"},
		},
		{
			name:     "nil entity",
			entities: func() []sdk.Entity { return []sdk.Entity{nil} },
			want:     []string{"entity 0 is nil"},
		},
		{
			name:     "unregistered service",
			entities: func() []sdk.Entity { return []sdk.Entity{newES("no.such.Service")} },
			want:     []string{"service no.such.Service is not registered"},
		},
		{
			name:     "no service name",
			entities: func() []sdk.Entity { return []sdk.Entity{newES("")} },
			want:     []string{"no service name"},
		},
		{
			name:     "not a service",
			entities: func() []sdk.Entity { return []sdk.Entity{newES("jetstate.sdk.testmodel.Request")} },
			want:     []string{"jetstate.sdk.testmodel.Request is not a service"},
		},
		{
			name: "method without handler, handler without method",
			entities: func() []sdk.Entity {
				e := newES(unhandled)
				sdk.HandleCommand(e, "Process", process)
				sdk.HandleCommand(e, "Nope", process)
				return []sdk.Entity{e}
			},
			want: []string{"method Mistyped has no command handler", `command handler "Nope": service jetstate.sdk.testmodel.Unhandled has no such method`},
		},
		{
			name: "wrong input and output types",
			entities: func() []sdk.Entity {
				e := newES(unhandled)
				sdk.HandleCommand(e, "Process", func(*esState, *sdk.EventSourcedContext, *tm.Request) (*tm.Persisted, error) { return nil, nil })
				sdk.HandleCommand(e, "Mistyped", process)
				return []sdk.Entity{e}
			},
			want: []string{
				"method Process returns jetstate.sdk.testmodel.Response, its handler returns jetstate.sdk.testmodel.Persisted",
				"method Mistyped takes jetstate.sdk.testmodel.Other, its handler takes jetstate.sdk.testmodel.Request",
			},
		},
		{
			name: "any input and output types",
			entities: func() []sdk.Entity {
				e := newES(unhandled)
				h := func(*esState, *sdk.EventSourcedContext, proto.Message) (proto.Message, error) {
					return &tm.Response{}, nil
				}
				sdk.HandleCommand(e, "Process", h)
				sdk.HandleCommand(e, "Mistyped", h)
				return []sdk.Entity{e}
			},
		},
		{
			name: "handler registered twice",
			entities: func() []sdk.Entity {
				e := newES(esTwo)
				sdk.HandleCommand(e, "Call", process)
				sdk.HandleCommand(e, "Call", process)
				return []sdk.Entity{e}
			},
			want: []string{`command handler "Call" registered twice`},
		},
		{
			name:     "service served twice",
			entities: func() []sdk.Entity { return []sdk.Entity{esTwoEntity(), esTwoEntity()} },
			want:     []string{"entity 1: service jetstate.sdk.testmodel.EventSourcedTwo is already served by another entity"},
		},
		{
			name: "passivation timeouts",
			entities: func() []sdk.Entity {
				return []sdk.Entity{
					esModelEntity(sdk.EventSourcedConfig{PassivationTimeout: -time.Second}),
					veModelEntity(sdk.ValueEntityConfig{PassivationTimeout: time.Microsecond}),
				}
			},
			want: []string{"negative passivation timeout -1s", "passivation timeout 1µs is under the protocol's 1ms resolution"},
		},
		{
			name: "event and snapshot types must be concrete, newState set",
			entities: func() []sdk.Entity {
				e := sdk.NewEventSourced[*esState](sdk.EventSourcedConfig{ServiceName: esTwo}, nil)
				sdk.HandleCommand(e, "Call", process)
				sdk.HandleEvent(e, func(*esState, proto.Message) error { return nil })
				sdk.HandleSnapshot(e, func(*esState) (proto.Message, error) { return nil, nil }, func(*esState, proto.Message) error { return nil })
				return []sdk.Entity{e}
			},
			want: []string{"nil newState", "the event type must be a concrete message type", "the snapshot type must be a concrete message type"},
		},
		{
			name: "event handler registered twice",
			entities: func() []sdk.Entity {
				e := esModelEntity(sdk.EventSourcedConfig{})
				sdk.HandleEvent(e, (*esState).persisted)
				return []sdk.Entity{e}
			},
			want: []string{"event handler for jetstate.sdk.testmodel.Persisted registered twice"},
		},
		{
			name: "value entity state type must be concrete",
			entities: func() []sdk.Entity {
				e := sdk.NewValueEntity[proto.Message](sdk.ValueEntityConfig{ServiceName: veTwo})
				sdk.HandleValueCommand(e, "Call", func(*sdk.ValueEntityContext[proto.Message], *tm.Request) (*tm.Response, error) { return nil, nil })
				return []sdk.Entity{e}
			},
			want: []string{"the state type must be a concrete message type"},
		},
		{
			name:     "negative shutdown timeout",
			cfg:      sdk.Config{ShutdownTimeout: -time.Second},
			entities: func() []sdk.Entity { return []sdk.Entity{esTwoEntity()} },
			want:     []string{"negative shutdown timeout"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sdk.New(tc.cfg, tc.entities()...)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want an error with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// TestListenAndServe serves on HOST/PORT from the environment and stops when the context is
// cancelled.
func TestListenAndServe(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	_ = lis.Close()
	t.Setenv("HOST", "127.0.0.1")
	t.Setenv("PORT", port)

	srv, err := sdk.New(sdk.Config{Logger: testLogger(t)}, esTwoEntity())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx) }()

	conn, err := grpc.NewClient(net.JoinHostPort("127.0.0.1", port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The listener may take a moment to open: let the first call wait for it.
	if _, err := cloudstate.NewEntityDiscoveryClient(conn).Discover(streamCtx(t), &cloudstate.ProxyInfo{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("Discover: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ListenAndServe: %v", err)
		}
	case <-time.After(recvTimeout):
		t.Fatal("ListenAndServe did not return after cancel")
	}
}

// TestListenAndServeBadAddress: a listen error is returned.
func TestListenAndServeBadAddress(t *testing.T) {
	srv, err := sdk.New(sdk.Config{Logger: testLogger(t), Addr: "127.0.0.1:notaport"}, esTwoEntity())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ListenAndServe(t.Context()); err == nil || !strings.Contains(err.Error(), "listen 127.0.0.1:notaport") {
		t.Fatalf("ListenAndServe = %v, want a listen error", err)
	}
}

// TestShutdownClosesOpenStreams: entity streams live until the proxy passivates them; a
// cancelled Serve waits ShutdownTimeout for them, then closes them and returns.
func TestShutdownClosesOpenStreams(t *testing.T) {
	srv, err := sdk.New(sdk.Config{Logger: testLogger(t), ShutdownTimeout: 100 * time.Millisecond}, esModelEntity(sdk.EventSourcedConfig{}), esTwoEntity())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	c := openES(t, conn)
	c.init(esModel, "open")
	c.command(1, "open", "Process", req("open"))
	c.expectReply(&es.EventSourcedReply{CommandId: 1, ClientAction: reply("")})

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(recvTimeout):
		t.Fatal("Serve did not return after cancel")
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("Serve returned after %v, before the shutdown timeout", d)
	}
	if _, err := c.stream.Recv(); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the open stream was not closed: %v", err)
	}
}

// TestNewChecksShapes: CRDT and action handlers are checked against the methods' streaming
// flags.
func TestNewChecksShapes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		entities func() []sdk.Entity
		want     []string
	}{
		{
			name: "crdt: unary handler for a streaming method, streamed handler for a unary one",
			entities: func() []sdk.Entity {
				c := sdk.NewCrdt(sdk.CrdtConfig{ServiceName: crdtModel}, newCrdtEntity)
				sdk.HandleCrdtStreamed(c, "Process", func(*crdtEntity, *sdk.CrdtStreamContext[*tm.Response], *tm.CrdtRequest) (*tm.Response, error) {
					return nil, nil
				})
				sdk.HandleCrdtCommand(c, "ProcessStreamed", func(*crdtEntity, *sdk.CrdtContext, *tm.CrdtStreamedRequest) (*tm.Response, error) { return nil, nil })
				return []sdk.Entity{c}
			},
			want: []string{
				"method Process is unary, its handler is for server-streaming methods",
				"method ProcessStreamed is server-streaming, its handler is for unary methods",
			},
		},
		{
			name: "crdt: client-streaming method, nil handler and entity function",
			entities: func() []sdk.Entity {
				c := sdk.NewCrdt[*crdtEntity](sdk.CrdtConfig{ServiceName: "jetstate.sdk.testmodel.CrdtBadShape"}, nil)
				sdk.HandleCrdtCommand[*crdtEntity, *tm.CrdtRequest, *tm.Response](c, "Upload", nil)
				return []sdk.Entity{c}
			},
			want: []string{
				"nil newEntity function",
				`command handler "Upload" is nil`,
				"method Upload is client-streaming; cloudstate.crdt.Crdt entities have no such methods",
			},
		},
		{
			name: "action: every shape mismatched",
			entities: func() []sdk.Entity {
				a := sdk.NewAction(sdk.ActionConfig{ServiceName: actionModel})
				sdk.HandleStreamed(a, "ProcessUnary", func(*sdk.ActionContext, func() (*act.Request, error), func(*act.Response) error) error { return nil })
				sdk.HandleUnary(a, "ProcessStreamedIn", func(*sdk.ActionContext, *act.Request) (*act.Response, error) { return nil, nil })
				sdk.HandleStreamedIn(a, "ProcessStreamedOut", func(*sdk.ActionContext, func() (*act.Request, error)) (*act.Response, error) { return nil, nil })
				sdk.HandleStreamedOut(a, "ProcessStreamed", func(*sdk.ActionContext, *act.Request, func(*act.Response) error) error { return nil })
				sdk.HandleUnary(a, "ProcessStreamed", func(*sdk.ActionContext, *act.Request) (*act.Response, error) { return nil, nil })
				return []sdk.Entity{a}
			},
			want: []string{
				"method ProcessUnary is unary, its handler is for bidirectional-streaming methods",
				"method ProcessStreamedIn is client-streaming, its handler is for unary methods",
				"method ProcessStreamedOut is server-streaming, its handler is for client-streaming methods",
				"method ProcessStreamed is bidirectional-streaming, its handler is for server-streaming methods",
				`command handler "ProcessStreamed" registered twice`,
			},
		},
		{
			name: "action: wrong types and missing handler",
			entities: func() []sdk.Entity {
				a := sdk.NewAction(sdk.ActionConfig{ServiceName: actionTwo})
				sdk.HandleUnary(a, "Call", func(*sdk.ActionContext, *act.Request) (*act.Request, error) { return nil, nil })
				b := sdk.NewAction(sdk.ActionConfig{ServiceName: actionModel})
				return []sdk.Entity{a, b}
			},
			want: []string{
				"method Call takes cloudstate.tck.model.action.OtherRequest, its handler takes cloudstate.tck.model.action.Request",
				"method Call returns cloudstate.tck.model.action.Response, its handler returns cloudstate.tck.model.action.Request",
				"method ProcessUnary has no command handler",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sdk.New(sdk.Config{}, tc.entities()...)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}
