package cebinding

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
)

// Binary content mode puts every attribute into a header named "ce-" + the
// attribute's name and the data into the body (the CloudEvents HTTP
// binding, and the NATS binding's binary mode since NATS 2.2 has headers).
// Header values are percent-encoded as the HTTP binding's section 3.1.3.2
// says: space, '"', '%' and every byte outside printable ASCII. For the
// values jetstate produces (ids, sources, protobuf names, ordinary keys)
// that changes nothing, so readers that do not decode still read them.
//
// datacontenttype goes into the "content-type" header (as in HTTP, and as
// the sdk-go NATS reader expects it); on NATS it is also written as
// "ce-datacontenttype", which readers that keep content-type as the
// structured-mode marker read instead. Both carry the same value.
const (
	headerPrefix      = "ce-"
	headerContentType = "content-type"
)

// ContentTypeCloudEventsJSON is the content type of a structured-mode
// message (JSON event format).
const ContentTypeCloudEventsJSON = "application/cloudevents+json"

// BinaryHeaders calls set for every header of ev in binary mode, values
// percent-encoded. name is the lower-case header name; contentType is
// called (instead of set) for datacontenttype.
func BinaryHeaders(ev *event.Event, set func(name, value string), contentType func(value string)) error {
	return binaryHeaders(ev, set, contentType, func(u *url.URL) string { return percentEncode(u.String()) })
}

// binaryHeaders is BinaryHeaders with source rendering a version 1.0
// event's source (percent-encoded).
func binaryHeaders(ev *event.Event, set func(name, value string), contentType func(value string), source func(*url.URL) string) error {
	if c, ok := ev.Context.(*event.EventContextV1); ok {
		// The common case without reflection: it is on every event's path.
		set(headerPrefix+"specversion", event.CloudEventsVersionV1)
		set(headerPrefix+"id", percentEncode(c.ID))
		set(headerPrefix+"source", source(&c.Source.URL))
		set(headerPrefix+"type", percentEncode(c.Type))
		if c.Subject != nil {
			set(headerPrefix+"subject", percentEncode(*c.Subject))
		}
		if c.Time != nil {
			set(headerPrefix+"time", types.FormatTime(c.Time.Time))
		}
		if c.DataSchema != nil {
			set(headerPrefix+"dataschema", percentEncode(c.DataSchema.String()))
		}
		if c.DataContentType != nil {
			contentType(*c.DataContentType)
		}
		return extensionHeaders(c.Extensions, set)
	}
	for _, a := range spec.V1.Attributes() {
		v := a.Get(ev.Context)
		if v == nil {
			continue
		}
		s, err := types.Format(v)
		if err != nil {
			return fmt.Errorf("attribute %s: %w", a.Name(), err)
		}
		if a.Kind() == spec.DataContentType {
			contentType(s)
			continue
		}
		set(headerPrefix+a.Name(), percentEncode(s))
	}
	return extensionHeaders(ev.Extensions(), set)
}

func extensionHeaders(ext map[string]any, set func(name, value string)) error {
	for name, v := range ext {
		s, ok := v.(string)
		if !ok {
			var err error
			if s, err = types.Format(v); err != nil {
				return fmt.Errorf("extension %s: %w", name, err)
			}
		}
		set(headerPrefix+name, percentEncode(s))
	}
	return nil
}

// NATSMsg renders ev as a NATS message on subject, in binary mode (headers
// and raw data) or, if structured, as the JSON event format with content
// type application/cloudevents+json.
func NATSMsg(subject string, ev *event.Event, structured bool) (*nats.Msg, error) {
	return new(NATSWriter).Msg(subject, ev, structured)
}

// NATSWriter renders CloudEvents as NATS messages like NATSMsg, into one
// message it reuses: each Msg call overwrites the message the previous one
// returned, header map and values included, so a publisher that is done
// with a message once it is published (a core publish copies it; a
// JetStream publish has too once it returns) allocates them once. The zero
// value is ready for use; a NATSWriter is not safe for concurrent use.
type NATSWriter struct {
	msg  nats.Msg
	vals []string // the header values, one backing array

	// The percent-encoded source of the last event: events from one
	// entity type share it, and URL.String is not cheap.
	srcURL url.URL
	src    string
}

