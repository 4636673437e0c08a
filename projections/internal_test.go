package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"

	"github.com/jetstate/jetstate/streams"
)

// TestRetrier checks the retry schedule, the give-up rules and the
// per-try timeout on a fake clock.
func TestRetrier(t *testing.T) {
	r := retrier{maxTries: 5, min: 100 * time.Millisecond, max: 400 * time.Millisecond, sendTimeout: time.Second}
	ev := event.New()
	cases := []struct {
		name      string
		failures  int   // tries that fail before one succeeds
		err       error // what a failing try returns (nil: it hangs until its timeout)
		wantTries int
		wantErr   bool
		// bounds of the time taken: back-off with jitter sleeps d/2..d.
		minTime, maxTime time.Duration
	}{
		{name: "first try", failures: 0, wantTries: 1},
		{name: "recovers", failures: 3, err: errors.New("503"), wantTries: 4,
			minTime: (100 + 200 + 400) * time.Millisecond / 2, maxTime: (100 + 200 + 400) * time.Millisecond},
		{name: "gives up", failures: 100, err: errors.New("503"), wantTries: 5, wantErr: true,
			minTime: (100 + 200 + 400 + 400) * time.Millisecond / 2, maxTime: (100 + 200 + 400 + 400) * time.Millisecond},
		{name: "rejected", failures: 100, err: fmt.Errorf("400: %w", ErrRejected), wantTries: 1, wantErr: true},
		{name: "timeouts", failures: 2, wantTries: 3,
			minTime: 2*time.Second + 150*time.Millisecond, maxTime: 2*time.Second + 300*time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				calls, failed := 0, 0
				send := func(ctx context.Context, _ *event.Event) error {
					calls++
					if calls > tc.failures {
						return nil
					}
					if tc.err == nil {
						<-ctx.Done()
						return ctx.Err()
					}
					return tc.err
				}
				start := time.Now()
				tries, err := r.send(t.Context(), send, &ev, func(int, error) { failed++ })
				took := time.Since(start)
				if tries != tc.wantTries || (err != nil) != tc.wantErr {
					t.Errorf("send: %d tries, %v; want %d tries, error %v", tries, err, tc.wantTries, tc.wantErr)
				}
				if failed != tries-1 && !tc.wantErr || tc.wantErr && failed != tries {
					t.Errorf("failed called %d times after %d tries", failed, tries)
				}
				if took < tc.minTime || took > tc.maxTime {
					t.Errorf("took %v, want %v..%v", took, tc.minTime, tc.maxTime)
				}
			})
		})
	}
}

// TestRetrierCancel: a cancelled context ends the retries at once with
// its error, not the sink's.
func TestRetrierCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := retrier{maxTries: 100, min: time.Second, max: time.Minute, sendTimeout: time.Second}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		ev := event.New()
		_, err := r.send(ctx, func(context.Context, *event.Event) error { return errors.New("down") }, &ev, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("send: %v, want the context's deadline", err)
		}
	})
}

