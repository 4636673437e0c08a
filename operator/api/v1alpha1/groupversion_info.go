package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of jetstate's resources.
	GroupVersion = schema.GroupVersion{Group: "jetstate.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package in a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&StatefulService{}, &StatefulServiceList{},
		&StatefulStore{}, &StatefulStoreList{},
		&Projection{}, &ProjectionList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
