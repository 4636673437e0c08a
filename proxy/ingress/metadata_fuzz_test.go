package ingress

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/jetstate/jetstate/protocol/cloudstate"
)

// The metadata fuzz targets take their headers or entries as one string,
// split at NUL bytes into key, value, key, value, ...

func pairs(raw string) [][2]string {
	parts := strings.Split(raw, "\x00")
	var out [][2]string
	for i := 0; i+1 < len(parts); i += 2 {
		out = append(out, [2]string{parts[i], parts[i+1]})
	}
	return out
}

// FuzzIncomingMetadata gives incomingMetadata arbitrary gRPC request
// metadata (keys lowercased, as the transport delivers them): it never
// panics; pseudo-headers (":authority") do not come out; every other value
// comes out once, "-bin" keys' as bytes, unchanged, the others as strings,
// unchanged if UTF-8; and metadata a gRPC or HTTP transport can deliver
// becomes protocol metadata that marshals.
func FuzzIncomingMetadata(f *testing.F) {
	f.Add("x-user\x00alice\x00:authority\x00localhost\x00content-type\x00application/grpc")
	f.Add("x-trace-bin\x00\x00\x01\xff\x00x-trace-bin\x00\x02")
	f.Add("x-name\x00caf\xe9")
	f.Add("x-a\x00\x00x-a\x00two\x00X-A\x00three")
	f.Add("x-name\x00caf\xc3\xa9\x00-bin\x00\xc3")
	f.Fuzz(func(t *testing.T, raw string) {
		md := metadata.MD{}
		for _, p := range pairs(raw) {
			md.Append(p[0], p[1])
		}
		checkIncoming(t, md, transportValid(md))
	})
}

// FuzzHeaderMetadata gives headerMetadata arbitrary HTTP request headers,
// then passes its result on through incomingMetadata (as a REST server
// stream does): nothing panics; content-type, te and grpc-* headers do not
// come out; keys come out lowercased; other values come out unchanged, and
// "-bin" values that gRPC would decode (base64, padded or not) come out as
// their bytes; bin, sent padded and unpadded, comes out twice.
func FuzzHeaderMetadata(f *testing.F) {
	f.Add("X-User\x00alice\x00Content-Type\x00application/json\x00Te\x00trailers\x00Grpc-Timeout\x001S", []byte{0, 1, 2})
	f.Add("X-Trace-Bin\x00AAEC\x00X-Trace-Bin\x00AAE=\x00X-Trace-Bin\x00AAE\x00X-Trace-Bin\x00not base64!", []byte{})
	f.Add("x-a\x001\x00X-A\x002\x00x-A\x003", []byte("\xff"))
	f.Add("X-Name\x00caf\xe9\x00:path\x00/x", []byte("ab"))
	f.Add("GRPC-Status\x000\x00x-bin\x00QQ==\x00X-BIN\x00QQ\x00-bin\x00====", []byte("abc"))
	f.Fuzz(func(t *testing.T, raw string, bin []byte) {
		h := http.Header{}
		for _, p := range pairs(raw) {
			h[p[0]] = append(h[p[0]], p[1]) // as is, not canonicalised
		}
		h.Add("X-Fuzz-Bin", base64.StdEncoding.EncodeToString(bin))
		h.Add("X-Fuzz-Bin", base64.RawStdEncoding.EncodeToString(bin))

		md := headerMetadata(h)
		sent := map[string][]string{} // by lowercased key
		for k, vs := range h {
			sent[strings.ToLower(k)] = append(sent[strings.ToLower(k)], vs...)
		}
		for k, vs := range md {
			if k != strings.ToLower(k) || k == "content-type" || k == "te" || strings.HasPrefix(k, "grpc-") {
				t.Fatalf("header %q came out as metadata %q", k, vs)
			}
			if !strings.HasSuffix(k, "-bin") {
				if !sameValues(vs, sent[k]) {
					t.Fatalf("%s: sent %q, metadata %q", k, sent[k], vs)
				}
				continue
			}
			if len(vs) > len(sent[k]) {
				t.Fatalf("%s: %d values sent, %d in the metadata", k, len(sent[k]), len(vs))
			}
			rest := slices.Clone(vs)
			for _, v := range sent[k] {
				b, err := grpcBinDecode(v)
				if err != nil {
					continue
				}
				i := slices.Index(rest, string(b))
				if i < 0 {
					t.Fatalf("%s: %q (%x) lost; metadata %q", k, v, b, vs)
				}
				rest = slices.Delete(rest, i, i+1)
			}
		}
		for k, vs := range sent {
			if _, ok := md[k]; !ok && !strings.HasSuffix(k, "-bin") && k != "content-type" && k != "te" && !strings.HasPrefix(k, "grpc-") {
				t.Fatalf("header %s %q lost", k, vs)
			}
		}
		n := 0
		for _, v := range md["x-fuzz-bin"] {
			if v == string(bin) {
				n++
			}
		}
		if n < 2 {
			t.Fatalf("x-fuzz-bin %x, sent padded and unpadded: metadata %q", bin, md["x-fuzz-bin"])
		}
		checkIncoming(t, md, transportValid(h))
	})
}

