package ingress

import (
	"bytes"
	"io"
	"testing"

	"golang.org/x/net/http2"
)

// FuzzSettingsAckFilter builds an HTTP/2 client's bytes from the input (the
// preface, then frames: type, flags, payload length mod 40, payload) and
// reads them through settingsAckFilter in pieces of the sizes steps gives:
// what comes out is the same bytes less the first empty SETTINGS frame
// with the ACK flag, whatever the pieces.
func FuzzSettingsAckFilter(f *testing.F) {
	f.Add([]byte{4, 0, 6, 1, 2, 3, 4, 5, 6, 8, 0, 4, 0, 0, 0, 1, 4, 1, 0, 1, 4, 0}, []byte{1})
	f.Add([]byte{1, 4, 3, 'a', 'b', 'c', 4, 1, 0, 6, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 4, 1, 0}, []byte{3, 9, 24, 1})
	f.Add([]byte{4, 1, 0, 4, 1, 0}, []byte{100})
	f.Fuzz(func(t *testing.T, spec, steps []byte) {
		in := bytes.NewBuffer(append([]byte(nil), http2Preface...))
		want := bytes.NewBuffer(append([]byte(nil), http2Preface...))
		dropped := false
		for len(spec) >= 3 {
			typ, flags, n := spec[0], spec[1], int(spec[2])%40
			spec = spec[3:]
			n = min(n, len(spec))
			payload := spec[:n]
			spec = spec[n:]
			frame := append([]byte{0, 0, byte(n), typ, flags, 0, 0, 0, 0}, payload...)
			in.Write(frame)
			if !dropped && http2.FrameType(typ) == http2.FrameSettings && http2.Flags(flags).Has(http2.FlagSettingsAck) && n == 0 {
				dropped = true
				continue
			}
			want.Write(frame)
		}
		src := &pieces{r: in, steps: steps}
		filter := &settingsAckFilter{r: src, pass: len(http2Preface)}
		var got []byte
		for i := 0; ; i++ {
			size := 7
			if len(steps) > 0 {
				size = int(steps[i%len(steps)])%64 + 1
			}
			b := make([]byte, size)
			n, err := filter.Read(b)
			got = append(got, b[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if i > 1<<16 {
				t.Fatal("no end")
			}
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("filtered\n%q\nwant\n%q", got, want.Bytes())
		}
	})
}

// pieces reads from r at most steps[i] bytes (plus one) on its i-th read,
// in turn, as a connection delivers what has arrived.
type pieces struct {
	r     io.Reader
	steps []byte
	i     int
}

func (p *pieces) Read(b []byte) (int, error) {
	if len(p.steps) > 0 {
		b = b[:min(len(b), int(p.steps[p.i%len(p.steps)])+1)]
		p.i++
	}
	return p.r.Read(b)
}
