package protocol_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/protocol/cloudstate/action"
	"github.com/jetstate/jetstate/protocol/cloudstate/crdt"
	"github.com/jetstate/jetstate/protocol/cloudstate/eventsourced"
	"github.com/jetstate/jetstate/protocol/cloudstate/valueentity"
)

// The files as user functions import them, with their proto packages.
func TestFiles(t *testing.T) {
	tests := []struct {
		file protoreflect.FileDescriptor
		path string
		pkg  protoreflect.FullName
	}{
		{cloudstate.File_cloudstate_entity_proto, "cloudstate/entity.proto", "cloudstate"},
		{cloudstate.File_cloudstate_entity_key_proto, "cloudstate/entity_key.proto", "cloudstate"},
		{cloudstate.File_cloudstate_legacy_entity_key_proto, "cloudstate/legacy_entity_key.proto", "cloudstate"},
		{cloudstate.File_cloudstate_eventing_proto, "cloudstate/eventing.proto", "cloudstate"},
		{eventsourced.File_cloudstate_event_sourced_proto, "cloudstate/event_sourced.proto", "cloudstate.eventsourced"},
		{valueentity.File_cloudstate_value_entity_proto, "cloudstate/value_entity.proto", "cloudstate.valueentity"},
		{crdt.File_cloudstate_crdt_proto, "cloudstate/crdt.proto", "cloudstate.crdt"},
		{action.File_cloudstate_action_proto, "cloudstate/action.proto", "cloudstate.action"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := tt.file.Path(); got != tt.path {
				t.Errorf("path = %q, want %q", got, tt.path)
			}
			if got := tt.file.Package(); got != tt.pkg {
				t.Errorf("package = %q, want %q", got, tt.pkg)
			}
			if got := tt.file.Syntax(); got != protoreflect.Proto3 {
				t.Errorf("syntax = %v, want proto3", got)
			}
		})
	}
}

