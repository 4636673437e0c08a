package controller_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
	"github.com/jetstate/jetstate/operator/autoscaler"
	"github.com/jetstate/jetstate/operator/controller"
	"github.com/jetstate/jetstate/streams"
	"github.com/jetstate/jetstate/streams/streamstest"
)

func newService(ns, name, store string) *v1alpha1.StatefulService {
	return &v1alpha1.StatefulService{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.StatefulServiceSpec{
			Containers: []corev1.Container{{Image: "shoppingcart:1"}},
			Store:      v1alpha1.StoreReference{Name: store},
		},
	}
}

// deployment waits for the Deployment named like svc and returns it once
// check accepts it.
func deployment(t *testing.T, ns, name string, check func(*appsv1.Deployment) error) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	eventually(t, 20*time.Second, func() error {
		if err := env.client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, &d); err != nil {
			return err
		}
		if check != nil {
			return check(&d)
		}
		return nil
	})
	return &d
}

func container(d *appsv1.Deployment, name string) *corev1.Container {
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == name {
			return c
		}
	}
	return nil
}

func envOf(c *corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

// markRolledOut plays the Deployment controller (envtest runs none): the
// current template runs on every replica.
func markRolledOut(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	n := ptr.Deref(d.Spec.Replicas, 1)
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
	if err := env.client.Status().Update(t.Context(), d); err != nil {
		t.Fatalf("deployment status: %v", err)
	}
}

func streamNames(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	var names []string
	l := js.StreamNames(t.Context())
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func TestStatefulServiceDeployment(t *testing.T) {
	ns := namespace(t)
	store, srv := readyStore(t, ns, "nats")
	c := k8s(t)
	svc := newService(ns, "cart", store.Name)
	svc.Spec.Entities.Shards = 12
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}

	d := deployment(t, ns, "cart", nil)
	if got := d.Spec.Selector.MatchLabels; !cmp.Equal(got, map[string]string{controller.LabelService: "cart"}) {
		t.Errorf("selector %v", got)
	}
	if ref := metav1.GetControllerOf(d); ref == nil || ref.Kind != "StatefulService" || ref.Name != "cart" {
		t.Errorf("controller of the Deployment: %+v", ref)
	}
	if n := ptr.Deref(d.Spec.Replicas, -1); n != 1 {
		t.Errorf("replicas %d, want the default 1", n)
	}
	pod := d.Spec.Template.Spec
	if ptr.Deref(pod.TerminationGracePeriodSeconds, 0) != 45 {
		t.Errorf("terminationGracePeriodSeconds %v, want 45", pod.TerminationGracePeriodSeconds)
	}
	if names := []string{pod.Containers[0].Name, pod.Containers[len(pod.Containers)-1].Name}; !cmp.Equal(names, []string{"user-function", "jetstate"}) || len(pod.Containers) != 2 {
		t.Fatalf("containers %v", pod.Containers)
	}
	uf, sc := container(d, "user-function"), container(d, "jetstate")
	if uf.Image != "shoppingcart:1" || envOf(uf)["PORT"] != "8080" {
		t.Errorf("user function %s, env %v", uf.Image, uf.Env)
	}
	if uf.Lifecycle == nil || uf.Lifecycle.PreStop == nil || uf.Lifecycle.PreStop.Sleep == nil || uf.Lifecycle.PreStop.Sleep.Seconds != 25 {
		t.Errorf("user function preStop %+v: must outlive the sidecar's drain and handoff", uf.Lifecycle)
	}
	if sc.Image != "jetstate:test" || !cmp.Equal(sc.Args, []string{"proxy", "-command-timeout", "1m0s", "-route-timeout", "30s"}) {
		t.Errorf("sidecar %s %v", sc.Image, sc.Args)
	}
	wantEnv := map[string]string{
		"JETSTATE_SERVICE": "cart", "HTTP_PORT": "9000", "USER_FUNCTION_HOST": "127.0.0.1", "USER_FUNCTION_PORT": "8080",
		"METRICS_PORT": "9090", "PASSIVATION_TIMEOUT": "30s", "NATS_URL": srv.ClientURL(), "JETSTATE_PREFIX": "jetstate",
		"GOMAXPROCS": "", // from the CPU request, below
	}
	if diff := cmp.Diff(wantEnv, envOf(sc)); diff != "" {
		t.Errorf("sidecar env (-want +got):\n%s", diff)
	}
	for _, e := range sc.Env {
		if e.Name != "GOMAXPROCS" {
			continue
		}
		if f := e.ValueFrom; f == nil || f.ResourceFieldRef == nil || f.ResourceFieldRef.Resource != "requests.cpu" ||
			f.ResourceFieldRef.ContainerName != "jetstate" || !f.ResourceFieldRef.Divisor.Equal(resource.MustParse("1")) {
			t.Errorf("GOMAXPROCS from %+v, want the sidecar's CPU request in whole CPUs", e.ValueFrom)
		}
	}
	wantPorts := []corev1.ContainerPort{{Name: "ingress", ContainerPort: 9000, Protocol: "TCP"}, {Name: "admin", ContainerPort: 9090, Protocol: "TCP"}}
	if diff := cmp.Diff(wantPorts, sc.Ports); diff != "" {
		t.Errorf("sidecar ports (-want +got):\n%s", diff)
	}
	for _, p := range []struct {
		probe *corev1.Probe
		path  string
	}{{sc.ReadinessProbe, "/ready"}, {sc.LivenessProbe, "/alive"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "admin" {
			t.Errorf("probe %s: %+v", p.path, p.probe)
		}
	}
	if sc.Lifecycle == nil || sc.Lifecycle.PreStop == nil || sc.Lifecycle.PreStop.Sleep == nil {
		t.Errorf("sidecar preStop %+v", sc.Lifecycle)
	}
	if d.Spec.Template.Annotations[controller.AnnotationConfigHash] == "" {
		t.Error("no config hash on the pod template")
	}

	var s corev1.Service
	eventually(t, 10*time.Second, func() error { return c.Get(t.Context(), client.ObjectKeyFromObject(svc), &s) })
	if len(s.Spec.Ports) != 2 || s.Spec.Ports[0].Port != 9000 || s.Spec.Ports[0].TargetPort.IntValue() != 9000 ||
		!cmp.Equal(s.Spec.Selector, map[string]string{controller.LabelService: "cart"}) || metav1.GetControllerOf(&s) == nil {
		t.Errorf("service %+v", s.Spec)
	}

	// Provisioned on the real server, with the spec's shard count.
	js := srv.JetStream(t)
	want := []string{"KV_jetstate_cart_discovery", "KV_jetstate_cart_members", "KV_jetstate_cart_shards", "KV_jetstate_cart_snapshots", "KV_jetstate_cart_values", "jetstate_cart_crdt", "jetstate_cart_journal", "jetstate_eventing"}
	if got := streamNames(t, js); !cmp.Equal(got, want) {
		t.Errorf("streams %v, want %v", got, want)
	}
	info, err := js.Stream(t.Context(), "KV_jetstate_cart_shards")
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.Metadata["jetstate.shards"]; got != "12" {
		t.Errorf("shards metadata %q, want 12", got)
	}
	if info.CachedInfo().Config.Storage != jetstream.MemoryStorage {
		t.Errorf("storage %v, want the store's memory", info.CachedInfo().Config.Storage)
	}

	// No pods yet (envtest runs no Deployment controller): a rollout in
	// progress. Once the Deployment reports its replica: Ready.
	conds := func() []metav1.Condition { return svc.Status.Conditions }
	waitReady(t, svc, conds, metav1.ConditionFalse, v1alpha1.ReasonRolloutInProgress)
	markRolledOut(t, d)
	waitReady(t, svc, conds, metav1.ConditionTrue, v1alpha1.ReasonReady)
	if svc.Status.Replicas != 1 || svc.Status.Selector != controller.LabelService+"=cart" || svc.Status.ObservedGeneration != svc.Generation {
		t.Errorf("status %+v", svc.Status)
	}
	if !slices.Contains(svc.Finalizers, controller.Finalizer) {
		t.Errorf("finalizers %v", svc.Finalizers)
	}
}

func TestStatefulServiceRollout(t *testing.T) {
	ns := namespace(t)
	store, _ := readyStore(t, ns, "nats")
	c := k8s(t)
	svc := newService(ns, "cart", store.Name)
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	d := deployment(t, ns, "cart", nil)
	markRolledOut(t, d)
	waitReady(t, svc, func() []metav1.Condition { return svc.Status.Conditions }, metav1.ConditionTrue, v1alpha1.ReasonReady)
	hash, gen := d.Spec.Template.Annotations[controller.AnnotationConfigHash], d.Generation

	svc.Spec.Containers[0].Image = "shoppingcart:2"
	svc.Spec.Entities.PassivationTimeout = &metav1.Duration{Duration: 2 * time.Minute}
	svc.Spec.Replicas = ptr.To[int32](3)
	if err := c.Update(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	d = deployment(t, ns, "cart", func(d *appsv1.Deployment) error {
		if img := container(d, "user-function").Image; img != "shoppingcart:2" {
			return fmt.Errorf("image %s", img)
		}
		return nil
	})
	if got := envOf(container(d, "jetstate"))["PASSIVATION_TIMEOUT"]; got != "2m0s" {
		t.Errorf("PASSIVATION_TIMEOUT %q", got)
	}
	if ptr.Deref(d.Spec.Replicas, 0) != 3 {
		t.Errorf("replicas %v", d.Spec.Replicas)
	}
	if d.Spec.Template.Annotations[controller.AnnotationConfigHash] == hash || d.Generation == gen {
		t.Errorf("template not rolled: hash %s -> %s, generation %d -> %d", hash, d.Spec.Template.Annotations[controller.AnnotationConfigHash], gen, d.Generation)
	}
	waitReady(t, svc, func() []metav1.Condition { return svc.Status.Conditions }, metav1.ConditionFalse, v1alpha1.ReasonRolloutInProgress)
	markRolledOut(t, d)
	waitReady(t, svc, func() []metav1.Condition { return svc.Status.Conditions }, metav1.ConditionTrue, v1alpha1.ReasonReady)
	if svc.Status.Replicas != 3 {
		t.Errorf("status replicas %d, want 3", svc.Status.Replicas)
	}

	// The scale subresource (kubectl scale, HPA, the autoscaler) sets
	// spec.replicas, which reaches the Deployment.
	scale := &autoscalingv1.Scale{}
	if err := c.SubResource("scale").Get(t.Context(), svc, scale); err != nil {
		t.Fatalf("get scale: %v", err)
	}
	if scale.Spec.Replicas != 3 || scale.Status.Replicas != 3 || scale.Status.Selector != controller.LabelService+"=cart" {
		t.Errorf("scale %+v", scale)
	}
	// A conflict means the controller wrote the object since the scale
	// was read (its status): read it again and retry.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.SubResource("scale").Get(t.Context(), svc, scale); err != nil {
			return err
		}
		scale.Spec.Replicas = 2
		return c.SubResource("scale").Update(t.Context(), svc, client.WithSubResourceBody(scale))
	})
	if err != nil {
		t.Fatalf("update scale: %v", err)
	}
	deployment(t, ns, "cart", func(d *appsv1.Deployment) error {
		if n := ptr.Deref(d.Spec.Replicas, 0); n != 2 {
			return fmt.Errorf("replicas %d, want 2", n)
		}
		return nil
	})
}

