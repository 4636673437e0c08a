package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
	"github.com/jetstate/jetstate/operator/autoscaler"
	"github.com/jetstate/jetstate/streams"
)

// Finalizer guards a StatefulService's streams: it is removed once the
// deletion policy has been carried out.
const Finalizer = "jetstate.io/streams"

// storeIndex indexes StatefulServices by the store they name.
const storeIndex = "spec.store.name"

// StatefulServiceReconciler turns a StatefulService into provisioned
// streams, a Deployment and a Service.
type StatefulServiceReconciler struct {
	Client   client.Client
	Secrets  client.Reader
	Recorder EventRecorder
	Config   Config

	mu          sync.Mutex
	provisioned map[types.NamespacedName]provisioned
}

// provisioned remembers a successful provisioning.
type provisioned struct {
	key string
	at  time.Time
}

// +kubebuilder:rbac:groups=jetstate.io,resources=statefulservices,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=jetstate.io,resources=statefulservices/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=jetstate.io,resources=statefulservices/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=core,resources=services,verbs=get;list;watch;create;update;patch;delete

// Reconcile brings one StatefulService's streams, Deployment, Service and
// status in line with its spec.
func (r *StatefulServiceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cfg := r.Config.withDefaults()
	var svc v1alpha1.StatefulService
	if err := r.Client.Get(ctx, req.NamespacedName, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !svc.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &svc, cfg)
	}
	if !controllerutil.ContainsFinalizer(&svc, Finalizer) {
		orig := svc.DeepCopy()
		controllerutil.AddFinalizer(&svc, Finalizer)
		if err := r.Client.Patch(ctx, &svc, finalizerPatch(orig)); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
	}

	orig := svc.DeepCopy()
	svc.Status.ObservedGeneration = svc.Generation
	svc.Status.Selector = selectorString(&svc)
	svc.Status.ServiceName = serviceNameOf(&svc)
	dep, err := r.apply(ctx, &svc, cfg)
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: svc.Generation}
	var result ctrl.Result
	switch {
	case err != nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reasonOf(err, v1alpha1.ReasonReconcileFailed), err.Error()
		switch reasonOf(err, "") {
		case v1alpha1.ReasonStoreNotFound, v1alpha1.ReasonStoreNotReady, v1alpha1.ReasonInvalidSpec:
			if errors.Is(err, errSecretMissing) {
				// Secrets are not watched, and a Ready store whose
				// secret comes back (a rotation) does not change.
				result.RequeueAfter = cfg.NotReadyRetry
			}
			err = nil // the store watch (or a spec change) brings us back
		case v1alpha1.ReasonNameConflict:
			// Nothing watches the other object: look again.
			result.RequeueAfter, err = cfg.NotReadyRetry, nil
		}
	default:
		svc.Status.Replicas = dep.Status.AvailableReplicas
		if done, msg := rolledOut(dep, ptr.Deref(svc.Spec.Replicas, 1)); done {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, v1alpha1.ReasonReady, msg
			result.RequeueAfter = cfg.Resync
		} else {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonRolloutInProgress, msg
		}
	}
	changed := setCondition(&svc.Status.Conditions, cond)
	if perr := r.Client.Status().Patch(ctx, &svc, client.MergeFrom(orig)); perr != nil {
		return ctrl.Result{}, errors.Join(err, fmt.Errorf("status: %w", perr))
	}
	if changed {
		recordCondition(r.Recorder, &svc, cond, "Reconcile")
	}
	return result, err
}

// apply provisions the streams (when needed) and applies the Deployment
// and the Service; it returns the Deployment as last seen.
func (r *StatefulServiceReconciler) apply(ctx context.Context, svc *v1alpha1.StatefulService, cfg Config) (*appsv1.Deployment, error) {
	scfg := streams.Config{Service: serviceNameOf(svc)}
	if err := scfg.Validate(); err != nil {
		return nil, withReason(v1alpha1.ReasonInvalidSpec, err)
	}
	var store v1alpha1.StatefulStore
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: svc.Namespace, Name: svc.Spec.Store.Name}, &store); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, reasonf(v1alpha1.ReasonStoreNotFound, "StatefulStore %q not found", svc.Spec.Store.Name)
		}
		return nil, err
	}
	if ok, why := storeReady(&store); !ok {
		return nil, reasonf(v1alpha1.ReasonStoreNotReady, "StatefulStore %q is not ready: %s", store.Name, why)
	}
	scfg.Prefix = prefixOf(&store)
	if err := r.provision(ctx, svc, &store, scfg, cfg); err != nil {
		return nil, err
	}
	versions, err := r.secretVersions(ctx, &store)
	if err != nil {
		return nil, err
	}
	want := desiredDeployment(svc, &store, cfg, versions)
	if err := applyOwned(ctx, r.Client, svc, want); err != nil {
		return nil, err
	}
	if err := applyOwned(ctx, r.Client, svc, desiredService(svc, cfg)); err != nil {
		return nil, err
	}
	var dep appsv1.Deployment
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), &dep); err != nil {
		if apierrors.IsNotFound(err) { // not in the cache yet
			return want, nil
		}
		return nil, err
	}
	return &dep, nil
}

