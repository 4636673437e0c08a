package streams

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Event is one event as the journal stores it.
type Event struct {
	// Type names the event's payload, e.g. a protobuf type URL.
	Type string
	// Data is the serialized payload; the journal does not look inside.
	Data []byte
}

// The journal stores all events of one command in one message whose body is
// the protobuf encoding of
//
//	message Entry {
//	  uint64 first_seq = 1;          // per-entity sequence of events[0]
//	  repeated Event events = 2;
//	}
//	message Event { string type = 1; bytes data = 2; }
//
// so one message is one atomic commit and any protobuf runtime can read it.
const (
	entryFirstSeq = 1
	entryEvents   = 2
	eventType     = 1
	eventData     = 2
)

// encodeEntry appends the encoded entry to b.
func encodeEntry(b []byte, firstSeq uint64, events []Event) []byte {
	b = protowire.AppendTag(b, entryFirstSeq, protowire.VarintType)
	b = protowire.AppendVarint(b, firstSeq)
	for _, ev := range events {
		n := protowire.SizeTag(eventType) + protowire.SizeBytes(len(ev.Type)) +
			protowire.SizeTag(eventData) + protowire.SizeBytes(len(ev.Data))
		b = protowire.AppendTag(b, entryEvents, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		b = protowire.AppendTag(b, eventType, protowire.BytesType)
		b = protowire.AppendString(b, ev.Type)
		b = protowire.AppendTag(b, eventData, protowire.BytesType)
		b = protowire.AppendBytes(b, ev.Data)
	}
	return b
}

// walkFields calls field for every field of a protobuf message in b, in
// order; field consumes the value (for fields it knows, else it returns -1
// and walkFields skips the value) and returns how many bytes it used or a
// negative protowire error code.
func walkFields(b []byte, field func(num protowire.Number, typ protowire.Type, v []byte) int) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", ErrCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
		if n = field(num, typ, b); n == skipField {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: %v", ErrCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

// skipField is what a walkFields callback returns for a field it ignores.
// protowire's own error codes are -1 to -9 or so; this stays clear of them.
const skipField = -1000

// decodeEntry parses an entry. Event data aliases b.
func decodeEntry(b []byte) (firstSeq uint64, events []Event, err error) {
	var evErr error
	err = walkFields(b, func(num protowire.Number, typ protowire.Type, v []byte) int {
		switch {
		case num == entryFirstSeq && typ == protowire.VarintType:
			var n int
			firstSeq, n = protowire.ConsumeVarint(v)
			return n
		case num == entryEvents && typ == protowire.BytesType:
			raw, n := protowire.ConsumeBytes(v)
			if n >= 0 {
				var ev Event
				if ev, evErr = decodeEvent(raw); evErr != nil {
					return len(v) // stop: the error wins below
				}
				events = append(events, ev)
			}
			return n
		}
		return skipField
	})
	if err = errors.Join(err, evErr); err != nil {
		return 0, nil, err
	}
	if firstSeq == 0 {
		return 0, nil, fmt.Errorf("%w: entry without sequence", ErrCorrupt)
	}
	return firstSeq, events, nil
}

func decodeEvent(b []byte) (Event, error) {
	var ev Event
	err := walkFields(b, func(num protowire.Number, typ protowire.Type, v []byte) int {
		if typ != protowire.BytesType || (num != eventType && num != eventData) {
			return skipField
		}
		val, n := protowire.ConsumeBytes(v)
		if num == eventType {
			ev.Type = string(val)
		} else {
			ev.Data = val
		}
		return n
	})
	return ev, err
}
