package tck_test

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	esmodel "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/eventsourced"
	vemodel "github.com/jetstate/jetstate/protocol/cloudstate/tck/model/valueentity"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
	pmodel "github.com/jetstate/jetstate/proxy/model"
)

// model is the TCK model user function, speaking the protocol directly
// (the TCK's own models are written with a language support; this one
// behaves as go-support's: a failed command that had emitted events asks
// for a restart).
type model struct {
	cloudstate.UnimplementedEntityDiscoveryServer
	eventsourced.UnimplementedEventSourcedServer
}

const (
	esModel      = "cloudstate.tck.model.EventSourcedTckModel"
	esTwo        = "cloudstate.tck.model.EventSourcedTwo"
	esConfigured = "cloudstate.tck.model.EventSourcedConfigured"
	veModel      = "cloudstate.tck.model.valueentity.ValueEntityTckModel"
	veTwo        = "cloudstate.tck.model.valueentity.ValueEntityTwo"
	veConfigured = "cloudstate.tck.model.valueentity.ValueEntityConfigured"
)

func anyOf(m proto.Message) *anypb.Any {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return &anypb.Any{TypeUrl: "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName()), Value: b}
}

// fileSet is every file of paths and their imports, dependencies first.
func fileSet(paths ...string) []byte {
	var files []*descriptorpb.FileDescriptorProto
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		files = append(files, protodesc.ToFileDescriptorProto(fd))
	}
	for _, path := range paths {
		fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
		if err != nil {
			panic(err)
		}
		add(fd)
	}
	b, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: files})
	if err != nil {
		panic(err)
	}
	return b
}

func (m *model) Discover(context.Context, *cloudstate.ProxyInfo) (*cloudstate.EntitySpec, error) {
	passivate := &cloudstate.EntityPassivationStrategy{Strategy: &cloudstate.EntityPassivationStrategy_Timeout{
		Timeout: &cloudstate.TimeoutPassivationStrategy{Timeout: 100}}}
	files := []string{"cloudstate/tck/model/eventsourced.proto", "cloudstate/tck/model/valueentity.proto",
		"cloudstate/tck/model/action.proto", "cloudstate/tck/model/crdt.proto"}
	return &cloudstate.EntitySpec{
		Proto: fileSet(files...),
		Entities: []*cloudstate.Entity{
			{EntityType: pmodel.EventSourced, ServiceName: esModel, PersistenceId: "event-sourced-tck-model"},
			{EntityType: pmodel.EventSourced, ServiceName: esTwo, PersistenceId: "event-sourced-tck-model-two"},
			{EntityType: pmodel.EventSourced, ServiceName: esConfigured, PersistenceId: "event-sourced-configured", PassivationStrategy: passivate},
			{EntityType: pmodel.ValueEntity, ServiceName: veModel, PersistenceId: "value-entity-tck-model"},
			{EntityType: pmodel.ValueEntity, ServiceName: veTwo, PersistenceId: "value-entity-tck-model-two"},
			{EntityType: pmodel.ValueEntity, ServiceName: veConfigured, PersistenceId: "value-entity-configured", PassivationStrategy: passivate},
			{EntityType: pmodel.Action, ServiceName: acModel},
			{EntityType: pmodel.Action, ServiceName: acTwo},
			{EntityType: pmodel.CRDT, ServiceName: crModel, PersistenceId: "crdt-tck-model"},
			{EntityType: pmodel.CRDT, ServiceName: crTwo, PersistenceId: "crdt-tck-model-two"},
			{EntityType: pmodel.CRDT, ServiceName: crConfigured, PersistenceId: "crdt-configured", PassivationStrategy: passivate},
		},
		ServiceInfo: &cloudstate.ServiceInfo{ServiceName: "tck-model", ProtocolMajorVersion: 0, ProtocolMinorVersion: 2},
	}, nil
}

func (m *model) ReportError(context.Context, *cloudstate.UserFunctionError) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// Handle is the event-sourced model.
func (m *model) Handle(stream grpc.BidiStreamingServer[eventsourced.EventSourcedStreamIn, eventsourced.EventSourcedStreamOut]) error {
	var state string
	var seq int64
	var service string
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch msg := in.GetMessage().(type) {
		case *eventsourced.EventSourcedStreamIn_Init:
			service = msg.Init.GetServiceName()
			if s := msg.Init.GetSnapshot(); s != nil {
				var p esmodel.Persisted
				if err := s.GetSnapshot().UnmarshalTo(&p); err != nil {
					return err
				}
				state, seq = p.GetValue(), s.GetSnapshotSequence()
			}
		case *eventsourced.EventSourcedStreamIn_Event:
			var p esmodel.Persisted
			if err := msg.Event.GetPayload().UnmarshalTo(&p); err != nil {
				return err
			}
			state += p.GetValue()
			seq = msg.Event.GetSequence()
		case *eventsourced.EventSourcedStreamIn_Command:
			reply := m.esCommand(service, msg.Command, &state, &seq)
			if err := stream.Send(&eventsourced.EventSourcedStreamOut{Message: &eventsourced.EventSourcedStreamOut_Reply{Reply: reply}}); err != nil {
				return err
			}
		}
	}
}