// Msg renders ev into the writer's message and returns it.
func (w *NATSWriter) Msg(subject string, ev *event.Event, structured bool) (*nats.Msg, error) {
	msg := &w.msg
	if msg.Header == nil {
		msg.Header = make(nats.Header, 10)
	} else {
		clear(msg.Header)
	}
	clear(w.vals)
	w.vals = w.vals[:0]
	msg.Subject, msg.Reply, msg.Data = subject, "", nil
	if structured {
		b, err := json.Marshal(ev)
		if err != nil {
			return nil, err
		}
		msg.Header.Set(headerContentType, ContentTypeCloudEventsJSON)
		msg.Data = b
		return msg, nil
	}
	add := func(name, value string) {
		if len(w.vals) == cap(w.vals) {
			// Earlier values keep the old array.
			w.vals = make([]string, 0, max(12, 2*cap(w.vals)))
		}
		w.vals = append(w.vals, value)
		msg.Header[name] = w.vals[len(w.vals)-1 : len(w.vals) : len(w.vals)]
	}
	err := binaryHeaders(ev, add, func(ct string) {
		add(headerContentType, ct)
		add(headerPrefix+"datacontenttype", ct)
	}, w.source)
	if err != nil {
		return nil, err
	}
	msg.Data = ev.Data()
	return msg, nil
}

// source returns the percent-encoded source u, remembering the last one.
func (w *NATSWriter) source(u *url.URL) string {
	if w.src == "" || *u != w.srcURL {
		w.srcURL, w.src = *u, percentEncode(u.String())
	}
	return w.src
}

// EventFromNATS decodes a CloudEvent from a NATS message in either content
// mode: binary if it has a ce-specversion header (names are matched
// without regard to case), otherwise structured (JSON event format). The
// event is validated; data is copied.
func EventFromNATS(msg *nats.Msg) (*event.Event, error) {
	var version string
	for k, v := range msg.Header {
		if strings.EqualFold(k, headerPrefix+"specversion") && len(v) > 0 {
			version = v[0]
		}
	}
	if version == "" {
		ev := event.New()
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			return nil, fmt.Errorf("structured cloudevent: %w", err)
		}
		if err := validate(&ev); err != nil {
			return nil, err
		}
		return &ev, nil
	}
	if version != event.CloudEventsVersionV1 {
		return nil, fmt.Errorf("cloudevent spec version %q not supported", version)
	}
	ev := event.New(event.CloudEventsVersionV1)
	var ct string
	for k, vs := range msg.Header {
		if len(vs) == 0 {
			continue
		}
		lk := strings.ToLower(k)
		if lk == headerContentType {
			ct = vs[0]
			continue
		}
		name, ok := strings.CutPrefix(lk, headerPrefix)
		if !ok || name == "specversion" {
			continue
		}
		v, err := percentDecode(vs[0])
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", k, err)
		}
		if err := spec.V1.SetAttribute(ev.Context, name, v); err != nil {
			return nil, fmt.Errorf("header %s: %w", k, err)
		}
	}
	if ev.DataContentType() == "" && ct != "" {
		ev.SetDataContentType(ct)
	}
	if len(msg.Data) > 0 {
		ev.DataEncoded = bytes.Clone(msg.Data)
	}
	if err := validate(&ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// validate checks ev against the CloudEvents rules, and that its
// attributes are Unicode as CloudEvents strings must be (the JSON decoder
// lets invalid UTF-8 through).
func validate(ev *event.Event) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	for _, a := range spec.V1.Attributes() {
		if s, ok := a.Get(ev.Context).(string); ok && !utf8.ValidString(s) {
			return fmt.Errorf("attribute %s is not UTF-8", a.Name())
		}
	}
	for name, v := range ev.Extensions() {
		if s, ok := v.(string); ok && !utf8.ValidString(s) {
			return fmt.Errorf("extension %s is not UTF-8", name)
		}
	}
	return nil
}

const upperHex = "0123456789ABCDEF"

func mustEscape(b byte) bool { return b <= ' ' || b >= 0x7F || b == '"' || b == '%' }

// percentEncode escapes s for a header value (HTTP binding 3.1.3.2).
func percentEncode(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if mustEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !mustEscape(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0xF])
	}
	return b.String()
}

var errBadEscape = errors.New("bad percent escape")

// percentDecode inverts percentEncode; the result must be UTF-8. Hex
// digits of either case are accepted, as are bytes that need no escape.
func percentDecode(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		if !utf8.ValidString(s) {
			return "", errors.New("value is not UTF-8")
		}
		return s, nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			out = append(out, c)
			continue
		}
		if i+2 >= len(s) {
			return "", errBadEscape
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 {
			return "", errBadEscape
		}
		out = append(out, byte(hi<<4|lo))
		i += 2
	}
	if !utf8.Valid(out) {
		return "", errors.New("value is not UTF-8")
	}
	return string(out), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