// checkIncoming runs incomingMetadata on md, as the request metadata of a
// stream (the REST server stream's, which delivers md unchanged), and
// checks what it promises. deliverable: md is what a transport can
// deliver; then the result must marshal.
func checkIncoming(t *testing.T, md metadata.MD, deliverable bool) {
	t.Helper()
	s := &httpStream{req: httptest.NewRequest(http.MethodPost, "/", nil), md: md}
	got := incomingMetadata(s)
	want := map[string][]string{}
	for k, vs := range md {
		if strings.HasPrefix(k, ":") {
			continue
		}
		for _, v := range vs {
			if !strings.HasSuffix(k, "-bin") {
				v = strings.ToValidUTF8(v, "\uFFFD") // a protocol string is UTF-8
			}
			want[k] = append(want[k], v)
		}
	}
	have := map[string][]string{}
	for _, e := range got.GetEntries() {
		k := e.GetKey()
		switch v := e.GetValue().(type) {
		case *cloudstate.MetadataEntry_BytesValue:
			if !strings.HasSuffix(k, "-bin") {
				t.Fatalf("%s: bytes %x", k, v.BytesValue)
			}
			have[k] = append(have[k], string(v.BytesValue))
		case *cloudstate.MetadataEntry_StringValue:
			if strings.HasSuffix(k, "-bin") {
				t.Fatalf("%s: string %q", k, v.StringValue)
			}
			have[k] = append(have[k], v.StringValue)
		default:
			t.Fatalf("%s: no value", k)
		}
	}
	if len(have) != len(want) {
		t.Fatalf("metadata %q became %v", map[string][]string(md), got)
	}
	for k, vs := range want {
		if !sameValues(have[k], vs) {
			t.Fatalf("%s: metadata %q became %q", k, vs, have[k])
		}
	}
	if _, err := proto.Marshal(got); err != nil && deliverable {
		t.Fatalf("metadata %q: protocol metadata does not marshal: %v", map[string][]string(md), err)
	}
}

// sameValues: a and b hold the same values, in any order (headers whose
// keys differ in case only are merged in map order).
func sameValues(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// grpcBinDecode decodes a "-bin" header value as gRPC does: padded base64
// when its length is a multiple of 4, unpadded otherwise.
func grpcBinDecode(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}

// transportValid: every key of h is an HTTP field name and every value an
// HTTP field value, as net/http and HTTP/2 servers admit them (a value may
// hold any byte but controls other than tab, so need not be UTF-8).
func transportValid(h map[string][]string) bool {
	for k, vs := range h {
		if k == "" {
			return false
		}
		for _, c := range []byte(k) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
				return false
			}
		}
		for _, v := range vs {
			for _, c := range []byte(v) {
				if c < ' ' && c != '\t' || c == 0x7f {
					return false
				}
			}
		}
	}
	return true
}
