package streams

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// kvKey is the key syntax nats.go accepts for KV buckets; tokens must also be
// valid there.
var kvKey = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)

func TestEncodeToken(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "="},
		{"plain", "cart-42_A", "cart-42_A"},
		{"dot", "a.b", "a=2Eb"},
		{"space", "a b", "a=20b"},
		{"star", "*", "=2A"},
		{"gt", ">", "=3E"},
		{"escape char", "=", "=3D"},
		{"looks escaped", "=2E", "=3D2E"},
		{"utf8", "é", "=C3=A9"},
		{"nul", "\x00", "=00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EncodeToken(tt.in)
			if got != tt.want {
				t.Fatalf("EncodeToken(%q) = %q, want %q", tt.in, got, tt.want)
			}
			back, err := DecodeToken(got)
			if err != nil || back != tt.in {
				t.Fatalf("DecodeToken(%q) = %q, %v; want %q", got, back, err, tt.in)
			}
		})
	}
}

func TestDecodeTokenRejectsNonCanonical(t *testing.T) {
	for _, tok := range []string{"", "a.b", "a b", "=2e", "=41", "=4", "x=", "=G0", "*", ">", "a=2"} {
		if got, err := DecodeToken(tok); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("DecodeToken(%q) = %q, %v; want ErrInvalidKey", tok, got, err)
		}
	}
}

func TestEntityValidate(t *testing.T) {
	tests := []struct {
		name string
		e    Entity
		ok   bool
	}{
		{"empty key", Entity{Type: "t", Key: ""}, true},
		{"key at limit", Entity{Type: "t", Key: strings.Repeat(">", MaxKeyLen)}, true},
		{"key too long", Entity{Type: "t", Key: strings.Repeat("k", MaxKeyLen+1)}, false},
		{"no type", Entity{Key: "k"}, false},
		{"type too long", Entity{Type: strings.Repeat("t", MaxTypeLen+1), Key: "k"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.e.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("Validate = %v, want ErrInvalidKey", err)
			}
		})
	}
}

func TestSubjectRoundTrip(t *testing.T) {
	cfg := Config{Service: "cart"}
	e := Entity{Type: "com.example.Cart", Key: "user 1.*>"}
	subj := cfg.Subject(e)
	if want := "jetstate.cart.com=2Eexample=2ECart.user=201=2E=2A=3E"; subj != want {
		t.Fatalf("Subject = %q, want %q", subj, want)
	}
	got, err := cfg.ParseSubject(subj)
	if err != nil || got != e {
		t.Fatalf("ParseSubject(%q) = %v, %v; want %v", subj, got, err, e)
	}
	if _, err := cfg.ParseSubject("jetstate.other.t.k"); err == nil {
		t.Fatal("ParseSubject accepted another service's subject")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{Service: "shopping-cart"}).Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, c := range []Config{{}, {Service: "a.b"}, {Service: "a", Prefix: "p*"}, {Service: strings.Repeat("s", MaxNameLen+1)}} {
		if err := c.Validate(); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidName", c, err)
		}
	}
}

// FuzzToken checks that the encoding is a bijection between byte strings
// and tokens that are valid subject tokens and KV keys.
func FuzzToken(f *testing.F) {
	for _, s := range []string{"", "a", "a.b", " ", "*", ">", "=", "=2E", "é", "\x00\xff", strings.Repeat("x", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := EncodeToken(s)
		if !kvKey.MatchString(tok) || strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Fatalf("EncodeToken(%q) = %q is not a valid token", s, tok)
		}
		back, err := DecodeToken(tok)
		if err != nil || back != s {
			t.Fatalf("round trip %q -> %q -> %q, %v", s, tok, back, err)
		}
		// Any token that decodes must be the encoding of what it decodes to.
		if d, err := DecodeToken(s); err == nil && EncodeToken(d) != s {
			t.Fatalf("DecodeToken(%q) = %q, which encodes to %q", s, d, EncodeToken(d))
		}
	})
}