func TestConvert(t *testing.T) {
	c := converter{stream: "jetstate_shop_journal", source: "/jetstate/shop"}
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	rec := func(typ string, data []byte) streams.Record {
		return streams.Record{Event: streams.Event{Type: typ, Data: data}, Version: streams.Version{Seq: 4, StreamSeq: 9}, Time: at}
	}
	t.Run("ok", func(t *testing.T) {
		ev, err := c.event(streams.Entity{Type: "a b", Key: "bad\xffutf8"}, rec("type.googleapis.com/x.Y", []byte{8, 1}), 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]any{"id": ev.ID(), "source": ev.Source(), "type": ev.Type(), "subject": ev.Subject(),
			"time": ev.Time(), "ct": ev.DataContentType(), "data": string(ev.Data()), "ext": ev.Extensions()}
		want := map[string]any{"id": "jetstate_shop_journal:9:2", "source": "/jetstate/shop/a%20b", "type": "x.Y",
			"subject": "bad=FFutf8", "time": at, "ct": ContentTypeProtobuf, "data": "\x08\x01",
			"ext": map[string]any{SeqExtension: "4"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if err := ev.Validate(); err != nil {
			t.Error(err)
		}
	})
	for _, tc := range []struct {
		name string
		rec  streams.Record
	}{
		{"no type", rec("", nil)},
		{"type url without name", rec("type.googleapis.com/", nil)},
		{"json wrapper not json", rec(cloudstateJSON+"x.Y", []byte{10, 3, '{', '{', '{'})},
		{"json wrapper not a message", rec(cloudstateJSON+"x.Y", []byte{10, 9})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.event(streams.Entity{Type: "t", Key: "k"}, tc.rec, 0, nil); !errors.Is(err, ErrBadEvent) {
				t.Errorf("event: %v, want ErrBadEvent", err)
			}
		})
	}
	// Built again and again in one eventParts, each event equals the one
	// built afresh.
	t.Run("reused", func(t *testing.T) {
		var parts eventParts
		for i, tc := range []struct {
			ent streams.Entity
			rec streams.Record
		}{
			{streams.Entity{Type: "a b", Key: "bad\xffutf8"}, rec("type.googleapis.com/x.Y", []byte{8, 1})},
			{streams.Entity{Type: "cart", Key: "k1"}, rec(cloudstatePrimitive+"string", []byte{10, 2, 'h', 'i'})},
			{streams.Entity{Type: "cart", Key: "k2"}, rec("type.googleapis.com/x.Z", nil)},
			{streams.Entity{Type: "order", Key: ""}, rec(cloudstateJSON+"x.Y", []byte{10, 2, '{', '}'})},
		} {
			want, err := c.event(tc.ent, tc.rec, i, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.event(tc.ent, tc.rec, i, &parts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want.String(), got.String()); diff != "" {
				t.Errorf("event %d (-fresh +reused):\n%s", i, diff)
			}
			got.SetExtension("extra", "left by a sink")
			got.SetDataSchema("/left/by/a/sink")
		}
	})
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Storage: streams.Config{Service: "shop"}, Name: "view"}
	cases := []struct {
		name   string
		change func(*Config)
		want   []string // substrings of the error; none: valid
	}{
		{"minimal", func(*Config) {}, nil},
		{"all at once", func(c *Config) {
			c.Storage.Service, c.Name, c.Start = "", "a.b", StartTime
			c.RetryMin, c.RetryMax = time.Second, time.Millisecond
		}, []string{"service", "name", "StartTime", "retry min"}},
		{"long name", func(c *Config) { c.Name = strings.Repeat("n", 49) }, []string{"name"}},
		{"empty type", func(c *Config) { c.Types = []string{""} }, []string{"types"}},
		// Overlapping filters: the server refused the consumer, and Run
		// failed at every start.
		{"type twice", func(c *Config) { c.Types = []string{"cart", "wish", "cart"} }, []string{`"cart" twice`}},
		{"dead letters into the journal", func(c *Config) { c.DeadLetterSubject = "jetstate.shop.dlq" }, []string{"inside"}},
		{"wildcard dead letters", func(c *Config) { c.DeadLetterSubject = "dlq.>" }, []string{"dead-letter"}},
		{"unknown start", func(c *Config) { c.Start = 7 }, []string{"start policy"}},
		{"source URL", func(c *Config) { c.Source = "https://example.com/shop" }, nil},
		// Found only at the first event, every event was dead-lettered.
		{"source not a URI reference", func(c *Config) { c.Source = "/shop/50%" }, []string{"source"}},
		{"source with a space", func(c *Config) { c.Source = " https://example.com" }, []string{"source"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.change(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", c)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if got := ok.withDefaults().DeadLetterSubject; got != "jetstate_deadletter.shop.view" {
		t.Errorf("default dead-letter subject %q", got)
	}
	c := ok
	c.Types = []string{"cart", "a.b"}
	if diff := cmp.Diff([]string{"jetstate.shop.cart.>", "jetstate.shop.a=2Eb.>"}, c.withDefaults().filterSubjects()); diff != "" {
		t.Errorf("filters (-want +got):\n%s", diff)
	}
}

// TestWaker: Next's context ends once after the messages stop (one period
// without any), not while they flow, and not again until one more came.
func TestWaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const period = 100 * time.Millisecond
		w := newWaker()
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { w.run(stop, period); close(done) }()
		ended := func(ctx context.Context) bool {
			synctest.Wait()
			return ctx.Err() != nil
		}
		// Messages every half period: never woken.
		ctx := w.context()
		for range 10 {
			w.got.Add(1)
			time.Sleep(period / 2)
		}
		if ended(ctx) {
			t.Fatal("woken while messages flow")
		}
		// Then none: woken within two periods, once.
		time.Sleep(2 * period)
		if !ended(ctx) {
			t.Fatal("not woken two periods after the last message")
		}
		ctx = w.context()
		time.Sleep(10 * period)
		if ended(ctx) {
			t.Fatal("woken again without a message")
		}
		// One more message, then quiet: woken again.
		w.got.Add(1)
		time.Sleep(3 * period)
		if !ended(ctx) {
			t.Fatal("not woken after the next message")
		}
		close(stop)
		<-done
		if !ended(w.context()) {
			t.Error("the last context outlives run")
		}
	})
}
