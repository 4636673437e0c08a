package controller_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
)

func TestProjection(t *testing.T) {
	ns := namespace(t)
	store, srv := readyStore(t, ns, "nats")
	c := k8s(t)
	svc := newService(ns, "cart", store.Name)
	svc.Spec.ServiceName = "shoppingcart"
	if err := c.Create(t.Context(), svc); err != nil {
		t.Fatal(err)
	}

	t.Run("nats subject", func(t *testing.T) {
		p := &v1alpha1.Projection{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "to-nats"},
			Spec: v1alpha1.ProjectionSpec{
				Source:   v1alpha1.ProjectionSource{Service: "cart", EntityTypes: []string{"ShoppingCart"}},
				Sink:     v1alpha1.ProjectionSink{NATS: &v1alpha1.NATSSink{Subject: "carts.events"}},
				Delivery: v1alpha1.DeliverySpec{Mode: "structured", Workers: 4, Start: "now", DeadLetterSubject: "carts.dead", AckEach: true},
			},
		}
		if err := c.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		d := deployment(t, ns, "to-nats-projector", nil)
		if ptr.Deref(d.Spec.Replicas, 0) != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("replicas %v, strategy %v", d.Spec.Replicas, d.Spec.Strategy.Type)
		}
		pc := container(d, "projector")
		if pc == nil {
			t.Fatalf("containers %+v", d.Spec.Template.Spec.Containers)
		}
		want := map[string]string{
			"JETSTATE_SERVICE": "shoppingcart", "JETSTATE_PROJECTION": "to-nats", "K_SINK": "nats:carts.events",
			"JETSTATE_PROJECTION_TYPES": "ShoppingCart", "JETSTATE_SINK_MODE": "structured", "JETSTATE_PROJECTION_START": "now",
			"JETSTATE_DEAD_LETTER": "carts.dead", "METRICS_PORT": "9091", "NATS_URL": srv.ClientURL(), "JETSTATE_PREFIX": "jetstate",
		}
		if diff := cmp.Diff(want, envOf(pc)); diff != "" {
			t.Errorf("projector env (-want +got):\n%s", diff)
		}
		if !cmp.Equal(pc.Args, []string{"project", "-workers", "4", "-max-tries", "10", "-ack-each", "-send-timeout", "30s"}) {
			t.Errorf("args %q", pc.Args)
		}
		if pc.ReadinessProbe == nil || pc.ReadinessProbe.HTTPGet.Path != "/ready" {
			t.Errorf("readiness %+v", pc.ReadinessProbe)
		}
		conds := func() []metav1.Condition { return p.Status.Conditions }
		waitReady(t, p, conds, metav1.ConditionFalse, v1alpha1.ReasonRolloutInProgress)
		markRolledOut(t, d)
		waitReady(t, p, conds, metav1.ConditionTrue, v1alpha1.ReasonReady)
		if p.Status.SinkURI != "nats:carts.events" {
			t.Errorf("sinkURI %q", p.Status.SinkURI)
		}
	})

	t.Run("addressable ref", func(t *testing.T) {
		sink := &unstructured.Unstructured{}
		sink.SetAPIVersion("example.jetstate.io/v1")
		sink.SetKind("Sink")
		sink.SetNamespace(ns)
		sink.SetName("readmodel")
		if err := c.Create(t.Context(), sink); err != nil {
			t.Fatal(err)
		}
		p := &v1alpha1.Projection{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "to-ref"},
			Spec: v1alpha1.ProjectionSpec{
				Source: v1alpha1.ProjectionSource{Service: "cart"},
				Sink:   v1alpha1.ProjectionSink{Ref: &v1alpha1.SinkReference{APIVersion: "example.jetstate.io/v1", Kind: "Sink", Name: "readmodel"}},
			},
		}
		if err := c.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		conds := func() []metav1.Condition { return p.Status.Conditions }
		waitReady(t, p, conds, metav1.ConditionFalse, v1alpha1.ReasonSinkNotResolved)

		// The object gets its address: the projector is created for it.
		url := "http://readmodel." + ns + ".svc.cluster.local/events"
		if err := unstructured.SetNestedField(sink.Object, url, "status", "address", "url"); err != nil {
			t.Fatal(err)
		}
		if err := c.Update(t.Context(), sink); err != nil {
			t.Fatal(err)
		}
		d := deployment(t, ns, "to-ref-projector", func(d *appsv1.Deployment) error {
			if got := envOf(container(d, "projector"))["K_SINK"]; got != url {
				return fmt.Errorf("K_SINK %q", got)
			}
			return nil
		})
		markRolledOut(t, d)
		waitReady(t, p, conds, metav1.ConditionTrue, v1alpha1.ReasonReady)
		if p.Status.SinkURI != url {
			t.Errorf("sinkURI %q, want %q", p.Status.SinkURI, url)
		}
	})

	t.Run("missing service", func(t *testing.T) {
		p := &v1alpha1.Projection{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orphan"},
			Spec: v1alpha1.ProjectionSpec{
				Source: v1alpha1.ProjectionSource{Service: "nope"},
				Sink:   v1alpha1.ProjectionSink{URI: "https://example.com/events"},
			},
		}
		if err := c.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		waitReady(t, p, func() []metav1.Condition { return p.Status.Conditions }, metav1.ConditionFalse, v1alpha1.ReasonServiceNotFound)
	})
}