func TestStatefulServiceDrift(t *testing.T) {
	ns := namespace(t)
	store, _ := readyStore(t, ns, "nats")
	c := k8s(t)
	svc := newService(ns, "cart", store.Name)
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	d := deployment(t, ns, "cart", nil)

	// By hand: another sidecar image, an env var changed, 5 replicas.
	sc := container(d, "jetstate")
	sc.Image = "evil:1"
	for i := range sc.Env {
		if sc.Env[i].Name == "JETSTATE_SERVICE" {
			sc.Env[i].Value = "other"
		}
	}
	d.Spec.Replicas = ptr.To[int32](5)
	if err := c.Update(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	deployment(t, ns, "cart", func(d *appsv1.Deployment) error {
		sc := container(d, "jetstate")
		if sc.Image != "jetstate:test" || envOf(sc)["JETSTATE_SERVICE"] != "cart" || ptr.Deref(d.Spec.Replicas, 0) != 1 {
			return fmt.Errorf("not corrected: image %s, service %s, replicas %d", sc.Image, envOf(sc)["JETSTATE_SERVICE"], ptr.Deref(d.Spec.Replicas, 0))
		}
		return nil
	})

	// The Service deleted by hand comes back.
	var s corev1.Service
	eventually(t, 10*time.Second, func() error { return c.Get(t.Context(), client.ObjectKeyFromObject(svc), &s) })
	uid := s.UID
	if err := c.Delete(t.Context(), &s); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(svc), &s); err != nil {
			return err
		}
		if s.UID == uid {
			return errors.New("still the old Service")
		}
		return nil
	})
}

