package projections

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/jetstate/jetstate/internal/payload"
	"github.com/jetstate/jetstate/streams"
)

// SeqExtension is the CloudEvents extension attribute that carries an
// event's per-entity sequence number (1, 2, 3, ... for each entity) as a
// decimal string. It is a string because the CloudEvents Integer type is
// 32 bits and a journal may go further.
const SeqExtension = "jetstateseq"

// Content types of event data.
const (
	ContentTypeProtobuf = "application/protobuf"
	ContentTypeJSON     = "application/json"
	ContentTypeText     = "text/plain; charset=utf-8"
	ContentTypeBytes    = "application/octet-stream"
)

// Type URL prefixes of the CloudState payload conventions: JSON and
// primitive values wrapped in a message whose field 1 holds the value.
const (
	cloudstateJSON      = payload.JSONPrefix
	cloudstatePrimitive = payload.PrimitivePrefix
)

// EventID is the CloudEvents id of the index-th event (from 0) of the
// journal message at stream sequence streamSeq of stream: the same event
// always gets the same id, across redeliveries, restarts and rebuilds.
// Stream names hold no ':', so the id parses back unambiguously.
func EventID(stream string, streamSeq uint64, index int) string {
	var buf [96]byte
	b := append(buf[:0], stream...)
	b = append(b, ':')
	b = strconv.AppendUint(b, streamSeq, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(index), 10)
	return string(b)
}

// converter turns journal records into CloudEvents.
type converter struct {
	stream   string // journal stream name, the first part of every id
	source   string // Config.Source
	resolver protoregistry.MessageTypeResolver
	sources  sync.Map // entity type -> *url.URL, the parsed source
}

// event builds the CloudEvent for rec, the index-th event of its journal
// message, of entity e. Errors wrap ErrBadEvent. If parts is not nil the
// event is built in it, overwriting the event built there before (its
// context and extensions map included): for a caller that is done with
// each event before it builds the next.
func (c *converter) event(e streams.Entity, rec streams.Record, index int, parts *eventParts) (event.Event, error) {
	typ := typeName(rec.Type)
	if typ == "" {
		return event.Event{}, fmt.Errorf("%w: event %d of %s has no type", ErrBadEvent, rec.Seq, e)
	}
	src, err := c.sourceOf(e.Type)
	if err != nil {
		return event.Event{}, err
	}
	ct, data, base64, err := c.data(rec.Type, rec.Data)
	if err != nil {
		return event.Event{}, fmt.Errorf("%w: event %d of %s (%s): %v", ErrBadEvent, rec.Seq, e, rec.Type, err)
	}
	// One allocation (at most) for the context and what its pointers point
	// to.
	var ext map[string]any
	if parts == nil {
		parts = new(eventParts)
	} else {
		ext = parts.ctx.Extensions
		clear(ext)
		parts.ctx = event.EventContextV1{}
	}
	if ext == nil {
		ext = make(map[string]any, 1)
	}
	parts.subject, parts.time, parts.ct = e.Key, types.Timestamp{Time: rec.Time.UTC()}, ct
	if !utf8.ValidString(parts.subject) {
		// CloudEvents strings are Unicode; such a key travels in the
		// journal's own escaped form.
		parts.subject = streams.EncodeToken(parts.subject)
	}
	ctx := &parts.ctx
	ctx.ID = EventID(c.stream, rec.StreamSeq, index)
	ctx.Source.URL = *src
	ctx.Type = typ
	ctx.Subject = &parts.subject
	ctx.Time = &parts.time
	ctx.DataContentType = &parts.ct
	ext[SeqExtension] = strconv.FormatUint(rec.Seq, 10)
	ctx.Extensions = ext
	ev := event.Event{Context: ctx}
	if len(data) > 0 {
		ev.DataEncoded = data
		ev.DataBase64 = base64
	}
	return ev, nil
}

// eventParts holds an event's context and the values its optional
// attributes point to.
type eventParts struct {
	ctx     event.EventContextV1
	subject string
	time    types.Timestamp
	ct      string
}

// sourceOf is the source of an entity type's events.
func (c *converter) sourceOf(typ string) (*url.URL, error) {
	if u, ok := c.sources.Load(typ); ok {
		return u.(*url.URL), nil
	}
	u, err := url.Parse(c.source + "/" + url.PathEscape(typ))
	if err != nil {
		return nil, fmt.Errorf("%w: source for type %q: %v", ErrBadEvent, typ, err)
	}
	c.sources.Store(typ, u)
	return u, nil
}

// typeName is the CloudEvents type of an event: the message name its type
// URL names (the part after the last '/', as protobuf resolves an Any).
// CloudState primitives (p.cloudstate.io/string, ...) name no message and
// keep their whole URL.
func typeName(typeURL string) string {
	if strings.HasPrefix(typeURL, cloudstatePrimitive) {
		return typeURL
	}
	return typeURL[strings.LastIndexByte(typeURL, '/')+1:]
}

// data returns the content type and data of an event. base64 says the
// data is binary (data_base64 in the JSON format).
func (c *converter) data(typeURL string, raw []byte) (ct string, data []byte, base64 bool, err error) {
	switch {
	case strings.HasPrefix(typeURL, cloudstateJSON):
		v, err := payload.Unwrap(raw)
		if err != nil {
			return "", nil, false, err
		}
		if !json.Valid(v) {
			return "", nil, false, fmt.Errorf("%s data is not JSON", cloudstateJSON)
		}
		return ContentTypeJSON, v, false, nil
	case typeURL == cloudstatePrimitive+"string":
		v, err := payload.Unwrap(raw)
		if err != nil {
			return "", nil, false, err
		}
		if utf8.Valid(v) {
			return ContentTypeText, v, false, nil
		}
		return ContentTypeBytes, v, true, nil
	case typeURL == cloudstatePrimitive+"bytes":
		v, err := payload.Unwrap(raw)
		return ContentTypeBytes, v, true, err
	}
	if c.resolver != nil {
		mt, ferr := c.resolver.FindMessageByURL(typeURL)
		if ferr == nil {
			msg := mt.New().Interface()
			if err := proto.Unmarshal(raw, msg); err != nil {
				return "", nil, false, err
			}
			j, err := protojson.MarshalOptions{EmitDefaultValues: true}.Marshal(msg)
			if err != nil {
				return "", nil, false, err
			}
			// protojson varies its white space on purpose; compact it so
			// the same event always has the same bytes.
			var buf bytes.Buffer
			if err := json.Compact(&buf, j); err != nil {
				return "", nil, false, err
			}
			return ContentTypeJSON, buf.Bytes(), false, nil
		}
	}
	return ContentTypeProtobuf, raw, true, nil
}
