package ingress

//lint:file-ignore SA1019 the CloudState TCK requires the v1alpha reflection service.

import (
	"errors"
	"io"
	"slices"

	"github.com/jetstate/jetstate/proxy/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// reflectionService is the full name of the reflection service we serve.
const reflectionService = "grpc.reflection.v1alpha.ServerReflection"

// reflection serves gRPC server reflection (v1alpha) over the user
// function's descriptors, answering as the CloudState TCK expects: the
// service list is always reflection plus the entity services, sorted, and
// an unknown symbol or file yields an empty file list, not an error. The
// stock grpc-go reflection server differs on both points (and would also
// list v1, which the TCK's exact list does not allow).
type reflection struct {
	model *model.Model
}

func (r reflection) ServerReflectionInfo(stream grpc.BidiStreamingServer[rpb.ServerReflectionRequest, rpb.ServerReflectionResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &rpb.ServerReflectionResponse{ValidHost: req.GetHost(), OriginalRequest: req}
		switch q := req.GetMessageRequest().(type) {
		case *rpb.ServerReflectionRequest_ListServices:
			resp.MessageResponse = &rpb.ServerReflectionResponse_ListServicesResponse{ListServicesResponse: r.services()}
		case *rpb.ServerReflectionRequest_FileContainingSymbol:
			var file protoreflect.FileDescriptor
			if d, err := r.model.Files.FindDescriptorByName(protoreflect.FullName(q.FileContainingSymbol)); err == nil {
				file = d.ParentFile()
			}
			resp.MessageResponse = r.files(file)
		case *rpb.ServerReflectionRequest_FileByFilename:
			file, _ := r.model.Files.FindFileByPath(q.FileByFilename)
			resp.MessageResponse = r.files(file)
		default:
			resp.MessageResponse = &rpb.ServerReflectionResponse_ErrorResponse{ErrorResponse: &rpb.ErrorResponse{
				ErrorCode: int32(codes.Unimplemented), ErrorMessage: "not supported by this server",
			}}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (r reflection) services() *rpb.ListServiceResponse {
	names := make([]string, 0, len(r.model.Services))
	for name := range r.model.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	out := &rpb.ListServiceResponse{Service: []*rpb.ServiceResponse{{Name: reflectionService}}}
	for _, n := range names {
		out.Service = append(out.Service, &rpb.ServiceResponse{Name: n})
	}
	return out
}

// files answers with file and its transitive dependencies, file first
// (what grpcurl and other clients expect); nil gives an empty answer.
func (r reflection) files(file protoreflect.FileDescriptor) *rpb.ServerReflectionResponse_FileDescriptorResponse {
	out := &rpb.FileDescriptorResponse{}
	seen := map[string]bool{}
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		if b, err := proto.Marshal(protodesc.ToFileDescriptorProto(f)); err == nil {
			out.FileDescriptorProto = append(out.FileDescriptorProto, b)
		}
		imports := f.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
	}
	if file != nil {
		add(file)
	}
	return &rpb.ServerReflectionResponse_FileDescriptorResponse{FileDescriptorResponse: out}
}