// Field numbers and types are the wire format shared with every CloudState user function.
func TestFields(t *testing.T) {
	tests := []struct {
		msg     protoreflect.ProtoMessage
		field   protoreflect.Name
		number  protoreflect.FieldNumber
		kind    protoreflect.Kind
		message protoreflect.FullName // for message fields
		list    bool
		oneof   protoreflect.Name
	}{
		{msg: &cloudstate.Command{}, field: "entity_id", number: 1, kind: protoreflect.StringKind},
		{msg: &cloudstate.Command{}, field: "id", number: 2, kind: protoreflect.Int64Kind},
		{msg: &cloudstate.Command{}, field: "streamed", number: 5, kind: protoreflect.BoolKind},
		{msg: &cloudstate.Command{}, field: "metadata", number: 6, kind: protoreflect.MessageKind, message: "cloudstate.Metadata"},
		{msg: &cloudstate.MetadataEntry{}, field: "bytes_value", number: 3, kind: protoreflect.BytesKind, oneof: "value"},
		{msg: &cloudstate.Failure{}, field: "command_id", number: 1, kind: protoreflect.Int64Kind},
		{msg: &cloudstate.Failure{}, field: "restart", number: 3, kind: protoreflect.BoolKind},
		{msg: &cloudstate.ClientAction{}, field: "failure", number: 3, kind: protoreflect.MessageKind, message: "cloudstate.Failure", oneof: "action"},
		{msg: &cloudstate.SideEffect{}, field: "synchronous", number: 4, kind: protoreflect.BoolKind},
		{msg: &cloudstate.EntitySpec{}, field: "proto", number: 1, kind: protoreflect.BytesKind},
		{msg: &cloudstate.EntitySpec{}, field: "service_info", number: 3, kind: protoreflect.MessageKind, message: "cloudstate.ServiceInfo"},
		{msg: &cloudstate.Entity{}, field: "passivation_strategy", number: 4, kind: protoreflect.MessageKind, message: "cloudstate.EntityPassivationStrategy"},
		{msg: &cloudstate.TimeoutPassivationStrategy{}, field: "timeout", number: 1, kind: protoreflect.Int64Kind},
		{msg: &cloudstate.ServiceInfo{}, field: "protocol_major_version", number: 6, kind: protoreflect.Int32Kind},
		{msg: &cloudstate.ServiceInfo{}, field: "protocol_minor_version", number: 7, kind: protoreflect.Int32Kind},
		{msg: &cloudstate.ProxyInfo{}, field: "supported_entity_types", number: 5, kind: protoreflect.StringKind, list: true},
		{msg: &cloudstate.EventSource{}, field: "event_log", number: 3, kind: protoreflect.StringKind, oneof: "source"},
		{msg: &eventsourced.EventSourcedStreamIn{}, field: "command", number: 3, kind: protoreflect.MessageKind, message: "cloudstate.Command", oneof: "message"},
		{msg: &eventsourced.EventSourcedSnapshot{}, field: "snapshot_sequence", number: 1, kind: protoreflect.Int64Kind},
		{msg: &eventsourced.EventSourcedReply{}, field: "events", number: 4, kind: protoreflect.MessageKind, message: "google.protobuf.Any", list: true},
		{msg: &eventsourced.EventSourcedReply{}, field: "snapshot", number: 5, kind: protoreflect.MessageKind, message: "google.protobuf.Any"},
		{msg: &valueentity.ValueEntityInit{}, field: "state", number: 3, kind: protoreflect.MessageKind, message: "cloudstate.valueentity.ValueEntityInitState"},
		{msg: &valueentity.ValueEntityInitState{}, field: "value", number: 1, kind: protoreflect.MessageKind, message: "google.protobuf.Any"},
		{msg: &valueentity.ValueEntityReply{}, field: "state_action", number: 4, kind: protoreflect.MessageKind, message: "cloudstate.valueentity.ValueEntityAction"},
		{msg: &crdt.CrdtStreamIn{}, field: "stream_cancelled", number: 5, kind: protoreflect.MessageKind, message: "cloudstate.StreamCancelled", oneof: "message"},
		{msg: &crdt.CrdtReply{}, field: "side_effects", number: 4, kind: protoreflect.MessageKind, message: "cloudstate.SideEffect", list: true},
		{msg: &crdt.CrdtReply{}, field: "streamed", number: 6, kind: protoreflect.BoolKind},
		{msg: &crdt.CrdtDelta{}, field: "vote", number: 8, kind: protoreflect.MessageKind, message: "cloudstate.crdt.VoteDelta", oneof: "delta"},
		{msg: &crdt.PNCounterDelta{}, field: "change", number: 1, kind: protoreflect.Sint64Kind},
		{msg: &crdt.GCounterDelta{}, field: "increment", number: 1, kind: protoreflect.Uint64Kind},
		{msg: &crdt.CrdtStateAction{}, field: "write_consistency", number: 3, kind: protoreflect.EnumKind},
		{msg: &action.ActionCommand{}, field: "service_name", number: 2, kind: protoreflect.StringKind},
		{msg: &action.ActionResponse{}, field: "side_effects", number: 4, kind: protoreflect.MessageKind, message: "cloudstate.SideEffect", list: true},
		{msg: &httpbody.HttpBody{}, field: "data", number: 2, kind: protoreflect.BytesKind},
	}
	for _, tt := range tests {
		md := tt.msg.ProtoReflect().Descriptor()
		t.Run(string(md.FullName())+"."+string(tt.field), func(t *testing.T) {
			fd := md.Fields().ByName(tt.field)
			if fd == nil {
				t.Fatalf("no field %s", tt.field)
			}
			if fd.Number() != tt.number {
				t.Errorf("number = %d, want %d", fd.Number(), tt.number)
			}
			if fd.Kind() != tt.kind {
				t.Errorf("kind = %v, want %v", fd.Kind(), tt.kind)
			}
			if tt.message != "" && fd.Message().FullName() != tt.message {
				t.Errorf("message type = %s, want %s", fd.Message().FullName(), tt.message)
			}
			if fd.IsList() != tt.list {
				t.Errorf("repeated = %v, want %v", fd.IsList(), tt.list)
			}
			var oneof protoreflect.Name
			if o := fd.ContainingOneof(); o != nil {
				oneof = o.Name()
			}
			if oneof != tt.oneof {
				t.Errorf("oneof = %q, want %q", oneof, tt.oneof)
			}
		})
	}
}

