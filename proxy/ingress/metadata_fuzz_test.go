package ingress

import (
	"encoding/base64"
	"fmt"
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

// FuzzOutgoingMetadata gives outgoingMetadata arbitrary reply metadata
// (kinds: bit i set makes entry i bytes): nothing panics; no reserved header
// (in any letter case) comes out; string values come out unchanged and
// bytes only under "-bin" keys, byte for byte; keys come out lowercased.
// Then the round trips the proxy relies on, for well-formed entries (a
// gRPC metadata key that is not reserved; a printable ASCII string, or
// bytes under a "-bin" key): reply metadata sent as gRPC headers, or as the
// HTTP headers of a REST stream (httpStream), and read back as request
// metadata by incomingMetadata (after headerMetadata for HTTP), is the
// same entries.
func FuzzOutgoingMetadata(f *testing.F) {
	f.Add("x-reply\x001\x00x-reply-bin\x00\x00\x01\x00content-type\x00text/evil", uint64(0b010))
	f.Add("grpc-status\x000\x00Grpc-Message\x00hi\x00:status\x00200\x00Connection\x00close", uint64(0))
	f.Add("x-a\x00one\x00X-A\x00two\x00x-a-bin\x00str\x00x-b\x00bytes", uint64(0b1000))
	f.Add("x-b-bin\x00\xff\xfe\x00x-b-bin\x00\x00\x00cache-control\x00no-store", uint64(0b11))
	f.Add("\x00empty key\x00x y\x00space\x00x-u\x00caf\xe9", uint64(0))
	f.Fuzz(func(t *testing.T, raw string, kinds uint64) {
		in := &cloudstate.Metadata{}
		for i, p := range pairs(raw) {
			e := &cloudstate.MetadataEntry{Key: p[0], Value: &cloudstate.MetadataEntry_StringValue{StringValue: p[1]}}
			if i < 64 && kinds&(1<<i) != 0 {
				e.Value = &cloudstate.MetadataEntry_BytesValue{BytesValue: []byte(p[1])}
			}
			in.Entries = append(in.Entries, e)
		}
		out := outgoingMetadata(in)
		want := map[string][]string{}
		for _, e := range in.GetEntries() {
			k := strings.ToLower(e.GetKey())
			if reservedHeader(k) {
				continue
			}
			switch v := e.GetValue().(type) {
			case *cloudstate.MetadataEntry_StringValue:
				want[k] = append(want[k], v.StringValue)
			case *cloudstate.MetadataEntry_BytesValue:
				if strings.HasSuffix(e.GetKey(), "-bin") {
					want[k] = append(want[k], string(v.BytesValue))
				}
			}
		}
		for k, vs := range out {
			if reservedHeader(k) {
				t.Fatalf("reserved header %q %q came out of %v", k, vs, in)
			}
			if k != strings.ToLower(k) {
				t.Fatalf("key %q not lowercased", k)
			}
			if !sameValues(vs, want[k]) {
				t.Fatalf("%s: %q came out, want %q (from %v)", k, vs, want[k], in)
			}
		}
		if len(out) != len(want) {
			t.Fatalf("%v: out %q, want %q", in, map[string][]string(out), want)
		}

		// The round trips, on the well-formed entries.
		wf := &cloudstate.Metadata{}
		for _, e := range in.GetEntries() {
			if wellFormed(e) {
				wf.Entries = append(wf.Entries, e)
			}
		}
		if len(wf.Entries) == 0 {
			return
		}
		md := outgoingMetadata(wf)
		back := incomingMetadata(&httpStream{req: httptest.NewRequest(http.MethodPost, "/", nil), md: md})
		if !sameEntries(back, wf) {
			t.Fatalf("gRPC round trip: %v -> %q -> %v", wf, map[string][]string(md), back)
		}
		rec := httptest.NewRecorder()
		s := &httpStream{resp: &errorBody{ResponseWriter: rec}, route: &streamRoute{}}
		if err := s.SetHeader(md); err != nil {
			t.Fatal(err)
		}
		s.start("application/x-ndjson")
		md = headerMetadata(rec.Header())
		back = incomingMetadata(&httpStream{req: httptest.NewRequest(http.MethodPost, "/", nil), md: md})
		if !sameEntries(back, wf) {
			t.Fatalf("HTTP round trip: %v -> %q -> %v", wf, rec.Header(), back)
		}
	})
}

// wellFormed: an entry outgoingMetadata sends and the ingress reads back as
// it was (a valid, lowercase gRPC key that is not reserved, with a
// printable ASCII string, or with bytes on a "-bin" key).
func wellFormed(e *cloudstate.MetadataEntry) bool {
	k := e.GetKey()
	if k == "" || reservedHeader(k) {
		return false
	}
	for _, c := range []byte(k) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	switch v := e.GetValue().(type) {
	case *cloudstate.MetadataEntry_StringValue:
		if strings.HasSuffix(k, "-bin") {
			return false // read back as bytes
		}
		for _, c := range []byte(v.StringValue) {
			if c < ' ' || c > '~' {
				return false
			}
		}
		return true
	case *cloudstate.MetadataEntry_BytesValue:
		return strings.HasSuffix(k, "-bin")
	}
	return false
}

// sameEntries: a and b hold the same entries, in any order across keys
// and in the same order within one key.
func sameEntries(a, b *cloudstate.Metadata) bool {
	group := func(md *cloudstate.Metadata) map[string][]string {
		out := map[string][]string{}
		for _, e := range md.GetEntries() {
			out[e.GetKey()] = append(out[e.GetKey()], fmt.Sprintf("%T %q", e.GetValue(), e.GetStringValue()+string(e.GetBytesValue())))
		}
		return out
	}
	ga, gb := group(a), group(b)
	if len(ga) != len(gb) {
		return false
	}
	for k, vs := range ga {
		if !slices.Equal(vs, gb[k]) {
			return false
		}
	}
	return true
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
