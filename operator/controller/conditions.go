package controller

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
)

// EventRecorder records Kubernetes events (events.k8s.io/v1) about the
// reconciled objects; the manager's GetEventRecorder is one.
type EventRecorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// setCondition sets c in conds (keeping its transition time when the
// status does not change) and reports whether its status or reason
// changed: what deserves an event, unlike a new message.
func setCondition(conds *[]metav1.Condition, c metav1.Condition) bool {
	prev := meta.FindStatusCondition(*conds, c.Type)
	changed := prev == nil || prev.Status != c.Status || prev.Reason != c.Reason
	meta.SetStatusCondition(conds, c)
	return changed
}

// recordCondition records a change of the Ready condition: Normal when it became
// True or a rollout is under way, Warning otherwise.
func recordCondition(rec EventRecorder, obj runtime.Object, c metav1.Condition, action string) {
	if rec == nil {
		return
	}
	typ := corev1.EventTypeWarning
	if c.Status == metav1.ConditionTrue || c.Reason == v1alpha1.ReasonRolloutInProgress || c.Reason == v1alpha1.ReasonDeleting {
		typ = corev1.EventTypeNormal
	}
	rec.Eventf(obj, nil, typ, c.Reason, action, "%s", c.Message)
}
