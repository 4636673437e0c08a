package eventing

import (
	"fmt"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/internal/payload"
	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/protocol/cloudstate"
	"github.com/jetstate/jetstate/proxy/model"
)

// Content types and type URL prefixes of the CloudState eventing
// conventions (spec section 2.9).
const (
	// ContentTypeAny is how an event-log event reaches the function: the
	// journal's Any, unchanged.
	ContentTypeAny = "application/vnd.cloudstate.protobuf.any"

	jsonURLPrefix      = payload.JSONPrefix
	primitiveURLPrefix = payload.PrimitivePrefix
	stringURL          = primitiveURLPrefix + "string"
	bytesURL           = primitiveURLPrefix + "bytes"
)

// Metadata keys of CloudEvent attributes, as the HTTP binary binding names
// them (the reference proxy's choice).
const (
	mdID          = "ce-id"
	mdSource      = "ce-source"
	mdSpecVersion = "ce-specversion"
	mdType        = "ce-type"
	mdSubject     = "ce-subject"
	mdTime        = "ce-time"
	mdDataSchema  = "ce-dataschema"
	mdContentType = "Content-Type"
)

// topicMessage turns a message from a topic into the payload and metadata a
// consumer method receives. A message is a CloudEvent in binary mode
// (ce-* headers) or structured mode (content type
// application/cloudevents+json), or a plain message whose content-type
// header says what the body is. The payload is:
//
//	application/protobuf, application/x-protobuf, application/vnd.google.protobuf
//	    type.googleapis.com/<T>, T from the content type's proto or messageType
//	    parameter, else the event's type
//	application/vnd.cloudstate.protobuf.any    the body is a serialized Any
//	application/json, */*+json                 json.cloudstate.io/<type>, the JSON in field 1
//	text/*                                     p.cloudstate.io/string
//	anything else                              p.cloudstate.io/bytes
//
// A structured-mode event's data without a datacontenttype is JSON, as the
// JSON event format says. A plain message gets the id defaultID (stable across redeliveries), the
// source "topic:<name>" and the time it was stored. Errors wrap projections.ErrBadEvent.
func topicMessage(msg *nats.Msg, topic, defaultID string, stored time.Time) (*anypb.Any, *event.Event, error) {
	var ev *event.Event
	ct := headerValue(msg.Header, "content-type")
	if headerValue(msg.Header, "ce-specversion") != "" || strings.HasPrefix(ct, projections.ContentTypeCloudEventsJSON) {
		var err error
		structured := headerValue(msg.Header, "ce-specversion") == ""
		if ev, err = projections.EventFromNATS(msg); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", projections.ErrBadEvent, err)
		}
		ct = ev.DataContentType()
		if ct == "" && structured && !ev.DataBase64 && len(ev.Data()) > 0 {
			// The JSON event format: data without a datacontenttype is
			// application/json.
			ct = projections.ContentTypeJSON
		}
	} else {
		if !utf8.ValidString(ct) {
			return nil, nil, fmt.Errorf("%w: content type %q is not UTF-8", projections.ErrBadEvent, ct)
		}
		e := event.New(event.CloudEventsVersionV1)
		e.SetID(defaultID)
		e.SetSource("topic:" + url.PathEscape(topic))
		e.SetTime(stored)
		if ct != "" {
			e.SetDataContentType(ct)
		}
		e.DataEncoded = msg.Data
		ev = &e
	}
	payload, typ, err := anyOfData(ct, ev.Type(), ev.Data())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", projections.ErrBadEvent, err)
	}
	if ev.Type() == "" {
		ev.SetType(typ)
	}
	return payload, ev, nil
}

// anyOfData maps a body and its content type to the Any a function takes,
// and names its type for a CloudEvent.
func anyOfData(contentType, ceType string, data []byte) (*anypb.Any, string, error) {
	media, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		media = strings.ToLower(strings.TrimSpace(contentType))
	}
	switch {
	case media == ContentTypeAny:
		var a anypb.Any
		if err := proto.Unmarshal(data, &a); err != nil {
			return nil, "", fmt.Errorf("%s body is not a serialized Any: %v", ContentTypeAny, err)
		}
		if a.GetTypeUrl() == "" {
			return nil, "", fmt.Errorf("%s body has no type URL", ContentTypeAny)
		}
		return &a, typeName(a.GetTypeUrl()), nil
	case media == "application/protobuf" || media == "application/x-protobuf" || media == "application/vnd.google.protobuf":
		typ := params["proto"]
		if typ == "" {
			typ = params["messagetype"]
		}
		if typ == "" {
			typ = ceType
		}
		if typ == "" {
			return nil, "", fmt.Errorf("protobuf message (%s) without a type: set the content type's proto parameter or ce-type", media)
		}
		url := typ
		if !strings.Contains(typ, "/") {
			url = model.TypeURLPrefix + typ
		}
		return &anypb.Any{TypeUrl: url, Value: data}, typeName(url), nil
	case media == "application/json" || strings.HasSuffix(media, "+json") || media == "text/json":
		typ := ceType
		if i := strings.LastIndexByte(typ, '/'); i >= 0 {
			typ = typ[i+1:]
		}
		return &anypb.Any{TypeUrl: jsonURLPrefix + typ, Value: payload.Wrap(data)}, ceType, nil
	case strings.HasPrefix(media, "text/") && utf8.Valid(data):
		return &anypb.Any{TypeUrl: stringURL, Value: payload.Wrap(data)}, stringURL, nil
	}
	return &anypb.Any{TypeUrl: bytesURL, Value: payload.Wrap(data)}, bytesURL, nil
}

