package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
	"github.com/jetstate/jetstate/streams"
)

// DefaultCheckInterval is how often a store is checked when its spec does
// not say.
const DefaultCheckInterval = time.Minute

// StatefulStoreReconciler checks that a StatefulStore's NATS is reachable
// with JetStream new enough, and reports it in the store's status.
type StatefulStoreReconciler struct {
	Client client.Client
	// Secrets reads the credentials and TLS secrets (uncached: the operator
	// needs only get on secrets, not list and watch).
	Secrets  client.Reader
	Recorder EventRecorder
	Config   Config
}

// +kubebuilder:rbac:groups=jetstate.io,resources=statefulstores,verbs=get;list;watch
// +kubebuilder:rbac:groups=jetstate.io,resources=statefulstores/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=core,resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile checks one store and requeues after its check interval.
func (r *StatefulStoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cfg := r.Config.withDefaults()
	var store v1alpha1.StatefulStore
	if err := r.Client.Get(ctx, req.NamespacedName, &store); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	orig := store.DeepCopy()
	version, level, err := checkStore(ctx, r.Secrets, &store, cfg.ConnectTimeout)
	now := metav1.Now()
	store.Status.ObservedGeneration = store.Generation
	store.Status.LastChecked = &now
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: store.Generation}
	if err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reasonOf(err, v1alpha1.ReasonConnectFailed), err.Error()
	} else {
		store.Status.ServerVersion, store.Status.APILevel = version, level
		cond.Status, cond.Reason = metav1.ConditionTrue, v1alpha1.ReasonReady
		cond.Message = fmt.Sprintf("nats-server %s, JetStream API level %d", version, level)
	}
	changed := setCondition(&store.Status.Conditions, cond)
	if err := r.Client.Status().Patch(ctx, &store, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, fmt.Errorf("status of %s: %w", req, err)
	}
	if changed {
		recordCondition(r.Recorder, &store, cond, "Check")
	}
	if err != nil {
		log.FromContext(ctx).Info("store not ready", "reason", cond.Reason, "error", err.Error())
		return ctrl.Result{RequeueAfter: min(cfg.NotReadyRetry, checkInterval(&store))}, nil
	}
	return ctrl.Result{RequeueAfter: checkInterval(&store)}, nil
}

func checkInterval(store *v1alpha1.StatefulStore) time.Duration {
	if d := store.Spec.CheckInterval; d != nil && d.Duration > 0 {
		return d.Duration
	}
	return DefaultCheckInterval
}

// checkStore connects and checks JetStream; it returns the server version
// and JetStream API level.
func checkStore(ctx context.Context, secrets client.Reader, store *v1alpha1.StatefulStore, timeout time.Duration) (string, int, error) {
	nc, err := connect(ctx, secrets, store, timeout)
	if err != nil {
		return "", 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", 0, withReason(v1alpha1.ReasonConnectFailed, err)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	level, err := streams.CheckServer(cctx, js)
	if errors.Is(err, streams.ErrNoJetStream) || errors.Is(err, streams.ErrUnsupportedServer) {
		return nc.ConnectedServerVersion(), level, withReason(v1alpha1.ReasonJetStreamUnavailable, err)
	}
	if err != nil {
		return "", 0, withReason(v1alpha1.ReasonConnectFailed, err)
	}
	return nc.ConnectedServerVersion(), level, nil
}

// SetupWithManager registers the reconciler. Status writes do not trigger
// it (the generation predicate): the periodic requeue does the checking.
func (r *StatefulStoreReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.StatefulStore{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("statefulstore").
		Complete(r)
}

// storeReady is the store's Ready condition if it is True and about its
// current spec.
func storeReady(store *v1alpha1.StatefulStore) (bool, string) {
	c := meta.FindStatusCondition(store.Status.Conditions, v1alpha1.ConditionReady)
	switch {
	case c == nil:
		return false, "not checked yet"
	case c.Status != metav1.ConditionTrue:
		return false, c.Reason + ": " + c.Message
	case c.ObservedGeneration != store.Generation:
		return false, "spec changed, not checked yet"
	}
	return true, ""
}
