package projections_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jetstate/jetstate/projections"
	"github.com/jetstate/jetstate/streams"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fixture appends a journal with every kind of payload and returns what
// each event's CloudEvent must be, by id.
func fixture(t *testing.T, e *env) map[string]want {
	t.Helper()
	i64, _ := proto.Marshal(wrapperspb.Int64(7))
	wrap := func(v string) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte(v))
	}
	cart := streams.Entity{Type: "cart", Key: "c1"}
	odd := streams.Entity{Type: "cart", Key: "c 2/é%"}
	order := streams.Entity{Type: "shop.Order", Key: "o1"}
	e.appendEvents(t, cart, strEvent("apple"))
	e.appendEvents(t, cart, strEvent("pear"), streams.Event{Type: typeURL(wrapperspb.Int64(0)), Data: i64})
	e.appendEvents(t, odd, strEvent("x"))
	e.appendEvents(t, order,
		streams.Event{Type: "json.cloudstate.io/shop.OrderPlaced", Data: wrap(`{"total": 3}`)},
		streams.Event{Type: "p.cloudstate.io/string", Data: wrap("hello")},
		streams.Event{Type: "p.cloudstate.io/bytes", Data: wrap("\x00\x01")})

	out := map[string]want{}
	for _, ent := range []streams.Entity{cart, odd, order} {
		index := map[uint64]int{}
		for rec, err := range e.journal.Read(t.Context(), ent, streams.Version{}) {
			if err != nil {
				t.Fatal(err)
			}
			i := index[rec.StreamSeq]
			index[rec.StreamSeq]++
			id := e.storage.JournalStream() + ":" + strconv.FormatUint(rec.StreamSeq, 10) + ":" + strconv.Itoa(i)
			out[id] = want{ent: ent, rec: rec}
		}
	}
	if len(out) != 7 {
		t.Fatalf("fixture has %d events, want 7", len(out))
	}
	return out
}

type want struct {
	ent streams.Entity
	rec streams.Record
}

