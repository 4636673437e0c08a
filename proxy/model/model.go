package model

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/streams"
)

// The entity types of the CloudState protocol, by protocol service name.
const (
	EventSourced = "cloudstate.eventsourced.EventSourced"
	ValueEntity  = "cloudstate.valueentity.ValueEntity"
	CRDT         = "cloudstate.crdt.Crdt"
	Action       = "cloudstate.action.ActionProtocol"
)

// Protocol version this sidecar speaks; a user function must report the
// same major.minor.
const (
	ProtocolMajor = 0
	ProtocolMinor = 2
)

// Field option numbers marking entity key fields.
const (
	entityKeyOption       = 1080
	legacyEntityKeyOption = 50002
)

// TypeURLPrefix is how the protocol names protobuf payloads in an Any.
const TypeURLPrefix = "type.googleapis.com/"

// Model is what discovery learned about the user function: the
// descriptors it serves and, for every method clients may call, the entity
// behind it. A Model is immutable once built.
type Model struct {
	// Spec is the user function's answer to discover.
	Spec *cloudstate.EntitySpec
	// Files resolves every descriptor of the user function.
	Files *protoregistry.Files
	// Services by full name, e.g. "com.example.shoppingcart.ShoppingCart".
	Services map[string]*Service
	// Methods by gRPC path, "/<service>/<method>".
	Methods map[string]*Method
	// Eventing is what the methods' (cloudstate.eventing) options ask for.
	Eventing *Eventing
}

// Service is one user service and the entity type that implements it.
type Service struct {
	Desc protoreflect.ServiceDescriptor
	// EntityType is the protocol service, e.g. EventSourced.
	EntityType string
	// PersistenceID names the entity type's storage (its journal subjects,
	// snapshot and value keys). Defaults to the service's full name.
	PersistenceID string
	// Passivation is the idle timeout the function asked for; 0 means the
	// sidecar's configured default.
	Passivation time.Duration
	// Methods by name.
	Methods map[string]*Method
}

// Method is one callable method of a user service.
type Method struct {
	Service *Service
	Desc    protoreflect.MethodDescriptor
	// Path is the gRPC path "/<service>/<method>".
	Path string
	// InputURL and OutputURL are the Any type URLs of the method's input
	// and output messages.
	InputURL, OutputURL string
	// KeyFields are the input's entity key fields in declaration order.
	KeyFields []protoreflect.FieldDescriptor
}

// BuildModel validates a discovery answer against the entity types this
// sidecar has enabled and builds the Model. Every problem found is listed
// in the returned *ValidationError.
func BuildModel(spec *cloudstate.EntitySpec, enabled []string) (*Model, error) {
	v := &ValidationError{}
	fail := func(format string, args ...any) { v.Problems = append(v.Problems, fmt.Sprintf(format, args...)) }

	info := spec.GetServiceInfo()
	if info.GetProtocolMajorVersion() != ProtocolMajor || info.GetProtocolMinorVersion() != ProtocolMinor {
		fail("incompatible protocol version %d.%d, only %d.%d is supported",
			info.GetProtocolMajorVersion(), info.GetProtocolMinorVersion(), ProtocolMajor, ProtocolMinor)
		return nil, v
	}
	var fds descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(spec.GetProto(), &fds); err != nil {
		fail("descriptor set does not parse: %v", err)
		return nil, v
	}
	files, err := protodesc.NewFiles(&fds)
	if err != nil {
		fail("descriptor set does not build (all imports must be included): %v", err)
		return nil, v
	}
	if len(spec.GetEntities()) == 0 {
		fail("no entities")
	}
	m := &Model{Spec: spec, Files: files, Services: map[string]*Service{}, Methods: map[string]*Method{}}
	for _, ent := range spec.GetEntities() {
		name := ent.GetServiceName()
		d, err := files.FindDescriptorByName(protoreflect.FullName(name))
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if err != nil || !ok {
			fail("service %s not found in the descriptors", name)
			continue
		}
		if !slices.Contains(enabled, ent.GetEntityType()) {
			if ent.GetEntityType() == EventSourced || ent.GetEntityType() == ValueEntity ||
				ent.GetEntityType() == CRDT || ent.GetEntityType() == Action {
				fail("service %s: entity type %s is not enabled in this sidecar", name, ent.GetEntityType())
			} else {
				fail("service %s: unknown entity type %q", name, ent.GetEntityType())
			}
			continue
		}
		if _, dup := m.Services[name]; dup {
			fail("service %s listed twice", name)
			continue
		}
		svc := &Service{
			Desc:          sd,
			EntityType:    ent.GetEntityType(),
			PersistenceID: ent.GetPersistenceId(),
			Methods:       map[string]*Method{},
		}
		if svc.PersistenceID == "" {
			svc.PersistenceID = name
		}
		if t := ent.GetPassivationStrategy().GetTimeout().GetTimeout(); t > 0 {
			svc.Passivation = time.Duration(t) * time.Millisecond
		}
		m.Services[name] = svc
		methods := sd.Methods()
		for i := range methods.Len() {
			md := methods.Get(i)
			meth := &Method{
				Service:   svc,
				Desc:      md,
				Path:      "/" + name + "/" + string(md.Name()),
				InputURL:  TypeURLPrefix + string(md.Input().FullName()),
				OutputURL: TypeURLPrefix + string(md.Output().FullName()),
				KeyFields: keyFields(md.Input()),
			}
			switch svc.EntityType {
			case EventSourced, ValueEntity:
				if md.IsStreamingClient() || md.IsStreamingServer() {
					fail("%s: %s methods must be unary", meth.Path, shortType(svc.EntityType))
				}
				if len(meth.KeyFields) == 0 {
					fail("%s: input %s has no entity key field (option (cloudstate.entity_key) = true)", meth.Path, md.Input().FullName())
				}
			case CRDT:
				if md.IsStreamingClient() {
					fail("%s: CRDT methods must not be client-streaming", meth.Path)
				}
				if len(meth.KeyFields) == 0 {
					fail("%s: input %s has no entity key field (option (cloudstate.entity_key) = true)", meth.Path, md.Input().FullName())
				}
			}
			svc.Methods[string(md.Name())] = meth
			m.Methods[meth.Path] = meth
		}
	}
	if len(v.Problems) == 0 {
		m.Eventing = buildEventing(m, fail)
	}
	if len(v.Problems) > 0 {
		return nil, v
	}
	return m, nil
}

