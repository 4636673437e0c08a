package autoscaler_test

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/jetstate/jetstate/operator/autoscaler"
)

// statefulServices stands for the operator's Target: the StatefulServices
// with autoscaling enabled that use one StatefulStore.
type statefulServices struct{}

func (statefulServices) Services(context.Context) ([]autoscaler.Service, error) {
	// For each StatefulService: Name = status.serviceName, Policy from
	// spec.autoscaling, Replicas = spec.replicas, Ready = ready pods,
	// RollingOut = pods of an older template still exist.
	return nil, nil
}

func (statefulServices) Scale(ctx context.Context, svc autoscaler.Service, replicas int, reason string) error {
	// Update the scale subresource, record an Event with reason.
	return nil
}

// The wiring for one NATS store: an Aggregator reading the sidecars'
// reports, the state bucket, and a Runner; run them together (in the
// operator: a leader-elected manager Runnable).
func Example() {
	run := func(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, reg prometheus.Registerer, log *slog.Logger) error {
		loads := autoscaler.NewAggregator(autoscaler.AggregatorConfig{Conn: nc, Prefix: "jetstate", Logger: log, Registry: reg})
		store, err := autoscaler.NewStore(ctx, js, autoscaler.StoreConfig{Prefix: "jetstate", Replicas: 3})
		if err != nil {
			return err
		}
		r, err := autoscaler.New(autoscaler.Config{Target: statefulServices{}, Loads: loads, Store: store, Logger: log, Registry: reg})
		if err != nil {
			return err
		}
		g, ctx := errgroup.WithContext(ctx)
		g.Go(func() error { return loads.Run(ctx) })
		g.Go(func() error { return r.Run(ctx) })
		return g.Wait()
	}
	_ = run
}
