// Package controller holds the operator's reconcilers, one per kind:
//
//   - StatefulStoreReconciler connects to the store's NATS, checks that
//     JetStream is enabled and new enough (streams.CheckServer) and reports
//     it in the Ready condition, again every spec.checkInterval.
//   - StatefulServiceReconciler provisions the service's streams and
//     buckets on its store (streams.Provision), then server-side applies a
//     Deployment (the user's containers plus the `jetstate proxy` sidecar)
//     and a Service for the ingress port, both owned by the
//     StatefulService; it reports replicas, selector and Ready (with the
//     reason when not) and, behind a finalizer, keeps or deletes the
//     streams on deletion according to spec.deletionPolicy.
//   - ProjectionReconciler resolves the sink (a NATS subject, a URL, or an
//     addressable object's status.address.url) and applies a one-replica
//     Deployment running `jetstate project`.
//
// Owned objects are written with server-side apply under the field manager
// "jetstate-operator" and forced ownership: a field the operator sets and
// someone changed by hand is put back at the next reconcile (every change of
// an owned object triggers one). Fields the operator does not set are left
// to whoever set them.
//
// Errors are returned to controller-runtime (logged once there, retried
// with back-off) and surface as the Ready condition and as events on the
// object. Nothing here reads flags or the environment: cmd/jetstate-operator
// does.
package controller
