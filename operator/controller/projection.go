package controller

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
)

// sourceIndex indexes Projections by their source service.
const sourceIndex = "spec.source.service"

const (
	projectorName      = "projector"
	projectorAdminPort = 9091
)

// ProjectionReconciler runs each Projection as a one-replica Deployment of
// `jetstate project`, configured for its resolved sink.
type ProjectionReconciler struct {
	Client client.Client
	// Reader reads the addressable objects a sink may refer to
	// (uncached: they can be of any kind).
	Reader   client.Reader
	Recorder EventRecorder
	Config   Config
}

// +kubebuilder:rbac:groups=jetstate.io,resources=projections,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=jetstate.io,resources=projections/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=jetstate.io,resources=projections/finalizers,verbs=update
// +kubebuilder:rbac:groups=serving.knative.dev;eventing.knative.dev;messaging.knative.dev,resources=*,verbs=get

// Reconcile resolves the sink and applies the projector Deployment.
func (r *ProjectionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cfg := r.Config.withDefaults()
	var p v1alpha1.Projection
	if err := r.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // the Deployment goes with its owner
	}
	orig := p.DeepCopy()
	p.Status.ObservedGeneration = p.Generation
	dep, sink, err := r.apply(ctx, &p, cfg)
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: p.Generation}
	var result ctrl.Result
	switch {
	case err != nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reasonOf(err, v1alpha1.ReasonReconcileFailed), err.Error()
		switch cond.Reason {
		case v1alpha1.ReasonSinkNotResolved, v1alpha1.ReasonStoreNotReady, v1alpha1.ReasonNameConflict:
			// Nothing watches an arbitrary addressable kind: look again.
			result.RequeueAfter, err = cfg.NotReadyRetry, nil
		case v1alpha1.ReasonServiceNotFound, v1alpha1.ReasonStoreNotFound, v1alpha1.ReasonInvalidSpec:
			err = nil // the service watch brings us back
		}
	default:
		p.Status.SinkURI = sink
		if done, msg := rolledOut(dep, 1); done {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, v1alpha1.ReasonReady, "projecting to "+sink
			if p.Spec.Sink.Ref != nil {
				result.RequeueAfter = cfg.Resync // follow the address
			}
		} else {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonRolloutInProgress, msg
		}
	}
	changed := setCondition(&p.Status.Conditions, cond)
	if perr := r.Client.Status().Patch(ctx, &p, client.MergeFrom(orig)); perr != nil {
		return ctrl.Result{}, errors.Join(err, fmt.Errorf("status: %w", perr))
	}
	if changed {
		recordCondition(r.Recorder, &p, cond, "Reconcile")
	}
	return result, err
}

func (r *ProjectionReconciler) apply(ctx context.Context, p *v1alpha1.Projection, cfg Config) (*appsv1.Deployment, string, error) {
	var svc v1alpha1.StatefulService
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.Source.Service}, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, "", reasonf(v1alpha1.ReasonServiceNotFound, "StatefulService %q not found", p.Spec.Source.Service)
		}
		return nil, "", err
	}
	var store v1alpha1.StatefulStore
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: svc.Spec.Store.Name}, &store); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, "", reasonf(v1alpha1.ReasonStoreNotFound, "StatefulStore %q of service %s not found", svc.Spec.Store.Name, svc.Name)
		}
		return nil, "", err
	}
	if ok, why := storeReady(&store); !ok {
		return nil, "", reasonf(v1alpha1.ReasonStoreNotReady, "StatefulStore %q is not ready: %s", store.Name, why)
	}
	sink, err := r.resolveSink(ctx, p)
	if err != nil {
		return nil, "", err
	}
	want := desiredProjector(p, &svc, &store, sink, cfg)
	if err := applyOwned(ctx, r.Client, p, want); err != nil {
		return nil, "", err
	}
	var dep appsv1.Deployment
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), &dep); err != nil {
		if apierrors.IsNotFound(err) {
			return want, sink, nil
		}
		return nil, "", err
	}
	return &dep, sink, nil
}

// resolveSink is the -sink of the projector: nats:<subject>,
// jetstream:<subject>, the URI, or the referenced object's
// status.address.url.
func (r *ProjectionReconciler) resolveSink(ctx context.Context, p *v1alpha1.Projection) (string, error) {
	s := p.Spec.Sink
	switch {
	case s.NATS != nil && s.NATS.JetStream:
		return "jetstream:" + s.NATS.Subject, nil
	case s.NATS != nil:
		return "nats:" + s.NATS.Subject, nil
	case s.URI != "":
		return s.URI, nil
	case s.Ref != nil:
		return resolveAddress(ctx, r.Reader, p.Namespace, *s.Ref)
	}
	return "", reasonf(v1alpha1.ReasonInvalidSpec, "no sink")
}

