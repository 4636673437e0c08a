package sdk

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Primitive values as CloudState encodes them in Any (spec section 1.9): the type URL
// p.cloudstate.io/<type>, the value in field 1 of a message, omitted when it is the zero value,
// so that equal values have equal bytes. CRDT set elements and map keys are often primitives.

const primitivePrefix = "p.cloudstate.io/"

// Type URLs of the primitives.
const (
	TypeURLString = primitivePrefix + "string"
	TypeURLBytes  = primitivePrefix + "bytes"
	TypeURLBool   = primitivePrefix + "bool"
	TypeURLInt32  = primitivePrefix + "int32"
	TypeURLInt64  = primitivePrefix + "int64"
	TypeURLFloat  = primitivePrefix + "float"
	TypeURLDouble = primitivePrefix + "double"
)

// String is s as a p.cloudstate.io/string Any.
func String(s string) *anypb.Any {
	var b []byte
	if s != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	return &anypb.Any{TypeUrl: TypeURLString, Value: b}
}

// StringValue is the string a p.cloudstate.io/string Any holds; false for any other Any.
func StringValue(a *anypb.Any) (string, bool) {
	b, ok := primitiveField(a, TypeURLString, protowire.BytesType)
	if !ok {
		return "", false
	}
	if b == nil {
		return "", true
	}
	v, n := protowire.ConsumeBytes(b)
	return string(v), n >= 0
}

// Bytes is b as a p.cloudstate.io/bytes Any.
func Bytes(b []byte) *anypb.Any {
	var v []byte
	if len(b) > 0 {
		v = protowire.AppendTag(v, 1, protowire.BytesType)
		v = protowire.AppendBytes(v, b)
	}
	return &anypb.Any{TypeUrl: TypeURLBytes, Value: v}
}

// BytesValue is the bytes a p.cloudstate.io/bytes Any holds; false for any other Any.
func BytesValue(a *anypb.Any) ([]byte, bool) {
	b, ok := primitiveField(a, TypeURLBytes, protowire.BytesType)
	if !ok || b == nil {
		return nil, ok
	}
	v, n := protowire.ConsumeBytes(b)
	return append([]byte(nil), v...), n >= 0
}

// Bool is v as a p.cloudstate.io/bool Any.
func Bool(v bool) *anypb.Any {
	return varintAny(TypeURLBool, protowire.EncodeBool(v))
}

// BoolValue is the bool a p.cloudstate.io/bool Any holds; false, false for any other Any.
func BoolValue(a *anypb.Any) (bool, bool) {
	v, ok := varintValue(a, TypeURLBool)
	return v != 0, ok
}

// Int32 is v as a p.cloudstate.io/int32 Any.
func Int32(v int32) *anypb.Any { return varintAny(TypeURLInt32, uint64(int64(v))) }

// Int32Value is the int32 a p.cloudstate.io/int32 Any holds; false for any other Any.
func Int32Value(a *anypb.Any) (int32, bool) {
	v, ok := varintValue(a, TypeURLInt32)
	return int32(v), ok
}

// Int64 is v as a p.cloudstate.io/int64 Any.
func Int64(v int64) *anypb.Any { return varintAny(TypeURLInt64, uint64(v)) }

// Int64Value is the int64 a p.cloudstate.io/int64 Any holds; false for any other Any.
func Int64Value(a *anypb.Any) (int64, bool) {
	v, ok := varintValue(a, TypeURLInt64)
	return int64(v), ok
}

// Float is v as a p.cloudstate.io/float Any.
func Float(v float32) *anypb.Any {
	var b []byte
	if v != 0 || math.Signbit(float64(v)) {
		b = protowire.AppendTag(b, 1, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(v))
	}
	return &anypb.Any{TypeUrl: TypeURLFloat, Value: b}
}

// FloatValue is the float a p.cloudstate.io/float Any holds; false for any other Any.
func FloatValue(a *anypb.Any) (float32, bool) {
	b, ok := primitiveField(a, TypeURLFloat, protowire.Fixed32Type)
	if !ok || b == nil {
		return 0, ok
	}
	v, n := protowire.ConsumeFixed32(b)
	return math.Float32frombits(v), n >= 0
}

// Double is v as a p.cloudstate.io/double Any.
func Double(v float64) *anypb.Any {
	var b []byte
	if v != 0 || math.Signbit(v) {
		b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v))
	}
	return &anypb.Any{TypeUrl: TypeURLDouble, Value: b}
}

// DoubleValue is the double a p.cloudstate.io/double Any holds; false for any other Any.
func DoubleValue(a *anypb.Any) (float64, bool) {
	b, ok := primitiveField(a, TypeURLDouble, protowire.Fixed64Type)
	if !ok || b == nil {
		return 0, ok
	}
	v, n := protowire.ConsumeFixed64(b)
	return math.Float64frombits(v), n >= 0
}

// MarshalAny encodes m as an Any with the type URL type.googleapis.com/<full name>,
// deterministically, so that equal messages are equal set elements and map keys.
func MarshalAny(m proto.Message) (*anypb.Any, error) { return marshalAny(m) }

func varintAny(typeURL string, v uint64) *anypb.Any {
	var b []byte
	if v != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, v)
	}
	return &anypb.Any{TypeUrl: typeURL, Value: b}
}

func varintValue(a *anypb.Any, typeURL string) (uint64, bool) {
	b, ok := primitiveField(a, typeURL, protowire.VarintType)
	if !ok || b == nil {
		return 0, ok
	}
	v, n := protowire.ConsumeVarint(b)
	return v, n >= 0
}

// primitiveField returns the bytes after the last field 1 tag of wire type typ (later fields
// win, as in protobuf), nil if the value is the zero value, and false if a is not of typeURL or
// is malformed.
func primitiveField(a *anypb.Any, typeURL string, typ protowire.Type) ([]byte, bool) {
	if a.GetTypeUrl() != typeURL {
		return nil, false
	}
	var field []byte
	for b := a.GetValue(); len(b) > 0; {
		num, t, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, t, b)
		if m < 0 {
			return nil, false
		}
		if num == 1 && t == typ {
			field = b[:m]
		}
		b = b[m:]
	}
	return field, true
}
