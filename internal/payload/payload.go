// Package payload holds CloudState's convention for JSON and primitive
// payloads (type URLs json.cloudstate.io/<type> and p.cloudstate.io/...):
// the raw content sits in field 1 of a one-field message. The projections
// and the sidecar's eventing both read and write it.
package payload

import "google.golang.org/protobuf/encoding/protowire"

// Type URL prefixes of CloudState's JSON and primitive payloads.
const (
	JSONPrefix      = "json.cloudstate.io/"
	PrimitivePrefix = "p.cloudstate.io/"
)

// Wrap puts v into field 1 (empty values encode to nothing).
func Wrap(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// Unwrap reads field 1 (bytes or string) of a wrapped payload; an absent
// field is the empty value, other fields are skipped, the last field 1
// wins (protobuf's rule), and malformed wire data is an error. The value
// shares b's memory.
func Unwrap(b []byte) ([]byte, error) {
	var v []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			val, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			v, b = val, b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return v, nil
}
