// Package v1alpha1 holds the Go types of jetstate's custom resources, group
// jetstate.io, version v1alpha1:
//
//   - StatefulService: a user function deployed with the jetstate sidecar,
//     its store, entity settings, autoscaling policy and deletion policy;
//   - StatefulStore: how to reach a NATS JetStream system and how the
//     streams of the services that use it are provisioned;
//   - Projection: a journal consumer delivering a service's events as
//     CloudEvents to a NATS subject, a URL or an addressable object.
//
// The kubebuilder markers on the types are the API's contract: controller-gen
// turns them into the OpenAPI schemas, defaults and CEL rules of the CRDs in
// crds/bases/, so the API server refuses an invalid object before any
// controller sees it. zz_generated.deepcopy.go is generated (make manifests).
//
// +kubebuilder:object:generate=true
// +groupName=jetstate.io
package v1alpha1