func TestEnums(t *testing.T) {
	tests := []struct {
		enum   protoreflect.EnumDescriptor
		values []protoreflect.Name // by number from 0
	}{
		{crdt.CrdtWriteConsistency_LOCAL.Descriptor(), []protoreflect.Name{"LOCAL", "MAJORITY", "ALL"}},
		{crdt.CrdtClock_DEFAULT.Descriptor(), []protoreflect.Name{"DEFAULT", "REVERSE", "CUSTOM", "CUSTOM_AUTO_INCREMENT"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.enum.FullName()), func(t *testing.T) {
			if got := tt.enum.Values().Len(); got != len(tt.values) {
				t.Errorf("%d values, want %d", got, len(tt.values))
			}
			for n, name := range tt.values {
				v := tt.enum.Values().ByNumber(protoreflect.EnumNumber(n))
				if v == nil || v.Name() != name {
					t.Errorf("value %d = %v, want %s", n, v, name)
				}
			}
		})
	}
}

// The options user functions put on their own descriptors.
func TestExtensions(t *testing.T) {
	tests := []struct {
		ext      protoreflect.ExtensionType
		name     protoreflect.FullName
		number   protoreflect.FieldNumber
		extendee protoreflect.FullName
		kind     protoreflect.Kind
	}{
		{cloudstate.E_EntityKey, "cloudstate.entity_key", 1080, "google.protobuf.FieldOptions", protoreflect.BoolKind},
		{cloudstate.E_LegacyEntityKey, "cloudstate.legacy_entity_key", 50002, "google.protobuf.FieldOptions", protoreflect.BoolKind},
		{cloudstate.E_Eventing, "cloudstate.eventing", 1081, "google.protobuf.MethodOptions", protoreflect.MessageKind},
		{annotations.E_Http, "google.api.http", 72295728, "google.protobuf.MethodOptions", protoreflect.MessageKind},
	}
	for _, tt := range tests {
		t.Run(string(tt.name), func(t *testing.T) {
			xd := tt.ext.TypeDescriptor()
			if xd.FullName() != tt.name {
				t.Errorf("name = %s, want %s", xd.FullName(), tt.name)
			}
			if xd.Number() != tt.number {
				t.Errorf("number = %d, want %d", xd.Number(), tt.number)
			}
			if got := xd.ContainingMessage().FullName(); got != tt.extendee {
				t.Errorf("extends %s, want %s", got, tt.extendee)
			}
			if xd.Kind() != tt.kind {
				t.Errorf("kind = %v, want %v", xd.Kind(), tt.kind)
			}
		})
	}
}

