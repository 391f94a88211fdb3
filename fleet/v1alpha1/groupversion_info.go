package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of every Flotilla type.
var GroupVersion = schema.GroupVersion{Group: "fleet.flotilla.dev", Version: "v1alpha1"}

var (
	// SchemeBuilder registers the Flotilla types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the Flotilla types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion,
		&MemberCluster{}, &MemberClusterList{},
		&Baseline{}, &BaselineList{},
		&BaselineBinding{}, &BaselineBindingList{},
		&ExportedService{}, &ExportedServiceList{},
	)
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