// provision creates or updates the service's streams and buckets unless
// the same settings were provisioned less than ProvisionRefresh ago.
func (r *StatefulServiceReconciler) provision(ctx context.Context, svc *v1alpha1.StatefulService, store *v1alpha1.StatefulStore, scfg streams.Config, cfg Config) error {
	st := settingsOf(svc, cfg)
	sc := streams.StoreConfig{
		Replicas:   int(store.Spec.StreamReplicas),
		Storage:    streams.Storage(store.Spec.Storage),
		Durability: streams.Durability(store.Spec.Durability),
		MaxMsgSize: store.Spec.MaxMessageSize,
		Shards:     st.shards,
		MemberTTL:  st.memberTTL.Duration,
	}
	// The store's generation, not its resourceVersion: every check of the
	// store writes its status, which must not count as a change.
	key := fmt.Sprintf("%s|%d|%v|%s|%+v", store.UID, store.Generation, store.Spec.URLs, scfg.Prefix+"_"+scfg.Service, sc)
	name := client.ObjectKeyFromObject(svc)
	r.mu.Lock()
	last, ok := r.provisioned[name]
	r.mu.Unlock()
	if ok && last.key == key && time.Since(last.at) < cfg.ProvisionRefresh {
		return nil
	}
	nc, err := connect(ctx, r.Secrets, store, cfg.ConnectTimeout)
	if err != nil {
		return withReason(v1alpha1.ReasonProvisionFailed, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return withReason(v1alpha1.ReasonProvisionFailed, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := streams.Provision(pctx, js, scfg, sc); err != nil {
		return withReason(v1alpha1.ReasonProvisionFailed, err)
	}
	r.mu.Lock()
	if r.provisioned == nil {
		r.provisioned = make(map[types.NamespacedName]provisioned)
	}
	r.provisioned[name] = provisioned{key: key, at: time.Now()}
	r.mu.Unlock()
	if !ok || last.key != key {
		r.Recorder.Eventf(svc, store, corev1.EventTypeNormal, "Provisioned", "Provision",
			"streams and buckets of service %s provisioned on %s (%d replicas, %s storage)", scfg.Service, store.Name, max(sc.Replicas, 1), store.Spec.Storage)
	}
	return nil
}

func (r *StatefulServiceReconciler) forget(name types.NamespacedName) {
	r.mu.Lock()
	delete(r.provisioned, name)
	r.mu.Unlock()
}

// secretVersions are the resource versions of the store's secrets.
func (r *StatefulServiceReconciler) secretVersions(ctx context.Context, store *v1alpha1.StatefulStore) ([]string, error) {
	var versions []string
	for _, name := range storeSecrets(store) {
		var s corev1.Secret
		if err := r.Secrets.Get(ctx, types.NamespacedName{Namespace: store.Namespace, Name: name}, &s); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, reasonf(v1alpha1.ReasonStoreNotReady, "secret %s of StatefulStore %s: %w", name, store.Name, errSecretMissing)
			}
			return nil, err
		}
		versions = append(versions, name+"@"+s.ResourceVersion)
	}
	return versions, nil
}

// rolledOut reports whether the Deployment runs the current template on
// every desired replica, with a message either way.
func rolledOut(dep *appsv1.Deployment, desired int32) (bool, string) {
	s := dep.Status
	switch {
	case s.ObservedGeneration < dep.Generation || dep.Generation == 0:
		return false, "the Deployment has not seen the latest template yet"
	case s.UpdatedReplicas < desired:
		return false, fmt.Sprintf("%d of %d replicas updated", s.UpdatedReplicas, desired)
	case s.Replicas > s.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas still running", s.Replicas-s.UpdatedReplicas)
	case s.AvailableReplicas < desired:
		return false, fmt.Sprintf("%d of %d replicas available", s.AvailableReplicas, desired)
	}
	return true, fmt.Sprintf("%d replicas available", s.AvailableReplicas)
}

// finalize carries out the deletion policy, then lets the object go.
func (r *StatefulServiceReconciler) finalize(ctx context.Context, svc *v1alpha1.StatefulService, cfg Config) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(svc, Finalizer) {
		return ctrl.Result{}, nil
	}
	name := serviceNameOf(svc)
	if svc.Spec.DeletionPolicy == v1alpha1.DeletionDelete {
		if err := r.deprovision(ctx, svc, cfg); err != nil {
			orig := svc.DeepCopy()
			cond := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonDeleting,
				Message: "deleting the streams: " + err.Error(), ObservedGeneration: svc.Generation}
			setCondition(&svc.Status.Conditions, cond)
			r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, "DeprovisionFailed", "Delete", "streams of service %s: %v", name, err)
			if perr := r.Client.Status().Patch(ctx, svc, client.MergeFrom(orig)); perr != nil && !apierrors.IsNotFound(perr) {
				err = errors.Join(err, perr)
			}
			return ctrl.Result{}, err
		}
	} else {
		r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "StreamsRetained", "Delete",
			"deletion policy Retain: the streams and buckets of service %s are kept", name)
	}
	orig := svc.DeepCopy()
	controllerutil.RemoveFinalizer(svc, Finalizer)
	if err := r.Client.Patch(ctx, svc, finalizerPatch(orig)); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("remove finalizer: %w", err)
	}
	r.forget(client.ObjectKeyFromObject(svc))
	return ctrl.Result{}, nil
}

