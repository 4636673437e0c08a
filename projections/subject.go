package projections

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/jetstate/jetstate/streams"
)

// Placeholders of a NATSSinkConfig.Subject template.
const (
	// SubjectType is the entity type (the last segment of the event's
	// source), as one subject token.
	SubjectType = "{type}"
	// SubjectKey is the entity key (the event's subject attribute), as one
	// subject token.
	SubjectKey = "{key}"
	// SubjectEvent is the event's type (its message's full name), one
	// token per dot-separated part.
	SubjectEvent = "{event}"
)

// subjectTemplate is a NATS sink's subject, with its placeholders found.
type subjectTemplate struct {
	static string   // the subject when there are no placeholders
	parts  []string // literal text, placeholder, literal text, ...
}

// parseSubject reads a subject template; every result of it must be a
// subject one can publish to.
func parseSubject(s string) (subjectTemplate, error) {
	var t subjectTemplate
	sample := s
	rest := s
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			t.parts = append(t.parts, rest)
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return t, fmt.Errorf("subject %q: unclosed {", s)
		}
		ph := rest[i : i+j+1]
		switch ph {
		case SubjectType, SubjectKey, SubjectEvent:
		default:
			return t, fmt.Errorf("subject %q: unknown placeholder %s (want %s, %s or %s)", s, ph, SubjectType, SubjectKey, SubjectEvent)
		}
		t.parts = append(t.parts, rest[:i], ph)
		rest = rest[i+j+1:]
		sample = strings.Replace(sample, ph, "x", 1)
	}
	if strings.ContainsRune(rest, '}') {
		return t, fmt.Errorf("subject %q: unmatched }", s)
	}
	if err := checkPublishSubject(sample); err != nil {
		return t, err
	}
	if len(t.parts) == 1 {
		t.static = s
	}
	return t, nil
}

// expand returns the subject of ev.
func (t subjectTemplate) expand(ev *event.Event) (string, error) {
	if t.static != "" {
		return t.static, nil
	}
	var b strings.Builder
	for i, p := range t.parts {
		if i%2 == 0 {
			b.WriteString(p)
			continue
		}
		switch p {
		case SubjectType:
			src := ev.Source()
			typ, err := url.PathUnescape(src[strings.LastIndexByte(src, '/')+1:])
			if err != nil {
				return "", fmt.Errorf("entity type of source %q: %w", src, err)
			}
			b.WriteString(streams.EncodeToken(typ))
		case SubjectKey:
			b.WriteString(streams.EncodeToken(ev.Subject()))
		case SubjectEvent:
			for j, part := range strings.Split(ev.Type(), ".") {
				if j > 0 {
					b.WriteByte('.')
				}
				b.WriteString(streams.EncodeToken(part))
			}
		}
	}
	return b.String(), nil
}

// CheckSubject reports why NewNATSSink would refuse s as its Subject
// (template), or nil.
func CheckSubject(s string) error {
	_, err := parseSubject(s)
	return err
}
