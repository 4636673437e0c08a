package console

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/internal/payload"
	"github.com/jetstate/jetstate/projections"
)

// resolver finds message types by name in a service's discovery answer
// first, then in the descriptor sets given to the console.
type resolver struct {
	spec  *protoregistry.Files // may be nil
	extra *dynamicpb.Types     // may be nil
}

func newResolver(spec *protoregistry.Files, sets []*descriptorpb.FileDescriptorSet) (*resolver, error) {
	r := &resolver{spec: spec}
	if len(sets) > 0 {
		types, err := projections.NewResolver(sets...)
		if err != nil {
			return nil, err
		}
		r.extra = types
	}
	return r, nil
}

func (r *resolver) message(name protoreflect.FullName) (protoreflect.MessageType, bool) {
	if r.spec != nil {
		if d, err := r.spec.FindDescriptorByName(name); err == nil {
			if md, ok := d.(protoreflect.MessageDescriptor); ok {
				return dynamicpb.NewMessageType(md), true
			}
		}
	}
	if r.extra != nil {
		if mt, err := r.extra.FindMessageByName(name); err == nil {
			return mt, true
		}
	}
	if name.Parent() == "google.protobuf" {
		// The well-known types; nothing else linked into the binary, so
		// that what decodes does not depend on what jetstate links.
		if mt, err := protoregistry.GlobalTypes.FindMessageByName(name); err == nil {
			return mt, true
		}
	}
	return nil, false
}

// Decoded is a payload as a page shows it: JSON when it could be decoded,
// else a note and the bytes in base64.
type Decoded struct {
	Type string // type URL or content type
	Name string // the type's last part, for tables
	JSON string // indented JSON, or ""
	Note string // why there is no JSON
	Raw  string // base64 of the bytes when there is no JSON
	Size int
}

// decodeAny decodes the bytes of a marshalled google.protobuf.Any (how
// snapshots and values are stored).
func (r *resolver) decodeAny(b []byte) Decoded {
	var a anypb.Any
	if err := proto.Unmarshal(b, &a); err != nil {
		return Decoded{Note: "not a protobuf Any: " + err.Error(), Raw: base64.StdEncoding.EncodeToString(b), Size: len(b)}
	}
	return r.decode(a.GetTypeUrl(), a.GetValue())
}

// decode decodes an event's data by its type URL: protobuf messages with
// the descriptors, CloudState's JSON and primitive payloads as they are.
func (r *resolver) decode(typeURL string, data []byte) Decoded {
	d := Decoded{Type: typeURL, Name: typeURL[strings.LastIndexByte(typeURL, '/')+1:], Size: len(data)}
	fail := func(note string) Decoded {
		d.Note, d.Raw = note, base64.StdEncoding.EncodeToString(data)
		return d
	}
	switch {
	case strings.HasPrefix(typeURL, payload.JSONPrefix):
		raw, err := payload.Unwrap(data)
		if err != nil {
			return fail("JSON payload: " + err.Error())
		}
		return jsonDecoded(typeURL, raw)
	case strings.HasPrefix(typeURL, payload.PrimitivePrefix):
		raw, err := payload.Unwrap(data)
		if err != nil {
			return fail("primitive payload: " + err.Error())
		}
		if typeURL == payload.PrimitivePrefix+"bytes" {
			b, _ := json.Marshal(raw) // base64 in a JSON string
			d.JSON = string(b)
			return d
		}
		b, _ := json.Marshal(string(raw))
		d.JSON = string(b)
		return d
	}
	name := typeURL
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	mt, ok := r.message(protoreflect.FullName(name))
	if !ok {
		return fail(fmt.Sprintf("no descriptor for %s (the service stored none for it; give the console -descriptors)", name))
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(data, m); err != nil {
		return fail(fmt.Sprintf("does not decode as %s: %v", name, err))
	}
	b, err := protojson.MarshalOptions{EmitDefaultValues: true}.Marshal(m)
	if err != nil {
		return fail(fmt.Sprintf("%s to JSON: %v", name, err))
	}
	// Indented by encoding/json: protojson's own layout varies on purpose.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fail(fmt.Sprintf("%s to JSON: %v", name, err))
	}
	d.JSON = out.String()
	return d
}

// jsonDecoded shows JSON bytes indented.
func jsonDecoded(typ string, raw []byte) Decoded {
	d := Decoded{Type: typ, Size: len(raw)}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		d.Note, d.Raw = "not JSON: "+err.Error(), base64.StdEncoding.EncodeToString(raw)
		return d
	}
	d.JSON = out.String()
	return d
}
