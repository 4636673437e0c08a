package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
)

// What the SDK reports about itself in ServiceInfo.
const (
	SupportLibraryName    = "jetstate-go-sdk"
	SupportLibraryVersion = "0.1.0"
	// ProtocolMajorVersion and ProtocolMinorVersion are the CloudState protocol version the SDK
	// speaks; the proxy refuses any other.
	ProtocolMajorVersion = 0
	ProtocolMinorVersion = 2
)

// buildSpec is the discovery answer: the entities, the service info, and a self-contained
// FileDescriptorSet holding the files of the entities' services and persisted types with all
// their transitive imports, dependencies first. It is built from the Go protobuf registry, never
// from files on disk.
func buildSpec(cfg Config, defs []*entityDef) (*cloudstate.EntitySpec, error) {
	var (
		files []protoreflect.FileDescriptor
		seen  = map[string]bool{}
		add   func(fd protoreflect.FileDescriptor)
	)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] || fd.IsPlaceholder() {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		files = append(files, fd)
	}
	spec := &cloudstate.EntitySpec{ServiceInfo: serviceInfo(cfg, defs)}
	for _, d := range defs {
		add(d.service.ParentFile())
		for _, t := range d.types {
			add(t.ParentFile())
		}
		spec.Entities = append(spec.Entities, d.spec())
	}
	set := &descriptorpb.FileDescriptorSet{}
	for _, fd := range files {
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("encode descriptors: %w", err)
	}
	spec.Proto = b
	return spec, nil
}

func serviceInfo(cfg Config, defs []*entityDef) *cloudstate.ServiceInfo {
	name, version := cfg.ServiceName, cfg.ServiceVersion
	if name == "" && len(defs) > 0 {
		name = defs[0].serviceName
	}
	if version == "" {
		version = "0.0.0"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
	}
	return &cloudstate.ServiceInfo{
		ServiceName:           name,
		ServiceVersion:        version,
		ServiceRuntime:        "go " + strings.TrimPrefix(runtime.Version(), "go"),
		SupportLibraryName:    SupportLibraryName,
		SupportLibraryVersion: SupportLibraryVersion,
		ProtocolMajorVersion:  ProtocolMajorVersion,
		ProtocolMinorVersion:  ProtocolMinorVersion,
	}
}

// discoveryService serves cloudstate.EntityDiscovery.
type discoveryService struct {
	cloudstate.UnimplementedEntityDiscoveryServer
	s *Server
}

// Discover answers the proxy's handshake with the spec built by New. It logs the proxy's info
// and warns about entity types the proxy does not support (the proxy then refuses the spec).
func (d discoveryService) Discover(_ context.Context, info *cloudstate.ProxyInfo) (*cloudstate.EntitySpec, error) {
	d.s.log.Info("proxy discovered the user function",
		slog.String("proxy", info.GetProxyName()), slog.String("proxy_version", info.GetProxyVersion()),
		slog.String("protocol", fmt.Sprintf("%d.%d", info.GetProtocolMajorVersion(), info.GetProtocolMinorVersion())))
	if info.GetProtocolMajorVersion() != ProtocolMajorVersion || info.GetProtocolMinorVersion() != ProtocolMinorVersion {
		d.s.log.Warn("proxy speaks another protocol version",
			slog.String("proxy_protocol", fmt.Sprintf("%d.%d", info.GetProtocolMajorVersion(), info.GetProtocolMinorVersion())),
			slog.String("protocol", fmt.Sprintf("%d.%d", ProtocolMajorVersion, ProtocolMinorVersion)))
	}
	if supported := info.GetSupportedEntityTypes(); len(supported) > 0 {
		for _, e := range d.s.spec.GetEntities() {
			if !slices.Contains(supported, e.GetEntityType()) {
				d.s.log.Warn("proxy does not support an entity type", slog.String(keyService, e.GetServiceName()), slog.String("entity_type", e.GetEntityType()))
			}
		}
	}
	return d.s.spec, nil
}

// ReportError logs an error the proxy found in what the user function did, and passes it to
// Config.OnReportError.
func (d discoveryService) ReportError(_ context.Context, e *cloudstate.UserFunctionError) (*emptypb.Empty, error) {
	d.s.log.Error("proxy reported an error", slog.String("message", e.GetMessage()))
	if hook := d.s.cfg.OnReportError; hook != nil {
		hook(e.GetMessage())
	}
	return &emptypb.Empty{}, nil
}
