package controller

import (
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Defaults for Config fields left zero.
const (
	DefaultSidecarImage     = "ghcr.io/jetstate/jetstate:latest"
	DefaultConnectTimeout   = 5 * time.Second
	DefaultProvisionRefresh = 10 * time.Minute
	DefaultResync           = 5 * time.Minute
	DefaultNotReadyRetry    = 15 * time.Second
)

// FieldManager is the server-side apply field manager of everything the
// operator writes.
const FieldManager = "jetstate-operator"

// Config is what the reconcilers share. A zero field means its documented
// default.
type Config struct {
	// SidecarImage runs `jetstate proxy` beside user functions and
	// `jetstate project` for projections, unless a resource overrides it.
	// Default DefaultSidecarImage.
	SidecarImage string

	// SidecarPullPolicy of that image; empty leaves Kubernetes' default.
	SidecarPullPolicy corev1.PullPolicy

	// ConnectTimeout bounds connecting to a store's NATS. Default 5 s.
	ConnectTimeout time.Duration

	// ProvisionRefresh is how long a successful provisioning of a service
	// is trusted before it is done again (it is also redone whenever the
	// service's store settings change). Default 10 min.
	ProvisionRefresh time.Duration

	// Resync is how often a Ready StatefulService or Projection is
	// reconciled without any change, to pick up changed secrets and
	// streams deleted by hand. Default 5 min.
	Resync time.Duration

	// NotReadyRetry is how soon something that is not ready for a reason
	// outside Kubernetes (NATS down, a sink without an address yet) is
	// looked at again. Default 15 s.
	NotReadyRetry time.Duration
}

func (c Config) withDefaults() Config {
	if c.SidecarImage == "" {
		c.SidecarImage = DefaultSidecarImage
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ProvisionRefresh <= 0 {
		c.ProvisionRefresh = DefaultProvisionRefresh
	}
	if c.Resync <= 0 {
		c.Resync = DefaultResync
	}
	if c.NotReadyRetry <= 0 {
		c.NotReadyRetry = DefaultNotReadyRetry
	}
	return c
}

// Validate reports every problem with the config at once.
func (c Config) Validate() error {
	var errs []error
	switch c.SidecarPullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, errors.New("sidecar pull policy must be Always, IfNotPresent or Never"))
	}
	if c.ConnectTimeout < 0 || c.ProvisionRefresh < 0 || c.Resync < 0 || c.NotReadyRetry < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	return errors.Join(errs...)
}
