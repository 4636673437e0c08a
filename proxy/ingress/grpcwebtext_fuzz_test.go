package ingress

import (
	"bytes"
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzDecodeBase64Chunks feeds arbitrary request bodies to the gRPC-Web
// text decoder: it never panics; a body with a byte that is neither base64,
// padding nor white space is refused; and what it accepts is whole padded
// base64 groups, so the output is exactly three bytes per four characters
// less one per '=' (hence never more than 3/4 of the body).
func FuzzDecodeBase64Chunks(f *testing.F) {
	f.Add([]byte("AAAAAAVoZWxsbw=="))     // one frame, one chunk
	f.Add([]byte("AAAAAAE=CAE=gAAAAA==")) // chunks padded one by one
	f.Add([]byte("  QUJD\r\nRA==\n"))     // line breaks and outer space
	f.Add([]byte("QQ=QQ=="))              // short padding
	f.Add([]byte("QQ==="))                // too much padding
	f.Add([]byte("QUJD RA=="))            // inner space
	f.Add([]byte("=QUJD"))                // padding first
	f.Add([]byte("QR=="))                 // non-zero trailing bits
	f.Add([]byte("QUJD-_=="))             // URL alphabet
	f.Add([]byte("QQ=\n="))               // a line break inside padding
	f.Add([]byte{0xff, 0xfe, 'Q', 'Q', '=', '='})
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := decodeBase64Chunks(bytes.NewReader(body))
		text := strings.TrimSpace(string(body))
		if err != nil {
			if out != nil {
				t.Fatalf("%q: error %v with output %q", body, err, out)
			}
			return
		}
		if len(out) > len(body)/4*3 {
			t.Fatalf("%q: %d bytes out of a %d-byte body", body, len(out), len(body))
		}
		chars, pad := 0, 0
		for i := range len(text) {
			switch c := text[i]; {
			case c == '\r' || c == '\n': // ignored by base64
			case c == '=':
				chars++
				pad++
			case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
				chars++
			default:
				t.Fatalf("%q: accepted with %q at %d", body, c, i)
			}
		}
		if chars%4 != 0 || len(out) != chars/4*3-pad {
			t.Fatalf("%q: %d bytes out of %d base64 characters with %d padding", body, len(out), chars, pad)
		}
	})
}

// FuzzBase64ChunksRoundTrip encodes arbitrary bytes as a streaming client
// or this package's own textWriter does (chunks cut at arbitrary points,
// each padded on its own), and decodes them back: the bytes must come back
// whole. cuts gives the chunk lengths (one byte each, 0 is a cut at the
// same place, as an empty flush); sep picks what goes between chunks and
// around the body (nothing, line breaks, outer white space).
func FuzzBase64ChunksRoundTrip(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x05hello"), []byte{5, 5}, byte(0))
	f.Add([]byte("abcdefgh"), []byte{1, 1, 1, 2, 3}, byte(1))
	f.Add([]byte("abc"), []byte{3}, byte(2))
	f.Add([]byte{}, []byte{0, 0}, byte(3))
	f.Add(bytes.Repeat([]byte{0x80, 0, 0xff}, 2000), []byte{7, 0, 200}, byte(0))
	f.Fuzz(func(t *testing.T, data, cuts []byte, sep byte) {
		between := []string{"", "\n", "\r\n", ""}[sep&3]
		outer := []string{"", "", "", " \t\r\n"}[sep&3]

		// Chunks encoded one by one, as the grpc-web JavaScript client
		// and other streaming encoders send them.
		var enc strings.Builder
		var chunks [][]byte
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if i < len(cuts) {
				n = min(int(cuts[i]), n)
			}
			chunks, rest = append(chunks, rest[:n]), rest[n:]
		}
		enc.WriteString(outer)
		for i, c := range chunks {
			if i > 0 {
				enc.WriteString(between)
			}
			enc.WriteString(base64.StdEncoding.EncodeToString(c))
		}
		enc.WriteString(outer)
		out, err := decodeBase64Chunks(strings.NewReader(enc.String()))
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("chunks %q encoded %q: decoded %q, %v", chunks, enc.String(), out, err)
		}

		// The same bytes through textWriter, flushed after every chunk.
		rec := httptest.NewRecorder()
		tw := &textWriter{ResponseWriter: rec}
		for _, c := range chunks {
			if _, err := tw.Write(c); err != nil {
				t.Fatal(err)
			}
			tw.Flush()
		}
		tw.finish()
		out, err = decodeBase64Chunks(rec.Body)
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("textWriter wrote %q for %q: decoded %q, %v", rec.Body.String(), data, out, err)
		}
	})
}
