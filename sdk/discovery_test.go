package sdk_test

import (
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/sdk"
)

// TestDiscover checks the discovery answer (spec sections 1.1-1.3, TCK items 46, 47, 70, 71).
func TestDiscover(t *testing.T) {
	reported := make(chan string, 1)
	conn := serve(t, sdk.Config{ServiceName: "model", ServiceVersion: "1.2.3", OnReportError: func(m string) { reported <- m }},
		esModelEntity(sdk.EventSourcedConfig{PassivationTimeout: 100 * time.Millisecond}),
		esTwoEntity(),
		veModelEntity(sdk.ValueEntityConfig{PersistenceID: "value-entity-model", PassivationTimeout: 2 * time.Second}),
		veTwoEntity(),
	)
	client := cloudstate.NewEntityDiscoveryClient(conn)
	spec, err := client.Discover(streamCtx(t), &cloudstate.ProxyInfo{
		ProtocolMajorVersion: 0, ProtocolMinorVersion: 2, ProxyName: "test", ProxyVersion: "0",
		SupportedEntityTypes: []string{"cloudstate.eventsourced.EventSourced", "cloudstate.valueentity.ValueEntity"},
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("entities", func(t *testing.T) {
		timeout := func(ms int64) *cloudstate.EntityPassivationStrategy {
			return &cloudstate.EntityPassivationStrategy{Strategy: &cloudstate.EntityPassivationStrategy_Timeout{Timeout: &cloudstate.TimeoutPassivationStrategy{Timeout: ms}}}
		}
		want := []*cloudstate.Entity{
			{EntityType: "cloudstate.eventsourced.EventSourced", ServiceName: esModel, PersistenceId: "event-sourced-model", PassivationStrategy: timeout(100)},
			{EntityType: "cloudstate.eventsourced.EventSourced", ServiceName: esTwo, PersistenceId: "EventSourcedTwo"},
			{EntityType: "cloudstate.valueentity.ValueEntity", ServiceName: veModel, PersistenceId: "value-entity-model", PassivationStrategy: timeout(2000)},
			{EntityType: "cloudstate.valueentity.ValueEntity", ServiceName: veTwo, PersistenceId: "ValueEntityTwo"},
		}
		if diff := cmp.Diff(want, spec.GetEntities(), protocmp.Transform()); diff != "" {
			t.Errorf("entities (-want +got):\n%s", diff)
		}
	})

	t.Run("service info", func(t *testing.T) {
		want := &cloudstate.ServiceInfo{
			ServiceName: "model", ServiceVersion: "1.2.3",
			ServiceRuntime:     "go " + strings.TrimPrefix(runtime.Version(), "go"),
			SupportLibraryName: "jetstate-go-sdk", SupportLibraryVersion: sdk.SupportLibraryVersion,
			ProtocolMajorVersion: 0, ProtocolMinorVersion: 2,
		}
		if diff := cmp.Diff(want, spec.GetServiceInfo(), protocmp.Transform()); diff != "" {
			t.Errorf("service info (-want +got):\n%s", diff)
		}
	})

	t.Run("descriptors", func(t *testing.T) {
		var set descriptorpb.FileDescriptorSet
		if err := proto.Unmarshal(spec.GetProto(), &set); err != nil {
			t.Fatal(err)
		}
		// Self-contained: it builds without any other registry.
		files, err := protodesc.NewFiles(&set)
		if err != nil {
			t.Fatalf("the descriptor set does not build: %v", err)
		}
		for _, name := range []string{esModel, esTwo, veModel, veTwo} {
			d, err := files.FindDescriptorByName(protoreflect.FullName(name))
			if err != nil {
				t.Errorf("service %s: %v", name, err)
				continue
			}
			if _, ok := d.(protoreflect.ServiceDescriptor); !ok {
				t.Errorf("%s is a %T, not a service", name, d)
			}
		}
		// Dependencies come before the files that import them, and each file once.
		var paths []string
		for _, f := range set.GetFile() {
			for _, dep := range f.GetDependency() {
				if !slices.Contains(paths, dep) {
					t.Errorf("%s comes before its import %s", f.GetName(), dep)
				}
			}
			if slices.Contains(paths, f.GetName()) {
				t.Errorf("%s appears twice", f.GetName())
			}
			paths = append(paths, f.GetName())
		}
		want := []string{"google/protobuf/descriptor.proto", "cloudstate/entity_key.proto", "testmodel/testmodel.proto"}
		if !cmp.Equal(want, paths) {
			t.Errorf("files = %v, want %v", paths, want)
		}
		// The entity key option survives, so the proxy can find entity ids.
		md, err := files.FindDescriptorByName("jetstate.sdk.testmodel.Request")
		if err != nil {
			t.Fatal(err)
		}
		opts := md.(protoreflect.MessageDescriptor).Fields().ByName("id").Options()
		if !proto.GetExtension(opts, cloudstate.E_EntityKey).(bool) {
			t.Error("Request.id lost its (cloudstate.entity_key) option")
		}
	})

	t.Run("report error", func(t *testing.T) {
		if _, err := client.ReportError(streamCtx(t), &cloudstate.UserFunctionError{Message: "unknown forward target"}); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-reported:
			if got != "unknown forward target" {
				t.Errorf("reported %q", got)
			}
		case <-time.After(recvTimeout):
			t.Fatal("OnReportError was not called")
		}
	})
}

// TestDiscoverDefaults: without names in Config, ServiceInfo names the first entity's service.
func TestDiscoverDefaults(t *testing.T) {
	conn := serve(t, sdk.Config{}, veTwoEntity(), esTwoEntity())
	spec, err := cloudstate.NewEntityDiscoveryClient(conn).Discover(streamCtx(t), &cloudstate.ProxyInfo{ProtocolMinorVersion: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.GetServiceInfo().GetServiceName(); got != veTwo {
		t.Errorf("service name %q, want %q", got, veTwo)
	}
	if got := spec.GetServiceInfo().GetServiceVersion(); got == "" {
		t.Error("empty service version")
	}
}

// TestDiscoverCrdtAndActions: CRDT entities and actions are reported with their entity types;
// a CRDT's persistence id defaults to its service's full name, an action has none.
func TestDiscoverCrdtAndActions(t *testing.T) {
	conn := serve(t, sdk.Config{},
		crdtModelEntity(sdk.CrdtConfig{Passivation: 100 * time.Millisecond}),
		crdtTwoEntity(),
		actionModelEntity(), actionTwoEntity())
	spec, err := cloudstate.NewEntityDiscoveryClient(conn).Discover(streamCtx(t), &cloudstate.ProxyInfo{ProtocolMinorVersion: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := []*cloudstate.Entity{
		{EntityType: "cloudstate.crdt.Crdt", ServiceName: crdtModel, PersistenceId: crdtModel, PassivationStrategy: &cloudstate.EntityPassivationStrategy{
			Strategy: &cloudstate.EntityPassivationStrategy_Timeout{Timeout: &cloudstate.TimeoutPassivationStrategy{Timeout: 100}},
		}},
		{EntityType: "cloudstate.crdt.Crdt", ServiceName: crdtTwo, PersistenceId: crdtTwo},
		{EntityType: "cloudstate.action.ActionProtocol", ServiceName: actionModel},
		{EntityType: "cloudstate.action.ActionProtocol", ServiceName: actionTwo},
	}
	if diff := cmp.Diff(want, spec.GetEntities(), protocmp.Transform()); diff != "" {
		t.Errorf("entities (-want +got):\n%s", diff)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(spec.GetProto(), &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatalf("the descriptor set does not build: %v", err)
	}
	for _, name := range []string{crdtModel, crdtTwo, actionModel, actionTwo} {
		if _, err := files.FindDescriptorByName(protoreflect.FullName(name)); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
	}
}
