package shoppingcart_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetstate/jetstate/streams"
)

// BenchmarkAddItem measures the whole command path of the shopping cart
// (client -gRPC-> sidecar -stream-> cart function on the sdk -> journal
// append -> reply) on warm carts, against raw JetStream CAS appends of a
// similar payload on the same embedded server in the same run, at 1 and 64
// concurrent carts. Everything shares the process and the machine's cores.
func BenchmarkAddItem(b *testing.B) {
	const perRound = 1000
	for _, carts := range []int{1, 64} {
		b.Run(fmt.Sprintf("entities=%d", carts), func(b *testing.B) {
			s := startSystemTB(b)
			users := make([]string, carts)
			for i := range users {
				users[i] = fmt.Sprint("bench-", i)
				if err := s.add(users[i], "warm", 1); err != nil {
					b.Fatal(err)
				}
			}
			raw := rawCAS(s.js, carts)
			cmd := func(_ context.Context, i int) error { return s.add(users[i], "apple", 1) }
			var rawT, cmdT time.Duration
			var rawL, cmdL []time.Duration
			for b.Loop() {
				t, l, err := round(b.Context(), raw, carts, perRound)
				if err != nil {
					b.Fatal(err)
				}
				rawT, rawL = rawT+t, append(rawL, l...)
				if t, l, err = round(b.Context(), cmd, carts, perRound); err != nil {
					b.Fatal(err)
				}
				cmdT, cmdL = cmdT+t, append(cmdL, l...)
			}
			rawRate, cmdRate := float64(len(rawL))/rawT.Seconds(), float64(len(cmdL))/cmdT.Seconds()
			b.ReportMetric(rawRate, "raw-appends/s")
			b.ReportMetric(cmdRate, "commands/s")
			b.ReportMetric(cmdRate/rawRate, "commands/raw")
			b.ReportMetric(quantileUS(rawL, 0.5), "raw-p50-us")
			b.ReportMetric(quantileUS(rawL, 0.99), "raw-p99-us")
			b.ReportMetric(quantileUS(cmdL, 0.5), "cmd-p50-us")
			b.ReportMetric(quantileUS(cmdL, 0.99), "cmd-p99-us")
		})
	}
}

// rawCAS is the baseline: one CAS publish per command, nothing else.
func rawCAS(js jetstream.JetStream, entities int) func(context.Context, int) error {
	last := make([]uint64, entities)
	payload := make([]byte, 40) // about an ItemAdded event
	cfg := streams.Config{Service: "shoppingcart"}
	return func(ctx context.Context, i int) error {
		msg := nats.NewMsg(cfg.Subject(streams.Entity{Type: "raw", Key: strconv.Itoa(i)}))
		msg.Data = payload
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last[i], 10))
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			return err
		}
		last[i] = ack.Sequence
		return nil
	}
}

// round runs n operations over entities, one goroutine per entity.
func round(ctx context.Context, op func(context.Context, int) error, entities, n int) (time.Duration, []time.Duration, error) {
	lats := make([][]time.Duration, entities)
	errs := make([]error, entities)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range entities {
		wg.Go(func() {
			for range n / entities {
				t0 := time.Now()
				if errs[i] = op(ctx, i); errs[i] != nil {
					return
				}
				lats[i] = append(lats[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for i := range entities {
		if errs[i] != nil {
			return 0, nil, errs[i]
		}
		all = append(all, lats[i]...)
	}
	return elapsed, all, nil
}

func quantileUS(l []time.Duration, q float64) float64 {
	s := slices.Clone(l)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds())
}