func (m *model) esCommand(service string, cmd *cloudstate.Command, state *string, seq *int64) *eventsourced.EventSourcedReply {
	out := &eventsourced.EventSourcedReply{CommandId: cmd.GetId()}
	var req esmodel.Request
	if err := cmd.GetPayload().UnmarshalTo(&req); err != nil {
		out.ClientAction = failure(cmd.GetId(), err.Error(), false)
		return out
	}
	if service != esModel {
		out.ClientAction = &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: &cloudstate.Reply{Payload: anyOf(&esmodel.Response{})}}}
		return out
	}
	before, beforeSeq := *state, *seq
	var forward *cloudstate.Forward
	snapshot := false
	for _, a := range req.GetActions() {
		switch act := a.GetAction().(type) {
		case *esmodel.RequestAction_Emit:
			out.Events = append(out.Events, anyOf(&esmodel.Persisted{Value: act.Emit.GetValue()}))
			*state += act.Emit.GetValue()
			*seq++
			snapshot = snapshot || *seq%5 == 0
		case *esmodel.RequestAction_Forward:
			forward = &cloudstate.Forward{ServiceName: esTwo, CommandName: "Call", Payload: anyOf(&esmodel.Request{Id: act.Forward.GetId()})}
		case *esmodel.RequestAction_Effect:
			out.SideEffects = append(out.SideEffects, &cloudstate.SideEffect{ServiceName: esTwo, CommandName: "Call",
				Payload: anyOf(&esmodel.Request{Id: act.Effect.GetId()}), Synchronous: act.Effect.GetSynchronous()})
		case *esmodel.RequestAction_Fail:
			restart := len(out.Events) > 0
			*state, *seq = before, beforeSeq
			out.Events, out.SideEffects, out.Snapshot = nil, nil, nil
			out.ClientAction = failure(cmd.GetId(), act.Fail.GetMessage(), restart)
			return out
		}
	}
	if snapshot { // the state after all of the command's events
		out.Snapshot = anyOf(&esmodel.Persisted{Value: *state})
	}
	if forward != nil {
		out.ClientAction = &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Forward{Forward: forward}}
	} else {
		out.ClientAction = &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: &cloudstate.Reply{Payload: anyOf(&esmodel.Response{Message: *state})}}}
	}
	return out
}

func failure(id int64, desc string, restart bool) *cloudstate.ClientAction {
	return &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Failure{Failure: &cloudstate.Failure{CommandId: id, Description: desc, Restart: restart}}}
}

// valueModel is the value-entity model (a separate type: both protocol
// services have a method named Handle).
type valueModel struct {
	valueentity.UnimplementedValueEntityServer
}

func (valueModel) Handle(stream grpc.BidiStreamingServer[valueentity.ValueEntityStreamIn, valueentity.ValueEntityStreamOut]) error {
	var state *string
	var service string
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch msg := in.GetMessage().(type) {
		case *valueentity.ValueEntityStreamIn_Init:
			service = msg.Init.GetServiceName()
			if v := msg.Init.GetState().GetValue(); v != nil {
				var p vemodel.Persisted
				if err := v.UnmarshalTo(&p); err != nil {
					return err
				}
				s := p.GetValue()
				state = &s
			}
		case *valueentity.ValueEntityStreamIn_Command:
			reply := veCommand(service, msg.Command, &state)
			if err := stream.Send(&valueentity.ValueEntityStreamOut{Message: &valueentity.ValueEntityStreamOut_Reply{Reply: reply}}); err != nil {
				return err
			}
		}
	}
}

func veCommand(service string, cmd *cloudstate.Command, state **string) *valueentity.ValueEntityReply {
	out := &valueentity.ValueEntityReply{CommandId: cmd.GetId()}
	var req vemodel.Request
	if err := cmd.GetPayload().UnmarshalTo(&req); err != nil {
		out.ClientAction = failure(cmd.GetId(), err.Error(), false)
		return out
	}
	if service != veModel {
		out.ClientAction = &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: &cloudstate.Reply{Payload: anyOf(&vemodel.Response{})}}}
		return out
	}
	before := *state
	var forward *cloudstate.Forward
	for _, a := range req.GetActions() {
		switch act := a.GetAction().(type) {
		case *vemodel.RequestAction_Update:
			v := act.Update.GetValue()
			*state = &v
			out.StateAction = &valueentity.ValueEntityAction{Action: &valueentity.ValueEntityAction_Update{
				Update: &valueentity.ValueEntityUpdate{Value: anyOf(&vemodel.Persisted{Value: v})}}}
		case *vemodel.RequestAction_Delete:
			*state = nil
			out.StateAction = &valueentity.ValueEntityAction{Action: &valueentity.ValueEntityAction_Delete{Delete: &valueentity.ValueEntityDelete{}}}
		case *vemodel.RequestAction_Forward:
			forward = &cloudstate.Forward{ServiceName: veTwo, CommandName: "Call", Payload: anyOf(&vemodel.Request{Id: act.Forward.GetId()})}
		case *vemodel.RequestAction_Effect:
			out.SideEffects = append(out.SideEffects, &cloudstate.SideEffect{ServiceName: veTwo, CommandName: "Call",
				Payload: anyOf(&vemodel.Request{Id: act.Effect.GetId()}), Synchronous: act.Effect.GetSynchronous()})
		case *vemodel.RequestAction_Fail:
			*state = before
			return &valueentity.ValueEntityReply{CommandId: cmd.GetId(), ClientAction: failure(cmd.GetId(), act.Fail.GetMessage(), false)}
		}
	}
	if forward != nil {
		out.ClientAction = &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Forward{Forward: forward}}
		return out
	}
	msg := ""
	if *state != nil {
		msg = **state
	}
	out.ClientAction = &cloudstate.ClientAction{Action: &cloudstate.ClientAction_Reply{Reply: &cloudstate.Reply{Payload: anyOf(&vemodel.Response{Message: msg})}}}
	return out
}