func shortType(entityType string) string {
	return entityType[strings.LastIndexByte(entityType, '.')+1:]
}

// keyFields returns the fields of msg marked as entity keys, by either the
// current option (1080) or the legacy one (50002), in declaration order.
// The options are read from their wire form, so this works whether or not
// the extensions were registered when the descriptors were parsed.
func keyFields(msg protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	var keys []protoreflect.FieldDescriptor
	fields := msg.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if isKeyField(fd) {
			keys = append(keys, fd)
		}
	}
	return keys
}

func isKeyField(fd protoreflect.FieldDescriptor) bool {
	opts := fd.Options()
	if opts == nil {
		return false
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(opts)
	if err != nil {
		return false
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if (num == entityKeyOption || num == legacyEntityKeyOption) && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			if v != 0 {
				return true
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return false
}

// Decode parses a serialized request to m, so that malformed input is
// refused before it reaches the user function.
func (m *Method) Decode(request []byte) (*dynamicpb.Message, error) {
	msg := dynamicpb.NewMessage(m.Desc.Input())
	if err := proto.Unmarshal(request, msg); err != nil {
		return nil, fmt.Errorf("%w: not a valid %s: %v", ErrBadRequest, m.Desc.Input().FullName(), err)
	}
	return msg, nil
}

// EntityKey extracts the entity id from a serialized request to m: the key
// fields' values, joined with "-" when there are several. Strings are used
// as they are, numbers in decimal, booleans as true/false, bytes as their
// raw content. Methods without key fields (actions) have the id "".
func (m *Method) EntityKey(request []byte) (string, error) {
	msg, err := m.Decode(request)
	if err != nil {
		return "", err
	}
	return m.KeyOf(msg)
}

// KeyOf is EntityKey of a decoded request.
func (m *Method) KeyOf(msg *dynamicpb.Message) (string, error) {
	if len(m.KeyFields) == 0 {
		return "", nil
	}
	parts := make([]string, len(m.KeyFields))
	for i, fd := range m.KeyFields {
		s, err := keyString(fd, msg.Get(fd))
		if err != nil {
			return "", err
		}
		parts[i] = s
	}
	return strings.Join(parts, "-"), nil
}

func keyString(fd protoreflect.FieldDescriptor, v protoreflect.Value) (string, error) {
	if fd.IsList() || fd.IsMap() {
		return "", fmt.Errorf("%w: key field %s is repeated", streams.ErrInvalidKey, fd.Name())
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		return v.String(), nil
	case protoreflect.BytesKind:
		return string(v.Bytes()), nil
	case protoreflect.BoolKind:
		return strconv.FormatBool(v.Bool()), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.FormatInt(v.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.FormatUint(v.Uint(), 10), nil
	case protoreflect.EnumKind:
		return strconv.FormatInt(int64(v.Enum()), 10), nil
	}
	return "", fmt.Errorf("%w: key field %s has unsupported type %s", streams.ErrInvalidKey, fd.Name(), fd.Kind())
}

// TakesAny reports whether m's input is google.protobuf.Any (it takes any
// event of an eventing source).
func (m *Method) TakesAny() bool { return m.Desc.Input().FullName() == anyName }