func TestStatefulServiceDeletionPolicy(t *testing.T) {
	ns := namespace(t)
	store, srv := readyStore(t, ns, "nats")
	c := k8s(t)
	js := srv.JetStream(t)
	for _, tc := range []struct {
		policy v1alpha1.DeletionPolicy
		kept   bool
	}{{"", true}, {v1alpha1.DeletionRetain, true}, {v1alpha1.DeletionDelete, false}} {
		t.Run(string(tc.policy), func(t *testing.T) {
			name := "del-" + map[v1alpha1.DeletionPolicy]string{"": "default", "Retain": "retain", "Delete": "delete"}[tc.policy]
			svc := newService(ns, name, store.Name)
			svc.Spec.DeletionPolicy = tc.policy
			if err := c.Create(t.Context(), svc); err != nil {
				t.Fatal(err)
			}
			journal := "jetstate_" + name + "_journal"
			eventually(t, 20*time.Second, func() error {
				_, err := js.Stream(t.Context(), journal)
				return err
			})
			eventually(t, 10*time.Second, func() error {
				if err := c.Get(t.Context(), client.ObjectKeyFromObject(svc), svc); err != nil {
					return err
				}
				if !slices.Contains(svc.Finalizers, controller.Finalizer) {
					return errors.New("no finalizer yet")
				}
				return nil
			})
			// Autoscaler state of the service, which goes with Delete too.
			state, err := autoscaler.NewStore(t.Context(), js, autoscaler.StoreConfig{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := state.Save(t.Context(), name, autoscaler.State{Phase: autoscaler.ScalingDown, Desired: 2}, 0); err != nil {
				t.Fatal(err)
			}
			if err := c.Delete(t.Context(), svc); err != nil {
				t.Fatal(err)
			}
			eventually(t, 20*time.Second, func() error {
				err := c.Get(t.Context(), client.ObjectKeyFromObject(svc), svc)
				if apierrors.IsNotFound(err) {
					return nil
				}
				return fmt.Errorf("still there (finalizers %v): %v", svc.Finalizers, err)
			})
			names := streamNames(t, js)
			for _, s := range []string{journal, "jetstate_" + name + "_crdt", "KV_jetstate_" + name + "_values", "KV_jetstate_" + name + "_shards"} {
				if slices.Contains(names, s) != tc.kept {
					t.Errorf("policy %q: stream %s kept=%v, want %v", tc.policy, s, !tc.kept, tc.kept)
				}
			}
			if _, rev, err := state.Load(t.Context(), name); err != nil || (rev != 0) != tc.kept {
				t.Errorf("policy %q: autoscaler state revision %d (%v), kept=%v", tc.policy, rev, err, tc.kept)
			}
		})
	}
}

func TestStatefulServiceStoreNotFound(t *testing.T) {
	ns := namespace(t)
	c := k8s(t)
	svc := newService(ns, "cart", "later")
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	conds := func() []metav1.Condition { return svc.Status.Conditions }
	waitReady(t, svc, conds, metav1.ConditionFalse, v1alpha1.ReasonStoreNotFound)
	var d appsv1.Deployment
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(svc), &d); !apierrors.IsNotFound(err) {
		t.Errorf("a Deployment without a store: %v", err)
	}
	// The store appears: the store watch brings the service back without
	// any change to it, first StoreNotReady (not checked yet, or not
	// reachable), then on to the Deployment.
	srv := streamstest.RunServer(t)
	createStore(t, ns, "later", srv.ClientURL())
	waitReady(t, svc, conds, metav1.ConditionFalse, v1alpha1.ReasonRolloutInProgress)
	deployment(t, ns, "cart", nil)
}

func TestStatefulServiceStoreNotReady(t *testing.T) {
	ns := namespace(t)
	c := k8s(t)
	createStore(t, ns, "down", deadURL(t))
	svc := newService(ns, "cart", "down")
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	c0 := waitReady(t, svc, func() []metav1.Condition { return svc.Status.Conditions }, metav1.ConditionFalse, v1alpha1.ReasonStoreNotReady)
	if c0.Message == "" {
		t.Error("no message")
	}
}

// TestStatefulServiceNameConflict: a Deployment of the service's name that
// the operator does not control is left alone, and the service says why;
// once it is gone, the operator creates its own.
func TestStatefulServiceNameConflict(t *testing.T) {
	ns := namespace(t)
	store, _ := readyStore(t, ns, "nats")
	c := k8s(t)
	labels := map[string]string{"app": "mine"}
	mine := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cart"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "mine:1"}}},
			},
		},
	}
	if err := c.Create(t.Context(), mine); err != nil {
		t.Fatal(err)
	}
	svc := newService(ns, "cart", store.Name)
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	conds := func() []metav1.Condition { return svc.Status.Conditions }
	waitReady(t, svc, conds, metav1.ConditionFalse, v1alpha1.ReasonNameConflict)
	var d appsv1.Deployment
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(mine), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Spec.Template.Spec.Containers) != 1 || d.Spec.Template.Spec.Containers[0].Image != "mine:1" || metav1.GetControllerOf(&d) != nil {
		t.Errorf("someone else's Deployment was changed: %+v", d.Spec.Template.Spec.Containers)
	}
	if err := c.Delete(t.Context(), mine); err != nil {
		t.Fatal(err)
	}
	deployment(t, ns, "cart", func(d *appsv1.Deployment) error {
		if container(d, "jetstate") == nil {
			return errors.New("no sidecar yet")
		}
		return nil
	})
}

