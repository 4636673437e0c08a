package controller

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
	"github.com/jetstate/jetstate/operator/autoscaler"
)

func TestRolledOut(t *testing.T) {
	dep := func(gen, observed int64, replicas, updated, available int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: gen},
			Status:     appsv1.DeploymentStatus{ObservedGeneration: observed, Replicas: replicas, UpdatedReplicas: updated, AvailableReplicas: available},
		}
	}
	for _, tc := range []struct {
		name    string
		dep     *appsv1.Deployment
		desired int32
		want    bool
	}{
		{"done", dep(2, 2, 3, 3, 3), 3, true},
		{"scaled to zero", dep(2, 2, 0, 0, 0), 0, true},
		{"template not seen", dep(3, 2, 3, 3, 3), 3, false},
		{"not yet created", dep(0, 0, 0, 0, 0), 1, false},
		{"updating", dep(2, 2, 3, 1, 3), 3, false},
		{"old pods left", dep(2, 2, 4, 3, 3), 3, false},
		{"not available", dep(2, 2, 3, 3, 2), 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := rolledOut(tc.dep, tc.desired)
			if got != tc.want || msg == "" {
				t.Errorf("rolledOut = %v %q, want %v", got, msg, tc.want)
			}
		})
	}
}

func TestPolicyOf(t *testing.T) {
	q := func(s string) *resource.Quantity { return ptr.To(resource.MustParse(s)) }
	got := policyOf(&v1alpha1.AutoscalingSpec{
		Enabled: true, MinReplicas: 2, MaxReplicas: 8, MaxStep: 3,
		TargetUserFunctionConcurrency: q("0.5"), TargetRequestConcurrency: q("40"), RequestRateThresholdFactor: q("1.25"),
		ScaleUpStabilization: &metav1.Duration{Duration: time.Minute}, ScaleDownStabilization: &metav1.Duration{Duration: 10 * time.Second},
	})
	want := autoscaler.Policy{
		Min: 2, Max: 8, MaxScaleStep: 3, TargetUserFunctionConcurrency: 0.5, TargetRequestConcurrency: 40,
		RequestRateThresholdFactor: 1.25, ScaleUpStabilization: time.Minute, ScaleDownStabilization: 10 * time.Second,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("policyOf (-want +got):\n%s", diff)
	}
	// Unset fields stay zero: the autoscaler's defaults apply.
	if got := policyOf(&v1alpha1.AutoscalingSpec{Enabled: true}); got != (autoscaler.Policy{}) {
		t.Errorf("empty spec: %+v", got)
	}
}

func TestConfigHash(t *testing.T) {
	svc := &v1alpha1.StatefulService{
		ObjectMeta: metav1.ObjectMeta{Name: "cart", Namespace: "ns"},
		Spec:       v1alpha1.StatefulServiceSpec{Store: v1alpha1.StoreReference{Name: "nats"}},
	}
	svc.Spec.Containers = []corev1.Container{{Name: "uf", Image: "cart:1"}}
	store := &v1alpha1.StatefulStore{Spec: v1alpha1.StatefulStoreSpec{URLs: []string{"nats://a:4222"}}}
	hash := func(secrets ...string) string {
		return desiredDeployment(svc, store, Config{}.withDefaults(), secrets).Spec.Template.Annotations[AnnotationConfigHash]
	}
	if first, second := hash(), hash(); first != second {
		t.Errorf("hash not stable: %s, %s", first, second)
	}
	if hash("creds@1") == hash("creds@2") {
		t.Error("a rotated secret does not change the hash")
	}
	before := hash()
	svc.Spec.Containers[0].Image = "cart:2"
	if hash() == before {
		t.Error("a new image does not change the hash")
	}
	if svc.Spec.Containers[0].Env != nil {
		t.Error("building the Deployment changed the spec")
	}
}
