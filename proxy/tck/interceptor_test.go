package tck_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
)

// event is one thing the interceptor saw on a call between sidecar and
// function.
type event struct {
	call   int    // calls are numbered in the order they were opened
	method string // full gRPC method
	in     bool   // true: sidecar -> function
	msg    proto.Message
	closed bool // the direction ended (msg is nil)
}

// interceptor sits between the sidecar and the function, forwarding every
// call unchanged and recording every message in both directions, like the
// TCK's own interceptor.
type interceptor struct {
	uf *grpc.ClientConn

	mu      sync.Mutex
	calls   int
	methods []string // per call (from 1 at index 0): its method
	events  []event
	wake    chan struct{}
}

type rawFrame struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.(*rawFrame).b, nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	v.(*rawFrame).b = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// decoders name the message types of each direction of each method.
var decoders = map[string][2]func() proto.Message{
	"/cloudstate.EntityDiscovery/discover":    {func() proto.Message { return &cloudstate.ProxyInfo{} }, func() proto.Message { return &cloudstate.EntitySpec{} }},
	"/cloudstate.EntityDiscovery/reportError": {func() proto.Message { return &cloudstate.UserFunctionError{} }, func() proto.Message { return &emptypb.Empty{} }},
	"/cloudstate.eventsourced.EventSourced/handle": {func() proto.Message { return &eventsourced.EventSourcedStreamIn{} },
		func() proto.Message { return &eventsourced.EventSourcedStreamOut{} }},
	"/cloudstate.valueentity.ValueEntity/handle": {func() proto.Message { return &valueentity.ValueEntityStreamIn{} },
		func() proto.Message { return &valueentity.ValueEntityStreamOut{} }},
	"/cloudstate.crdt.Crdt/handle": {func() proto.Message { return &crdt.CrdtStreamIn{} },
		func() proto.Message { return &crdt.CrdtStreamOut{} }},
	action.ActionProtocol_HandleUnary_FullMethodName:       actionDecoders,
	action.ActionProtocol_HandleStreamedIn_FullMethodName:  actionDecoders,
	action.ActionProtocol_HandleStreamedOut_FullMethodName: actionDecoders,
	action.ActionProtocol_HandleStreamed_FullMethodName:    actionDecoders,
}

// actionDecoders serve all four action shapes: the interceptor forwards
// every call as a bidi stream, so the shapes differ only in how many
// messages pass each way.
var actionDecoders = [2]func() proto.Message{func() proto.Message { return &action.ActionCommand{} }, func() proto.Message { return &action.ActionResponse{} }}

// startInterceptor listens on loopback and forwards to the function at ufAddr.
func startInterceptor(t *testing.T, ufAddr string) (*interceptor, string) {
	t.Helper()
	uf, err := grpc.NewClient(ufAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ic := &interceptor{uf: uf, wake: make(chan struct{}, 1)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(ic.forward))
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Stop(); uf.Close() })
	return ic, lis.Addr().String()
}

func (ic *interceptor) record(e event) {
	ic.mu.Lock()
	ic.events = append(ic.events, e)
	ic.mu.Unlock()
	select {
	case ic.wake <- struct{}{}:
	default:
	}
}

func (ic *interceptor) forward(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	ic.mu.Lock()
	ic.calls++
	call := ic.calls
	ic.methods = append(ic.methods, method)
	ic.mu.Unlock()
	select { // a test may wait for a call before its first message
	case ic.wake <- struct{}{}:
	default:
	}
	dec := decoders[method]
	decode := func(in bool, b []byte) proto.Message {
		i := 1
		if in {
			i = 0
		}
		if dec[i] == nil {
			return nil
		}
		m := dec[i]()
		if err := proto.Unmarshal(b, m); err != nil {
			return nil
		}
		return m
	}
	cs, err := ic.uf.NewStream(ss.Context(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	go func() {
		for {
			var f rawFrame
			if err := ss.RecvMsg(&f); err != nil {
				ic.record(event{call: call, method: method, in: true, closed: true})
				cs.CloseSend()
				return
			}
			ic.record(event{call: call, method: method, in: true, msg: decode(true, f.b)})
			if err := cs.SendMsg(&f); err != nil {
				return
			}
		}
	}()
	for {
		var f rawFrame
		if err := cs.RecvMsg(&f); err != nil {
			ic.record(event{call: call, method: method, closed: true})
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		ic.record(event{call: call, method: method, msg: decode(false, f.b)})
		if err := ss.SendMsg(&f); err != nil {
			return err
		}
	}
}