// TestStatefulServiceProvisionFailed: provisioning that the server refuses
// (a service recreated with another shard count) or that cannot reach it
// leaves no Deployment and says ProvisionFailed.
func TestStatefulServiceProvisionFailed(t *testing.T) {
	ns := namespace(t)
	store, srv := readyStore(t, ns, "nats")
	c := k8s(t)
	// The service existed before with 7 shards; the spec asks for 100.
	if err := streams.Provision(t.Context(), srv.JetStream(t), streams.Config{Service: "cart"}, streams.StoreConfig{Shards: 7, Storage: streams.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	svc := newService(ns, "cart", store.Name)
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	cond := waitReady(t, svc, func() []metav1.Condition { return svc.Status.Conditions }, metav1.ConditionFalse, v1alpha1.ReasonProvisionFailed)
	if !strings.Contains(cond.Message, "7 shards") {
		t.Errorf("message %q does not name the shard count", cond.Message)
	}
	var d appsv1.Deployment
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(svc), &d); !apierrors.IsNotFound(err) {
		t.Errorf("a Deployment without streams: %v", err)
	}

	// The server goes away (the store has not noticed yet).
	srv.Stop()
	other := newService(ns, "other", store.Name)
	if err := c.Create(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	waitReady(t, other, func() []metav1.Condition { return other.Status.Conditions }, metav1.ConditionFalse, v1alpha1.ReasonProvisionFailed)
}

// eventLog records the events a reconciler run by a test emits.
type eventLog struct {
	mu      sync.Mutex
	reasons []string
}

func (l *eventLog) Eventf(_, _ runtime.Object, _, reason, _, _ string, _ ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reasons = append(l.reasons, reason)
}

func (l *eventLog) count(reason string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.reasons {
		if r == reason {
			n++
		}
	}
	return n
}

// TestStatefulServiceProvisionOnce checks that a store's periodic check
// (a status write: a new resourceVersion, the same spec) does not make the
// next reconcile provision again (and announce it): provisioning is redone
// for a changed store spec or after ProvisionRefresh only.
func TestStatefulServiceProvisionOnce(t *testing.T) {
	ns := namespace(t)
	store, _ := readyStore(t, ns, "nats")
	c := k8s(t)
	svc := newService(ns, "cart", store.Name)
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	deployment(t, ns, "cart", nil)

	// A reconciler of our own, called directly (the manager's runs too).
	rec := &eventLog{}
	r := &controller.StatefulServiceReconciler{Client: c, Secrets: c, Recorder: rec, Config: testConfig}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(svc)}
	if _, err := r.Reconcile(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if n := rec.count("Provisioned"); n != 1 {
		t.Fatalf("%d Provisioned events after the first reconcile, want 1", n)
	}

	// The store is checked again: only its status changes.
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(store), store); err != nil {
		t.Fatal(err)
	}
	rv := store.ResourceVersion
	orig := store.DeepCopy()
	store.Status.LastChecked = ptr.To(metav1.NewTime(time.Now().Add(time.Second)))
	if err := c.Status().Patch(t.Context(), store, client.MergeFrom(orig)); err != nil {
		t.Fatal(err)
	}
	if store.ResourceVersion == rv {
		t.Fatal("the store's resourceVersion did not change")
	}
	if _, err := r.Reconcile(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if n := rec.count("Provisioned"); n != 1 {
		t.Errorf("%d Provisioned events after a store check, want 1: provisioned again", n)
	}
}

// staleServices is a client whose Get of a StatefulService returns an old
// copy, as a lagging cache does.
type staleServices struct {
	client.Client
	old *v1alpha1.StatefulService
}

func (c staleServices) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if s, ok := obj.(*v1alpha1.StatefulService); ok && key == client.ObjectKeyFromObject(c.old) {
		c.old.DeepCopyInto(s)
		return nil
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// TestStatefulServiceFinalizerKeepsOthers checks that adding the
// finalizer from an outdated copy of the object never drops a finalizer
// someone else added meanwhile (a merge patch replaces the whole list).
func TestStatefulServiceFinalizerKeepsOthers(t *testing.T) {
	ns := namespace(t)
	store, _ := readyStore(t, ns, "nats")
	c := k8s(t)
	svc := newService(ns, "cart", store.Name)
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	// What a cache still shows right after the creation: no finalizer.
	stale := svc.DeepCopy()
	eventually(t, 10*time.Second, func() error {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(svc), svc); err != nil {
			return err
		}
		if !slices.Contains(svc.Finalizers, controller.Finalizer) {
			return errors.New("no finalizer yet")
		}
		return nil
	})
	const other = "example.com/backup"
	eventually(t, 10*time.Second, func() error { // the manager writes the status meanwhile
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(svc), svc); err != nil {
			return err
		}
		orig := svc.DeepCopy()
		svc.Finalizers = append(svc.Finalizers, other)
		return c.Patch(t.Context(), svc, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	})
	t.Cleanup(func() {
		var s v1alpha1.StatefulService
		if c.Get(context.Background(), client.ObjectKeyFromObject(svc), &s) == nil {
			o := s.DeepCopy()
			s.Finalizers = slices.DeleteFunc(s.Finalizers, func(f string) bool { return f == other })
			_ = c.Patch(context.Background(), &s, client.MergeFrom(o))
		}
	})

	r := &controller.StatefulServiceReconciler{Client: staleServices{Client: c, old: stale}, Secrets: c, Recorder: &eventLog{}, Config: testConfig}
	_, _ = r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(svc)}) // a conflict is fine: it is retried
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(svc), svc); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(svc.Finalizers, other) || !slices.Contains(svc.Finalizers, controller.Finalizer) {
		t.Errorf("finalizers %v, want both %s and %s", svc.Finalizers, controller.Finalizer, other)
	}
}