// resolveAddress reads status.address.url of an addressable object, as
// Knative resolves a Destination's ref.
func resolveAddress(ctx context.Context, c client.Reader, ns string, ref v1alpha1.SinkReference) (string, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return "", reasonf(v1alpha1.ReasonInvalidSpec, "sink ref apiVersion %q: %v", ref.APIVersion, err)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gv.WithKind(ref.Kind))
	what := fmt.Sprintf("%s %s/%s", ref.Kind, ns, ref.Name)
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, u); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return "", reasonf(v1alpha1.ReasonSinkNotResolved, "sink %s: %v", what, err)
		}
		return "", withReason(v1alpha1.ReasonSinkNotResolved, fmt.Errorf("sink %s: %w", what, err))
	}
	url, found, err := unstructured.NestedString(u.Object, "status", "address", "url")
	if err != nil || !found || url == "" {
		return "", reasonf(v1alpha1.ReasonSinkNotResolved, "sink %s has no status.address.url yet", what)
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return "", reasonf(v1alpha1.ReasonSinkNotResolved, "sink %s has address %q, not an http(s) URL", what, url)
	}
	return url, nil
}

func projectorDeploymentName(p *v1alpha1.Projection) string { return p.Name + "-projector" }

// desiredProjector is the Deployment running `jetstate project` for p.
func desiredProjector(p *v1alpha1.Projection, svc *v1alpha1.StatefulService, store *v1alpha1.StatefulStore, sink string, cfg Config) *appsv1.Deployment {
	m := storeMounts(store)
	d := p.Spec.Delivery
	env := []corev1.EnvVar{
		{Name: "JETSTATE_SERVICE", Value: serviceNameOf(svc)},
		{Name: "JETSTATE_PROJECTION", Value: p.Name},
		{Name: "K_SINK", Value: sink},
		{Name: "METRICS_PORT", Value: strconv.Itoa(projectorAdminPort)},
	}
	if len(p.Spec.Source.EntityTypes) > 0 {
		env = append(env, corev1.EnvVar{Name: "JETSTATE_PROJECTION_TYPES", Value: strings.Join(p.Spec.Source.EntityTypes, ",")})
	}
	if d.Mode != "" {
		env = append(env, corev1.EnvVar{Name: "JETSTATE_SINK_MODE", Value: d.Mode})
	}
	if d.Start != "" {
		env = append(env, corev1.EnvVar{Name: "JETSTATE_PROJECTION_START", Value: d.Start})
	}
	if d.DeadLetterSubject != "" {
		env = append(env, corev1.EnvVar{Name: "JETSTATE_DEAD_LETTER", Value: d.DeadLetterSubject})
	}
	env = append(env, m.env...)
	args := []string{"project"}
	if d.Workers > 0 {
		args = append(args, "-workers", strconv.Itoa(int(d.Workers)))
	}
	if d.MaxTries > 0 {
		args = append(args, "-max-tries", strconv.Itoa(int(d.MaxTries)))
	}
	if d.AckEach {
		args = append(args, "-ack-each")
	}
	if d.SendTimeout != nil && d.SendTimeout.Duration > 0 {
		args = append(args, "-send-timeout", d.SendTimeout.Duration.String())
	}
	image := p.Spec.Image
	if image == "" {
		image = cfg.SidecarImage
	}
	resources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	if p.Spec.Resources != nil {
		resources = *p.Spec.Resources
	}
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString(adminPortName)}},
			PeriodSeconds: period, TimeoutSeconds: 1, FailureThreshold: failures,
		}
	}
	labels := map[string]string{
		"app.kubernetes.io/name":       p.Name,
		"app.kubernetes.io/component":  "projection",
		"app.kubernetes.io/managed-by": FieldManager,
		LabelProjection:                p.Name,
	}
	pod := corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: projectorName, Image: image, ImagePullPolicy: cfg.SidecarPullPolicy, Args: args, Env: env,
			Ports:          []corev1.ContainerPort{{Name: adminPortName, ContainerPort: projectorAdminPort, Protocol: corev1.ProtocolTCP}},
			ReadinessProbe: probe("/ready", 5, 3),
			LivenessProbe:  probe("/alive", 10, 5),
			Resources:      resources,
			VolumeMounts:   m.mounts,
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				ReadOnlyRootFilesystem:   ptr.To(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}},
		Volumes:                       m.volumes,
		TerminationGracePeriodSeconds: ptr.To[int64](30),
	}
	dep := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: projectorDeploymentName(p), Namespace: p.Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelProjection: p.Name}},
			// One projector at a time: the old one stops before the new one
			// starts, so a changed sink never receives from two.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod},
		},
	}
	dep.Spec.Template.Annotations = map[string]string{AnnotationConfigHash: configHash(pod, nil)}
	return dep
}

// SetupWithManager registers the reconciler: Projections, their
// Deployments, and the StatefulServices they read.
func (r *ProjectionReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Projection{}, sourceIndex, func(o client.Object) []string {
		return []string{o.(*v1alpha1.Projection).Spec.Source.Service}
	}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Projection{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Watches(&v1alpha1.StatefulService{}, handler.EnqueueRequestsFromMapFunc(r.projectionsOfService)).
		Named("projection").
		Complete(r)
}

func (r *ProjectionReconciler) projectionsOfService(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.ProjectionList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{sourceIndex: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "list projections of service", "service", o.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, p := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
	}
	return reqs
}
