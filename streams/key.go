package streams

import (
	"fmt"
	"strings"
)

const (
	// MaxKeyLen is the longest entity key, in bytes, that the journal
	// accepts. Keys are escaped into one subject token (at most three bytes
	// per key byte) and the whole subject must fit comfortably within the
	// server's 4 KiB control line; each distinct subject also costs server
	// memory. Longer keys fail with ErrInvalidKey.
	MaxKeyLen = 512

	// MaxTypeLen is the longest entity type name, in bytes.
	MaxTypeLen = 128

	// MaxNameLen is the longest service name or subject prefix.
	MaxNameLen = 64
)

// Entity names one entity of a service: its type (the CloudState
// persistence id, or the service name for value entities) and its key.
// Any byte string is a valid Key up to MaxKeyLen bytes, including the empty
// string, dots, spaces, '*' and '>'.
type Entity struct {
	Type string
	Key  string
}

// String renders the entity for logs as type/key.
func (e Entity) String() string { return e.Type + "/" + e.Key }

// Validate checks the entity's type and key against the limits.
func (e Entity) Validate() error {
	switch {
	case e.Type == "":
		return fmt.Errorf("%w: empty entity type", ErrInvalidKey)
	case len(e.Type) > MaxTypeLen:
		return fmt.Errorf("%w: entity type is %d bytes, limit %d", ErrInvalidKey, len(e.Type), MaxTypeLen)
	case len(e.Key) > MaxKeyLen:
		return fmt.Errorf("%w: key is %d bytes, limit %d", ErrInvalidKey, len(e.Key), MaxKeyLen)
	}
	return nil
}

// token is the entity's "<type>.<key>" suffix, each part escaped.
func (e Entity) token() string {
	return EncodeToken(e.Type) + "." + EncodeToken(e.Key)
}

// escape is the escape character of the token encoding. It is valid in NATS
// subjects, KV keys and stream names.
const escape = '='

// emptyToken stands for the empty string, which cannot be a subject token.
// EncodeToken never produces it for anything else because every other '='
// it writes is followed by two hex digits.
const emptyToken = "="

const hexDigits = "0123456789ABCDEF"

// plain reports whether b is kept as is by EncodeToken: ASCII letters,
// digits, '-' and '_'. These are valid in subjects, KV keys and stream names.
func plain(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_'
}

// EncodeToken escapes any string into one NATS subject token that is also a
// valid KV key: letters, digits, '-' and '_' stay as they are, every other
// byte becomes '=' and two upper-case hex digits, and the empty string
// becomes "=". The encoding is a bijection: DecodeToken inverts it and
// rejects every string EncodeToken cannot produce, and distinct inputs never
// share a token. Common keys (UUIDs, names, numbers) stay readable.
func EncodeToken(s string) string {
	if s == "" {
		return emptyToken
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
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
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte(escape)
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xF])
	}
	return b.String()
}

// DecodeToken inverts EncodeToken. It fails with ErrInvalidKey on any string
// EncodeToken would not produce (lower-case hex, an escaped plain byte, a
// truncated escape, or a byte that must be escaped).
func DecodeToken(tok string) (string, error) {
	if tok == emptyToken {
		return "", nil
	}
	if tok == "" {
		return "", fmt.Errorf("%w: empty token", ErrInvalidKey)
	}
	if strings.IndexByte(tok, escape) < 0 {
		for i := 0; i < len(tok); i++ {
			if !plain(tok[i]) {
				return "", fmt.Errorf("%w: byte %q at %d must be escaped", ErrInvalidKey, tok[i], i)
			}
		}
		return tok, nil
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if plain(c) {
			out = append(out, c)
			continue
		}
		if c != escape || i+2 >= len(tok) {
			return "", fmt.Errorf("%w: bad escape at %d in %q", ErrInvalidKey, i, tok)
		}
		hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("%w: bad escape at %d in %q", ErrInvalidKey, i, tok)
		}
		d := byte(hi<<4 | lo)
		if plain(d) {
			return "", fmt.Errorf("%w: needless escape at %d in %q", ErrInvalidKey, i, tok)
		}
		out = append(out, d)
		i += 2
	}
	return string(out), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// validName checks a service name or subject prefix: a non-empty token of
// letters, digits, '-' and '_', at most MaxNameLen bytes.
func validName(what, s string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("%w: %s %q must be 1 to %d bytes", ErrInvalidName, what, s, MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			return fmt.Errorf("%w: %s %q may hold only letters, digits, '-' and '_'", ErrInvalidName, what, s)
		}
	}
	return nil
}
