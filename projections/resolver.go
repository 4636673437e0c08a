package projections

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// NewResolver returns a Config.Resolver for the message types of the given
// descriptor sets (as `buf build -o x.binpb` or `protoc
// --descriptor_set_out` write them). A file's imports are found in the
// sets or, failing that, among the files linked into the program (the
// well-known types), so a set built without its imports works as long as
// they are well-known. Files of the same name in several sets must be
// identical; the first wins.
func NewResolver(sets ...*descriptorpb.FileDescriptorSet) (*dynamicpb.Types, error) {
	protos := map[string]*descriptorpb.FileDescriptorProto{}
	var order []string
	for _, set := range sets {
		for _, fd := range set.GetFile() {
			if _, dup := protos[fd.GetName()]; !dup {
				protos[fd.GetName()] = fd
				order = append(order, fd.GetName())
			}
		}
	}
	files := new(protoregistry.Files)
	visiting := map[string]bool{}
	var add func(name string) error
	add = func(name string) error {
		if _, err := files.FindFileByPath(name); err == nil {
			return nil
		}
		fd, ok := protos[name]
		if !ok {
			global, err := protoregistry.GlobalFiles.FindFileByPath(name)
			if err != nil {
				return fmt.Errorf("descriptor %s: not in the descriptor sets (build them with their imports)", name)
			}
			return registerWithImports(files, global)
		}
		if visiting[name] {
			return fmt.Errorf("descriptor %s: import cycle", name)
		}
		visiting[name] = true
		for _, dep := range fd.GetDependency() {
			if err := add(dep); err != nil {
				return err
			}
		}
		f, err := protodesc.NewFile(fd, files)
		if err != nil {
			return fmt.Errorf("descriptor %s: %w", name, err)
		}
		return files.RegisterFile(f)
	}
	var errs []error
	for _, name := range order {
		errs = append(errs, add(name))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return dynamicpb.NewTypes(files), nil
}

// registerWithImports registers a linked-in file and its imports.
func registerWithImports(files *protoregistry.Files, f protoreflect.FileDescriptor) error {
	if _, err := files.FindFileByPath(f.Path()); err == nil {
		return nil
	}
	imports := f.Imports()
	for i := range imports.Len() {
		if err := registerWithImports(files, imports.Get(i).FileDescriptor); err != nil {
			return err
		}
	}
	return files.RegisterFile(f)
}