// dataOfAny inverts anyOfData for a reply published to a topic: JSON,
// string and bytes payloads are unwrapped to their raw content with a
// matching content type; protobuf messages are sent as they are, typed by
// the message name. The returned type is the CloudEvent type.
func dataOfAny(a *anypb.Any) (contentType, typ string, data []byte, err error) {
	url := a.GetTypeUrl()
	switch {
	case strings.HasPrefix(url, jsonURLPrefix):
		v, err := payload.Unwrap(a.GetValue())
		return projections.ContentTypeJSON, strings.TrimPrefix(url, jsonURLPrefix), v, err
	case url == stringURL:
		v, err := payload.Unwrap(a.GetValue())
		return projections.ContentTypeText, stringURL, v, err
	case url == bytesURL:
		v, err := payload.Unwrap(a.GetValue())
		return projections.ContentTypeBytes, bytesURL, v, err
	case strings.HasPrefix(url, primitiveURLPrefix):
		// Another primitive (int64, bool, ...): no raw form; the Any itself.
		b, err := proto.Marshal(a)
		return ContentTypeAny, url, b, err
	}
	return projections.ContentTypeProtobuf, typeName(url), a.GetValue(), nil
}

// typeName is the message a type URL names (after its last '/');
// CloudState primitives keep their whole URL.
func typeName(url string) string {
	if strings.HasPrefix(url, primitiveURLPrefix) {
		return url
	}
	return url[strings.LastIndexByte(url, '/')+1:]
}

// eventMetadata renders a CloudEvent's attributes as the metadata of a
// command: ce-<attribute> entries, and Content-Type.
func eventMetadata(ev *event.Event) *cloudstate.Metadata {
	md := &cloudstate.Metadata{}
	add := func(k, v string) {
		md.Entries = append(md.Entries, &cloudstate.MetadataEntry{Key: k, Value: &cloudstate.MetadataEntry_StringValue{StringValue: v}})
	}
	add(mdID, ev.ID())
	add(mdSource, ev.Source())
	add(mdSpecVersion, ev.SpecVersion())
	add(mdType, ev.Type())
	if s := ev.Subject(); s != "" {
		add(mdSubject, s)
	}
	if t := ev.Time(); !t.IsZero() {
		add(mdTime, t.UTC().Format(time.RFC3339Nano))
	}
	if s := ev.DataSchema(); s != "" {
		add(mdDataSchema, s)
	}
	if ct := ev.DataContentType(); ct != "" {
		add(mdContentType, ct)
	}
	for name, v := range ev.Extensions() {
		s, err := types.Format(v)
		if err == nil {
			add("ce-"+name, s)
		}
	}
	return md
}

// outEvent builds the CloudEvent for a reply published to a topic. Reply
// metadata named ce-<attribute> sets attributes (id, source, type,
// subject, time, dataschema, extensions); the rest default: id to
// defaultID, source to the service's name, type to the payload's, time to
// now.
func outEvent(payload *anypb.Any, md *cloudstate.Metadata, service, defaultID string) (*event.Event, error) {
	ct, typ, data, err := dataOfAny(payload)
	if err != nil {
		return nil, fmt.Errorf("reply %s: %w", payload.GetTypeUrl(), err)
	}
	ev := event.New(event.CloudEventsVersionV1)
	ev.SetID(defaultID)
	ev.SetSource(service)
	ev.SetType(typ)
	ev.SetTime(time.Now())
	ev.SetDataContentType(ct)
	for _, e := range md.GetEntries() {
		name, ok := strings.CutPrefix(strings.ToLower(e.GetKey()), "ce-")
		v, isString := e.GetValue().(*cloudstate.MetadataEntry_StringValue)
		if !ok || !isString || name == "specversion" || name == "datacontenttype" {
			continue
		}
		if err := spec.V1.SetAttribute(ev.Context, name, v.StringValue); err != nil {
			return nil, fmt.Errorf("reply metadata %s: %w", e.GetKey(), err)
		}
	}
	ev.DataEncoded = data
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("reply event: %w", err)
	}
	return &ev, nil
}

// eventLogEvent is the CloudEvent of one journal event as the function sees
// it: the id projections give it (stable across redeliveries), source the
// persistence id, type the event's type URL, subject the entity key, time
// the append, the per-entity sequence as the jetstateseq extension, and
// the journal's Any as data.
func eventLogEvent(id, pid, key, typeURL string, seq uint64, t time.Time) *event.Event {
	ev := event.New(event.CloudEventsVersionV1)
	c := ev.Context.(*event.EventContextV1)
	c.ID = id
	c.Source = types.URIRef{URL: url.URL{Path: pid}}
	c.Type = typeURL
	c.Subject = &key
	c.Time = &types.Timestamp{Time: t.UTC()}
	ct := ContentTypeAny
	c.DataContentType = &ct
	c.Extensions = map[string]any{projections.SeqExtension: strconv.FormatUint(seq, 10)}
	return &ev
}

// headerValue is the first value of a header, its name matched without
// regard to case.
func headerValue(h nats.Header, name string) string {
	if v := h.Get(name); v != "" {
		return v
	}
	for k, vs := range h {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}
