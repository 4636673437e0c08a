package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of jetstate's resources.
	GroupVersion = schema.GroupVersion{Group: "jetstate.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package in a scheme.
	SchemeBuilder = (&scheme.Builder{GroupVersion: GroupVersion}).Register(
		&StatefulService{}, &StatefulServiceList{},
		&StatefulStore{}, &StatefulStoreList{},
		&Projection{}, &ProjectionList{},
	)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
