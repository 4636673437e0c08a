package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/jetstate/jetstate/operator/controller"
)

// operatorConfig is what jetstate-operator needs.
type operatorConfig struct {
	Controller      controller.Config
	MetricsAddr     string
	HealthAddr      string
	LeaderElect     bool
	LeaderNamespace string
	Namespaces      []string // empty: all
	Autoscaler      bool
	AutoscalerTick  time.Duration
	LogLevel        slog.Level
}

func parseOperator(args []string, getenv func(string) string, out io.Writer) (operatorConfig, error) {
	env := envLookup(getenv)
	var c operatorConfig
	fs := flag.NewFlagSet("jetstate-operator", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, "Usage: jetstate-operator [flags]   (or: jetstate operator [flags])\n\nThe Kubernetes operator: reconciles StatefulStores, StatefulServices and Projections\n(jetstate.io/v1alpha1) and autoscales StatefulServices. Uses the in-cluster config,\nor KUBECONFIG / ~/.kube/config outside a cluster.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.MetricsAddr, "metrics-bind-address", env("METRICS_BIND_ADDRESS", ":8080"), "address of /metrics; 0 disables it [METRICS_BIND_ADDRESS]")
	fs.StringVar(&c.HealthAddr, "health-probe-bind-address", env("HEALTH_PROBE_BIND_ADDRESS", ":8081"), "address of /healthz and /readyz [HEALTH_PROBE_BIND_ADDRESS]")
	fs.BoolVar(&c.LeaderElect, "leader-elect", env("LEADER_ELECT", "") == "true", "elect a leader among several operator replicas (a Lease) [LEADER_ELECT]")
	fs.StringVar(&c.LeaderNamespace, "leader-election-namespace", env("POD_NAMESPACE", ""), "namespace of the Lease (default: the pod's own) [POD_NAMESPACE]")
	fs.StringVar(&c.Controller.SidecarImage, "sidecar-image", env("JETSTATE_SIDECAR_IMAGE", controller.DefaultSidecarImage), "image running jetstate proxy and jetstate project [JETSTATE_SIDECAR_IMAGE]")
	pull := fs.String("sidecar-pull-policy", env("JETSTATE_SIDECAR_PULL_POLICY", ""), "pull policy of that image: Always, IfNotPresent or Never [JETSTATE_SIDECAR_PULL_POLICY]")
	namespaces := fs.String("namespaces", env("WATCH_NAMESPACES", ""), "comma-separated namespaces to watch; empty: all [WATCH_NAMESPACES]")
	fs.BoolVar(&c.Autoscaler, "autoscaler", env("JETSTATE_AUTOSCALER", "true") == "true", "run the autoscaler for StatefulServices with autoscaling enabled [JETSTATE_AUTOSCALER]")
	fs.DurationVar(&c.AutoscalerTick, "autoscaler-tick", 0, "how often the autoscaler decides (default 2s)")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	c.Controller.SidecarPullPolicy = corev1.PullPolicy(*pull)
	c.Namespaces = splitList(*namespaces)
	if c.AutoscalerTick < 0 {
		errs = append(errs, errors.New("-autoscaler-tick must not be negative"))
	}
	if *verbose {
		c.LogLevel = slog.LevelDebug
	}
	errs = append(errs, c.Controller.Validate())
	return c, errors.Join(errs...)
}

// runOperator runs the controller manager until ctx is done.
func runOperator(ctx context.Context, c operatorConfig, out io.Writer) error {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: c.LogLevel}))
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))
	restConfig, err := config.GetConfig()
	if err != nil {
		return fmt.Errorf("kubernetes config: %w", err)
	}
	scheme, err := controller.NewScheme()
	if err != nil {
		return err
	}
	opts := ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: c.MetricsAddr},
		HealthProbeBindAddress:  c.HealthAddr,
		LeaderElection:          c.LeaderElect,
		LeaderElectionID:        "jetstate-operator.jetstate.io",
		LeaderElectionNamespace: c.LeaderNamespace,
		// A new leader starts at once when the old one stops cleanly.
		LeaderElectionReleaseOnCancel: true,
	}
	if len(c.Namespaces) > 0 {
		opts.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{}}
		for _, ns := range c.Namespaces {
			opts.Cache.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	mgr, err := ctrl.NewManager(restConfig, opts)
	if err != nil {
		return err
	}
	if err := errors.Join(mgr.AddHealthzCheck("ping", healthz.Ping), mgr.AddReadyzCheck("ping", healthz.Ping)); err != nil {
		return err
	}
	if err := controller.Setup(ctx, mgr, c.Controller); err != nil {
		return err
	}
	if c.Autoscaler {
		err := mgr.Add(&controller.Autoscaling{
			Client: mgr.GetClient(), Secrets: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder(controller.FieldManager),
			Config: c.Controller, Tick: c.AutoscalerTick, Logger: log.With("component", "autoscaler"), Registry: crmetrics.Registry,
		})
		if err != nil {
			return err
		}
	}
	ns := "all namespaces"
	if len(c.Namespaces) > 0 {
		ns = strings.Join(c.Namespaces, ", ")
	}
	fmt.Fprintf(out, "jetstate-operator: watching %s, sidecar image %s, leader election %v, autoscaler %v\n",
		ns, c.Controller.SidecarImage, c.LeaderElect, c.Autoscaler)
	return mgr.Start(ctx)
}