// The rpc names are lowerCamel: they are the gRPC paths the proxy calls.
func TestServices(t *testing.T) {
	type method struct {
		name           protoreflect.Name
		in, out        protoreflect.FullName
		client, server bool // streaming
	}
	tests := []struct {
		service protoreflect.FullName
		methods []method
	}{
		{"cloudstate.EntityDiscovery", []method{
			{"discover", "cloudstate.ProxyInfo", "cloudstate.EntitySpec", false, false},
			{"reportError", "cloudstate.UserFunctionError", "google.protobuf.Empty", false, false},
		}},
		{"cloudstate.eventsourced.EventSourced", []method{
			{"handle", "cloudstate.eventsourced.EventSourcedStreamIn", "cloudstate.eventsourced.EventSourcedStreamOut", true, true},
		}},
		{"cloudstate.valueentity.ValueEntity", []method{
			{"handle", "cloudstate.valueentity.ValueEntityStreamIn", "cloudstate.valueentity.ValueEntityStreamOut", true, true},
		}},
		{"cloudstate.crdt.Crdt", []method{
			{"handle", "cloudstate.crdt.CrdtStreamIn", "cloudstate.crdt.CrdtStreamOut", true, true},
		}},
		{"cloudstate.action.ActionProtocol", []method{
			{"handleUnary", "cloudstate.action.ActionCommand", "cloudstate.action.ActionResponse", false, false},
			{"handleStreamedIn", "cloudstate.action.ActionCommand", "cloudstate.action.ActionResponse", true, false},
			{"handleStreamedOut", "cloudstate.action.ActionCommand", "cloudstate.action.ActionResponse", false, true},
			{"handleStreamed", "cloudstate.action.ActionCommand", "cloudstate.action.ActionResponse", true, true},
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.service), func(t *testing.T) {
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(tt.service)
			if err != nil {
				t.Fatal(err)
			}
			sd, ok := d.(protoreflect.ServiceDescriptor)
			if !ok {
				t.Fatalf("%s is a %T", tt.service, d)
			}
			if got := sd.Methods().Len(); got != len(tt.methods) {
				t.Errorf("%d methods, want %d", got, len(tt.methods))
			}
			for _, m := range tt.methods {
				md := sd.Methods().ByName(m.name)
				if md == nil {
					t.Errorf("no method %s", m.name)
					continue
				}
				if md.Input().FullName() != m.in || md.Output().FullName() != m.out {
					t.Errorf("%s(%s) returns (%s), want (%s) returns (%s)", m.name, md.Input().FullName(), md.Output().FullName(), m.in, m.out)
				}
				if md.IsStreamingClient() != m.client || md.IsStreamingServer() != m.server {
					t.Errorf("%s streams client %v server %v, want %v %v", m.name, md.IsStreamingClient(), md.IsStreamingServer(), m.client, m.server)
				}
			}
		})
	}
}

// The generated gRPC code must use the same service names and paths.
func TestGRPCNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{cloudstate.EntityDiscovery_ServiceDesc.ServiceName, "cloudstate.EntityDiscovery"},
		{cloudstate.EntityDiscovery_Discover_FullMethodName, "/cloudstate.EntityDiscovery/discover"},
		{cloudstate.EntityDiscovery_ReportError_FullMethodName, "/cloudstate.EntityDiscovery/reportError"},
		{eventsourced.EventSourced_Handle_FullMethodName, "/cloudstate.eventsourced.EventSourced/handle"},
		{valueentity.ValueEntity_Handle_FullMethodName, "/cloudstate.valueentity.ValueEntity/handle"},
		{crdt.Crdt_Handle_FullMethodName, "/cloudstate.crdt.Crdt/handle"},
		{action.ActionProtocol_HandleUnary_FullMethodName, "/cloudstate.action.ActionProtocol/handleUnary"},
		{action.ActionProtocol_HandleStreamed_FullMethodName, "/cloudstate.action.ActionProtocol/handleStreamed"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// protocol/google/api holds copies of the google/api files for imports only. Their Go types are
// the ones in google.golang.org/genproto/googleapis/api; generating our own would register the
// same files twice and panic at init.
func TestGoogleAPI(t *testing.T) {
	tests := []struct {
		file string
		desc protoreflect.FileDescriptor
	}{
		{"annotations.proto", annotations.File_google_api_annotations_proto},
		{"http.proto", annotations.File_google_api_http_proto},
		{"httpbody.proto", httpbody.File_google_api_httpbody_proto},
	}
	goPackage := regexp.MustCompile(`(?m)^option go_package = "([^"]+)";`)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("google", "api", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			m := goPackage.FindSubmatch(src)
			if m == nil {
				t.Fatal("no go_package option")
			}
			want := tt.desc.Options().(*descriptorpb.FileOptions).GetGoPackage()
			if string(m[1]) != want {
				t.Errorf("go_package = %q, want %q (the Go types jetstate uses)", m[1], want)
			}
			if got := tt.desc.Path(); got != "google/api/"+tt.file {
				t.Errorf("registered as %q", got)
			}
		})
	}

	goFiles, err := filepath.Glob(filepath.Join("google", "*", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	if len(goFiles) > 0 {
		t.Errorf("Go code generated for google/api: %v", goFiles)
	}
}
