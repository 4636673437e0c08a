package ingress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/proxy/model"
)

// The ingress tests serve a function with one action service, t.S, whose
// Echo(M) -> M replies with its request (echoCaller stands in for the
// command router, which package proxy's tests run for real). They are for
// what only this package can reach: the listener and unexported knobs.

func testModel(t testing.TB) *model.Model {
	t.Helper()
	file := &descriptorpb.FileDescriptorProto{
		Name: proto.String("t/t.proto"), Package: proto.String("t"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("M"),
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name: proto.String("n"), Number: proto.Int32(1), JsonName: proto.String("n"),
				Type:  descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum(),
				Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			}},
		}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name:   proto.String("S"),
			Method: []*descriptorpb.MethodDescriptorProto{{Name: proto.String("Echo"), InputType: proto.String(".t.M"), OutputType: proto.String(".t.M")}},
		}},
	}
	set, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{file}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.BuildModel(&cloudstate.EntitySpec{
		Proto:       set,
		Entities:    []*cloudstate.Entity{{EntityType: model.Action, ServiceName: "t.S"}},
		ServiceInfo: &cloudstate.ServiceInfo{ProtocolMajorVersion: model.ProtocolMajor, ProtocolMinorVersion: model.ProtocolMinor},
	}, []string{model.Action})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type echoCaller struct{}

func (echoCaller) Call(_ context.Context, _ *model.Method, request []byte, _ *cloudstate.Metadata) (*cloudstate.Reply, error) {
	return &cloudstate.Reply{Payload: &anypb.Any{Value: request}}, nil
}

func (echoCaller) Stream(context.Context, *model.Method, *cloudstate.Metadata, func() ([]byte, error), func(*cloudstate.Reply) error) error {
	return errors.New("no streams here")
}

// serve runs an ingress on lis (nil: a new loopback listener) until the
// test ends, for testModel and echoCaller unless cfg has others. The
// returned channel has Run's result if Run ends before the test does.
func serve(t *testing.T, cfg Config, lis net.Listener) (addr string, ended <-chan error) {
	t.Helper()
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.Model == nil {
		cfg.Model = testModel(t)
	}
	if cfg.Caller == nil {
		cfg.Caller = echoCaller{}
	}
	ing, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	result, done := make(chan error, 1), make(chan struct{})
	go func() {
		result <- ing.Run(ctx, lis)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return lis.Addr().String(), result
}

// probe asks the HTTP side for Knative's queue probe on a connection of its
// own (Connection: close) and returns the answer's status; conn is dialled
// if nil. A failsafe deadline of a minute stands for "never".
func probe(conn net.Conn, addr string) (int, error) {
	if conn == nil {
		var err error
		if conn, err = net.Dial("tcp", addr); err != nil {
			return 0, err
		}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: ingress\r\nK-Network-Probe: queue\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// logRecords is a slog handler that passes every record to a channel
// (dropping them when it is full).
type logRecords chan slog.Record

func (c logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (c logRecords) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c logRecords) WithGroup(string) slog.Handler            { return c }
func (c logRecords) Handle(_ context.Context, r slog.Record) error {
	select {
	case c <- r:
	default:
	}
	return nil
}
