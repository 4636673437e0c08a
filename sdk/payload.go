package sdk

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// typeURLPrefix is the prefix of every protobuf payload's type URL (spec section 1.9).
const typeURLPrefix = "type.googleapis.com/"

// marshalAny wraps m as an Any with the type URL type.googleapis.com/<full name>. Marshaling is
// deterministic so that equal messages give equal payloads. A typed nil message encodes as the
// empty message of its type.
func marshalAny(m proto.Message) (*anypb.Any, error) {
	if m == nil {
		return nil, errors.New("nil message")
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return &anypb.Any{TypeUrl: typeURLPrefix + string(m.ProtoReflect().Descriptor().FullName()), Value: b}, nil
}

// unmarshalAny decodes a payload with the Go type registered for its type URL
// (protoregistry.GlobalTypes). Unknown types and undecodable bytes are errors.
func unmarshalAny(a *anypb.Any) (proto.Message, error) {
	if a == nil {
		return nil, errors.New("no payload")
	}
	m, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{Resolver: protoregistry.GlobalTypes})
	if errors.Is(err, protoregistry.NotFound) {
		return nil, fmt.Errorf("unknown payload type %q: no Go type is registered for it", a.GetTypeUrl())
	}
	if err != nil {
		return nil, fmt.Errorf("decode payload of type %q: %w", a.GetTypeUrl(), err)
	}
	return m, nil
}

// decodeAs decodes a payload into T. If T is a concrete message type, the payload must be of
// that type; if T is an interface (proto.Message), any registered type is accepted.
func decodeAs[T proto.Message](a *anypb.Any) (T, error) {
	var zero T
	m, err := unmarshalAny(a)
	if err != nil {
		return zero, err
	}
	t, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("payload of type %s, want %s", m.ProtoReflect().Descriptor().FullName(), messageName[T]())
	}
	return t, nil
}

// messageName is the full name of the message type T, or "" if T is an interface type.
func messageName[T proto.Message]() protoreflect.FullName {
	var zero T
	if any(zero) == nil {
		return ""
	}
	return zero.ProtoReflect().Descriptor().FullName()
}

// messageDescriptor is the descriptor of the message type T, or nil if T is an interface type.
func messageDescriptor[T proto.Message]() protoreflect.MessageDescriptor {
	var zero T
	if any(zero) == nil {
		return nil
	}
	return zero.ProtoReflect().Descriptor()
}

// newMessage returns a new empty T. T must be a concrete message type.
func newMessage[T proto.Message]() T {
	var zero T
	return zero.ProtoReflect().Type().New().Interface().(T)
}

// isNil reports whether m is nil or a typed nil pointer.
func isNil(m proto.Message) bool {
	return m == nil || !m.ProtoReflect().IsValid()
}
