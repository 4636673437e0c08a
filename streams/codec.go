package streams

import (
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

// decodeEntry parses an entry. Event data aliases b.
func decodeEntry(b []byte) (firstSeq uint64, events []Event, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, nil, fmt.Errorf("%w: %v", ErrCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == entryFirstSeq && typ == protowire.VarintType:
			firstSeq, n = protowire.ConsumeVarint(b)
		case num == entryEvents && typ == protowire.BytesType:
			var raw []byte
			raw, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				ev, err := decodeEvent(raw)
				if err != nil {
					return 0, nil, err
				}
				events = append(events, ev)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return 0, nil, fmt.Errorf("%w: %v", ErrCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
	}
	if firstSeq == 0 {
		return 0, nil, fmt.Errorf("%w: entry without sequence", ErrCorrupt)
	}
	return firstSeq, events, nil
}

func decodeEvent(b []byte) (Event, error) {
	var ev Event
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return Event{}, fmt.Errorf("%w: %v", ErrCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == eventType && typ == protowire.BytesType:
			var s []byte
			s, n = protowire.ConsumeBytes(b)
			ev.Type = string(s)
		case num == eventData && typ == protowire.BytesType:
			ev.Data, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return Event{}, fmt.Errorf("%w: %v", ErrCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return ev, nil
}