// finalizerPatch is the patch of a change of orig's finalizers. A merge
// patch replaces the whole list, so it carries orig's resourceVersion: from
// an outdated copy it fails with a conflict (and the reconcile is retried)
// instead of dropping a finalizer someone else added, or putting back one
// they removed.
func finalizerPatch(orig client.Object) client.Patch {
	return client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})
}

// deprovision deletes the service's streams. A store that no longer exists
// cannot be reached: the streams are left (with a warning), so that
// deleting a namespace never hangs on a finalizer.
func (r *StatefulServiceReconciler) deprovision(ctx context.Context, svc *v1alpha1.StatefulService, cfg Config) error {
	name := serviceNameOf(svc)
	var store v1alpha1.StatefulStore
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: svc.Namespace, Name: svc.Spec.Store.Name}, &store); err != nil {
		if apierrors.IsNotFound(err) {
			r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, "StreamsLeft", "Delete",
				"StatefulStore %s is gone: the streams of service %s could not be deleted", svc.Spec.Store.Name, name)
			return nil
		}
		return err
	}
	nc, err := connect(ctx, r.Secrets, &store, cfg.ConnectTimeout)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := streams.Deprovision(dctx, js, streams.Config{Prefix: prefixOf(&store), Service: name}); err != nil {
		return err
	}
	// The autoscaler's state of the service, if the store has the bucket.
	sc := autoscaler.StoreConfig{Prefix: prefixOf(&store), Replicas: int(max(store.Spec.StreamReplicas, 1))}
	if _, err := js.KeyValue(dctx, sc.Bucket()); err == nil {
		state, err := autoscaler.NewStore(dctx, js, sc)
		if err == nil {
			err = state.Delete(dctx, name)
		}
		if err != nil {
			return err
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return err
	}
	r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "StreamsDeleted", "Delete",
		"deletion policy Delete: the streams and buckets of service %s are deleted", name)
	log.FromContext(ctx).Info("deleted streams", "service", name, "store", store.Name)
	return nil
}

// SetupWithManager registers the reconciler: it watches StatefulServices,
// the Deployments and Services they own (so hand-made changes are put
// back) and the StatefulStores they name (a store that appears or becomes
// Ready).
func (r *StatefulServiceReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.StatefulService{}, storeIndex, func(o client.Object) []string {
		return []string{o.(*v1alpha1.StatefulService).Spec.Store.Name}
	}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.StatefulService{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, deletingPredicate()))).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Watches(&v1alpha1.StatefulStore{}, handler.EnqueueRequestsFromMapFunc(r.servicesOfStore),
			builder.WithPredicates(storeChangedPredicate())).
		Named("statefulservice").
		Complete(r)
}

func (r *StatefulServiceReconciler) servicesOfStore(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.StatefulServiceList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{storeIndex: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "list services of store", "store", o.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, s := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
	}
	return reqs
}

// storeChangedPredicate passes store events that matter to services: a new
// or deleted store, a new spec, a change of its Ready status.
func storeChangedPredicate() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*v1alpha1.StatefulStore)
			n, ok2 := e.ObjectNew.(*v1alpha1.StatefulStore)
			if !ok1 || !ok2 {
				return true
			}
			oldOK, _ := storeReady(o)
			newOK, _ := storeReady(n)
			return o.Generation != n.Generation || oldOK != newOK
		},
	}
}

// deletingPredicate passes the update that marks an object for deletion
// (its generation does not change).
func deletingPredicate() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !e.ObjectNew.GetDeletionTimestamp().IsZero()
		},
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}