// TestStatefulServicePortNames checks that the Service reaches the
// sidecar even when a user container names one of its ports like the
// sidecar's: a named targetPort resolves to the first container port of
// that name in the pod, and the user's containers come first.
func TestStatefulServicePortNames(t *testing.T) {
	ns := namespace(t)
	store, _ := readyStore(t, ns, "nats")
	c := k8s(t)
	svc := newService(ns, "cart", store.Name)
	svc.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "ingress", ContainerPort: 8443}, {Name: "admin", ContainerPort: 8081}}
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	d := deployment(t, ns, "cart", nil)
	var s corev1.Service
	eventually(t, 10*time.Second, func() error { return c.Get(t.Context(), client.ObjectKeyFromObject(svc), &s) })
	// The endpoints controller's resolution (podutil.FindPort).
	find := func(tp intstr.IntOrString) (string, int32) {
		if tp.Type == intstr.Int {
			for _, ctr := range d.Spec.Template.Spec.Containers {
				for _, p := range ctr.Ports {
					if p.ContainerPort == tp.IntVal {
						return ctr.Name, p.ContainerPort
					}
				}
			}
			return "", tp.IntVal
		}
		for _, ctr := range d.Spec.Template.Spec.Containers {
			for _, p := range ctr.Ports {
				if p.Name == tp.StrVal {
					return ctr.Name, p.ContainerPort
				}
			}
		}
		return "", 0
	}
	for _, p := range s.Spec.Ports {
		if ctr, port := find(p.TargetPort); ctr != "jetstate" {
			t.Errorf("service port %s goes to container %q port %d, not the sidecar", p.Name, ctr, port)
		}
	}
}
