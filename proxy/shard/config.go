package shard

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/jetstate/jetstate/internal/prom"
	"github.com/jetstate/jetstate/internal/tracing"
	"github.com/jetstate/jetstate/proxy/entity"
	"github.com/jetstate/jetstate/proxy/model"
	"github.com/jetstate/jetstate/streams"
)

// Defaults for Config fields left zero.
const (
	DefaultRouteTimeout   = 30 * time.Second
	DefaultCommandTimeout = entity.DefaultCommandTimeout
	DefaultOwnerGoneGrace = 5 * time.Second
)

// Local runs the commands of the shards this sidecar serves (the entity
// runtimes, composed by package proxy).
type Local interface {
	// Handle runs a command on the entity key of svc here; a service
	// without entities here is model.ErrUnknownMethod.
	Handle(ctx context.Context, svc *model.Service, key, name string, payload *anypb.Any) (entity.Result, error)
	// PassivateShard passivates the active entities of shard, letting the
	// commands they run finish, and returns when they are closed.
	PassivateShard(shard int)
}

// Config configures a sidecar's sharding.
type Config struct {
	// Ownership is the service's member and shard tables; required.
	Ownership *streams.Ownership
	// Conn carries the routed commands; required.
	Conn *nats.Conn
	// Storage names the route subjects; Storage.Service is required.
	Storage streams.Config
	// Info is published in the member bucket.
	Info MemberInfo
	// Model resolves the services of routed commands; required.
	Model *model.Model
	// Local runs commands of the shards served here; required.
	Local Local
	// CommandTimeout is how long the user function may take for one
	// command; a routed command waits for its owner at most this and a
	// second. Default 1 min.
	CommandTimeout time.Duration
	// RouteTimeout bounds how long a command is retried while its shard
	// has no reachable owner. Default 30 s.
	RouteTimeout time.Duration
	// OwnerGoneGrace is how long a routed command still waits for its
	// answer once its owner has left the members (killed: when its
	// membership expired) before it ends as ambiguous (entity.ErrEntityFailed:
	// it may or may not have run). Default 5 s.
	OwnerGoneGrace time.Duration
	// Registry receives the metrics; nil: nowhere.
	Registry prometheus.Registerer
	// Tracer continues the traces of commands routed here; nil: off.
	Tracer *tracing.Tracer
	// Log; nil discards.
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.RouteTimeout <= 0 {
		c.RouteTimeout = DefaultRouteTimeout
	}
	if c.OwnerGoneGrace <= 0 {
		c.OwnerGoneGrace = DefaultOwnerGoneGrace
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// metrics are sharding's and routing's Prometheus metrics.
type metrics struct {
	owned   prometheus.Gauge
	routed  *prometheus.CounterVec
	retries *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		owned: prom.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jetstate_proxy_shards_owned", Help: "Shards this sidecar serves.",
		})),
		routed: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_routed_commands_total", Help: "Entity commands by where they ran: local (this sidecar owns the shard) or remote (sent to the owner over NATS), retries included.",
		}, []string{"service", "route"})),
		retries: prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetstate_proxy_route_retries_total", Help: "Entity commands tried again because their shard was moving or had no reachable owner.",
		}, []string{"service"})),
	}
}