// checkEvent checks every attribute of ev against the journal record.
func checkEvent(t *testing.T, ev *event.Event, w want, resolver bool) {
	t.Helper()
	name := w.rec.Type[strings.LastIndexByte(w.rec.Type, '/')+1:]
	if strings.HasPrefix(w.rec.Type, "p.cloudstate.io/") {
		name = w.rec.Type
	}
	if ev.SpecVersion() != "1.0" {
		t.Errorf("%s: specversion %q", ev.ID(), ev.SpecVersion())
	}
	if got, want := ev.Source(), "/jetstate/shop/"+url.PathEscape(w.ent.Type); got != want {
		t.Errorf("%s: source %q, want %q", ev.ID(), got, want)
	}
	if ev.Type() != name {
		t.Errorf("%s: type %q, want %q", ev.ID(), ev.Type(), name)
	}
	if ev.Subject() != w.ent.Key {
		t.Errorf("%s: subject %q, want %q", ev.ID(), ev.Subject(), w.ent.Key)
	}
	if !ev.Time().Equal(w.rec.Time) {
		t.Errorf("%s: time %v, want %v", ev.ID(), ev.Time(), w.rec.Time)
	}
	if got := ev.Extensions()[projections.SeqExtension]; got != strconv.FormatUint(w.rec.Seq, 10) {
		t.Errorf("%s: %s = %v, want %d", ev.ID(), projections.SeqExtension, got, w.rec.Seq)
	}
	if err := ev.Validate(); err != nil {
		t.Errorf("%s: %v", ev.ID(), err)
	}
	ct, data := ev.DataContentType(), ev.Data()
	switch {
	case strings.HasPrefix(w.rec.Type, "json.cloudstate.io/"):
		if ct != projections.ContentTypeJSON || !jsonEqual(data, []byte(`{"total":3}`)) {
			t.Errorf("%s: %s %q, want the JSON", ev.ID(), ct, data)
		}
	case w.rec.Type == "p.cloudstate.io/string":
		if ct != projections.ContentTypeText || string(data) != "hello" {
			t.Errorf("%s: %s %q, want text hello", ev.ID(), ct, data)
		}
	case w.rec.Type == "p.cloudstate.io/bytes":
		if ct != projections.ContentTypeBytes || string(data) != "\x00\x01" {
			t.Errorf("%s: %s %q, want the bytes", ev.ID(), ct, data)
		}
	default:
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(w.rec.Type)
		if err != nil {
			t.Fatal(err)
		}
		wantMsg, got := mt.New().Interface(), mt.New().Interface()
		if err := proto.Unmarshal(w.rec.Data, wantMsg); err != nil {
			t.Fatal(err)
		}
		if resolver {
			if ct != projections.ContentTypeJSON {
				t.Errorf("%s: content type %q, want JSON", ev.ID(), ct)
			}
			if err := protojson.Unmarshal(data, got); err != nil {
				t.Errorf("%s: data %q: %v", ev.ID(), data, err)
			}
		} else {
			if ct != projections.ContentTypeProtobuf {
				t.Errorf("%s: content type %q, want protobuf", ev.ID(), ct)
			}
			if err := proto.Unmarshal(data, got); err != nil {
				t.Errorf("%s: data: %v", ev.ID(), err)
			}
		}
		if diff := cmp.Diff(wantMsg, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s: data decodes to another event (-want +got):\n%s", ev.ID(), diff)
		}
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && cmp.Equal(x, y)
}

// TestCloudEvents runs the same journal through every sink and content
// mode and checks every attribute of every event; the structured JSON
// forms are compared with golden files.
func TestCloudEvents(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		nats       bool
		structured bool
		resolver   bool
		golden     string
	}{
		{name: "http binary"},
		{name: "http structured", structured: true, golden: "http_structured.golden"},
		{name: "http structured json data", structured: true, resolver: true, golden: "http_structured_json.golden"},
		{name: "nats binary", nats: true},
		{name: "nats binary json data", nats: true, resolver: true},
		{name: "nats structured", nats: true, structured: true, golden: "nats_structured.golden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			wants := fixture(t, e)
			var rec *recorder
			var sink projections.Sink
			if tc.nats {
				nc := e.srv.Connect(t)
				rec = subscribe(t, nc, "cloudevents")
				s, err := projections.NewNATSSink(e.srv.Connect(t), projections.NATSSinkConfig{Subject: "cloudevents", Structured: tc.structured})
				if err != nil {
					t.Fatal(err)
				}
				sink = s
			} else {
				h := newHTTPTarget(t)
				rec = h.rec
				s, err := projections.NewHTTPSink(projections.HTTPSinkConfig{Target: h.URL, Structured: tc.structured})
				if err != nil {
					t.Fatal(err)
				}
				sink = s
			}
			cfg := e.config("view", sink)
			if tc.resolver {
				cfg.Resolver = protoregistry.GlobalTypes
			}
			p, err := projections.New(e.js, cfg)
			if err != nil {
				t.Fatal(err)
			}
			pr := run(t, p.Run)
			evs := rec.waitCount(t, len(wants))
			if err := pr.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(evs) != len(wants) {
				t.Errorf("got %d events, want %d (no redelivery expected)", len(evs), len(wants))
			}
			for _, ev := range evs {
				w, ok := wants[ev.ID()]
				if !ok {
					t.Errorf("unexpected event id %q", ev.ID())
					continue
				}
				checkEvent(t, ev, w, tc.resolver)
			}
			checkOrder(t, evs, map[string]uint64{"c1": 3, "c 2/é%": 1, "o1": 3})
			if tc.golden != "" {
				checkGolden(t, tc.golden, rec)
			}
		})
	}
}

var timeField = regexp.MustCompile(`"time":"[^"]*"`)

// checkGolden compares the structured bodies received, ordered by id and
// with the append times blanked, with testdata/name.
func checkGolden(t *testing.T, name string, rec *recorder) {
	t.Helper()
	rec.mu.Lock()
	bodies := slices.Clone(rec.raw)
	rec.mu.Unlock()
	key := func(b []byte) [2]int {
		var v struct{ ID string }
		_ = json.Unmarshal(b, &v)
		parts := strings.Split(v.ID, ":")
		if len(parts) != 3 {
			return [2]int{}
		}
		seq, _ := strconv.Atoi(parts[1])
		i, _ := strconv.Atoi(parts[2])
		return [2]int{seq, i}
	}
	slices.SortFunc(bodies, func(a, b []byte) int {
		ka, kb := key(a), key(b)
		if ka[0] != kb[0] {
			return ka[0] - kb[0]
		}
		return ka[1] - kb[1]
	})
	var got bytes.Buffer
	for _, b := range bodies {
		got.Write(timeField.ReplaceAll(b, []byte(`"time":"<append time>"`)))
		got.WriteByte('\n')
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	wantBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(wantBytes), got.String()); diff != "" {
		t.Errorf("%s differs (-want +got); run with -update if intended:\n%s", path, diff)
	}
}
