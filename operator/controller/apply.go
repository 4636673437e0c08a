package controller

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/jetstate/jetstate/operator/api/v1alpha1"
)

// applyOwned server-side applies obj (a Deployment or a Service built by
// this package) as controlled by owner, with forced ownership of every
// field it sets. An object of that name that owner does not control is
// left alone: a NameConflict error.
func applyOwned(ctx context.Context, c client.Client, owner client.Object, obj client.Object) error {
	existing := obj.DeepCopyObject().(client.Object)
	switch err := c.Get(ctx, client.ObjectKeyFromObject(obj), existing); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	default:
		if ref := metav1.GetControllerOf(existing); ref == nil || ref.UID != owner.GetUID() {
			return reasonf(v1alpha1.ReasonNameConflict, "%s %s/%s exists and is not controlled by this object: delete or rename it",
				obj.GetObjectKind().GroupVersionKind().Kind, obj.GetNamespace(), obj.GetName())
		}
	}
	if err := controllerutil.SetControllerReference(owner, obj, c.Scheme()); err != nil {
		return err
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	switch obj.(type) {
	case *appsv1.Deployment:
		var d appsv1ac.DeploymentApplyConfiguration
		if err := json.Unmarshal(b, &d); err != nil {
			return err
		}
		d.Status = nil
		err = c.Apply(ctx, &d, client.FieldOwner(FieldManager), client.ForceOwnership)
	case *corev1.Service:
		var s corev1ac.ServiceApplyConfiguration
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		s.Status = nil
		err = c.Apply(ctx, &s, client.FieldOwner(FieldManager), client.ForceOwnership)
	default:
		return fmt.Errorf("apply: unsupported type %T", obj)
	}
	if err != nil {
		return fmt.Errorf("apply %T %s/%s: %w", obj, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}
