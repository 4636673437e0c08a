package controller

import (
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
)

// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// Leader election records its events ("became leader") with the core/v1
// API, unlike the reconcilers (events.k8s.io).
// +kubebuilder:rbac:groups=core,resources=events,verbs=create;patch

// Setup validates cfg and registers the three reconcilers with mgr, whose
// scheme must know v1alpha1, apps/v1 and core/v1 (NewScheme).
func Setup(ctx context.Context, mgr ctrl.Manager, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	rec := mgr.GetEventRecorder(FieldManager)
	if err := (&StatefulStoreReconciler{Client: mgr.GetClient(), Secrets: mgr.GetAPIReader(), Recorder: rec, Config: cfg}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&StatefulServiceReconciler{Client: mgr.GetClient(), Secrets: mgr.GetAPIReader(), Recorder: rec, Config: cfg}).SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	return (&ProjectionReconciler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Recorder: rec, Config: cfg}).SetupWithManager(ctx, mgr)
}

// NewScheme is a scheme with the built-in kinds and jetstate.io/v1alpha1.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := errors.Join(clientgoscheme.AddToScheme(s), v1alpha1.AddToScheme(s)); err != nil {
		return nil, err
	}
	return s, nil
}
