package model

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/jetstate/jetstate/internal/backoff"
	"github.com/jetstate/jetstate/protocol/cloudstate"
)

// Discovery back-off, as the reference proxy: 1 s doubling to 10 s (each
// wait jittered to [w/2, w] by internal/backoff, where the reference uses
// ±20 %).
const (
	discoveryBackoffMin = time.Second
	discoveryBackoffMax = 10 * time.Second
)

// DiscoveryConfig is what the sidecar tells the user function about itself.
type DiscoveryConfig struct {
	// ProxyName and ProxyVersion identify the sidecar in ProxyInfo.
	ProxyName, ProxyVersion string
	// Enabled lists the entity types (protocol service names) this sidecar
	// serves; ProxyInfo.supported_entity_types lists exactly these.
	Enabled []string
	// BackoffMin and BackoffMax pace retries while the function is not up.
	// Defaults 1 s and 10 s.
	BackoffMin, BackoffMax time.Duration
	// Logger receives retries. Nil discards.
	Logger *slog.Logger
}

// Discover asks the user function behind conn for its entities, retrying
// with back-off while it is unreachable or failing, until ctx is done. An
// answer that does not validate is reported to the function with
// reportError and returned as a *ValidationError without retrying: the
// function must be fixed and restarted.
func Discover(ctx context.Context, conn grpc.ClientConnInterface, cfg DiscoveryConfig) (*Model, error) {
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = discoveryBackoffMin
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = discoveryBackoffMax
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	client := cloudstate.NewEntityDiscoveryClient(conn)
	info := &cloudstate.ProxyInfo{
		ProtocolMajorVersion: ProtocolMajor,
		ProtocolMinorVersion: ProtocolMinor,
		ProxyName:            cfg.ProxyName,
		ProxyVersion:         cfg.ProxyVersion,
		SupportedEntityTypes: cfg.Enabled,
	}
	bo := backoff.Backoff{Min: cfg.BackoffMin, Max: cfg.BackoffMax}
	for attempt := 1; ; attempt++ {
		spec, err := client.Discover(ctx, info)
		if err == nil {
			m, err := BuildModel(spec, cfg.Enabled)
			var verr *ValidationError
			if errors.As(err, &verr) {
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if _, rerr := client.ReportError(rctx, &cloudstate.UserFunctionError{Message: verr.Error()}); rerr != nil {
					cfg.Logger.WarnContext(ctx, "reportError failed", "error", rerr)
				}
				cancel()
			}
			return m, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("discover: %w (last attempt: %v)", ctx.Err(), err)
		}
		wait := bo.Next()
		cfg.Logger.InfoContext(ctx, "user function not ready, retrying discovery", "attempt", attempt, "in", wait, "error", err)
		if backoff.Sleep(ctx, wait) != nil {
			return nil, fmt.Errorf("discover: %w (last attempt: %v)", ctx.Err(), err)
		}
	}
}
