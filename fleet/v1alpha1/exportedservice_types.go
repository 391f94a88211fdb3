package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AddressMode says which addresses of an exported Service other clusters can reach.
// +kubebuilder:validation:Enum=Auto;LoadBalancer;NodePort;PodIP;ClusterIP
type AddressMode string

const (
	// AddressModeAuto picks LoadBalancer ingress, then NodePort, then pod IPs.
	AddressModeAuto AddressMode = "Auto"
	// AddressModeLoadBalancer publishes the LoadBalancer ingress IPs (or an ExternalName for a hostname).
	AddressModeLoadBalancer AddressMode = "LoadBalancer"
	// AddressModeNodePort publishes node IPs with the Service's node ports.
	AddressModeNodePort AddressMode = "NodePort"
	// AddressModePodIP publishes ready pod IPs (flat pod network across clusters).
	AddressModePodIP AddressMode = "PodIP"
	// AddressModeClusterIP publishes the Service's cluster IP (routed service networks).
	AddressModeClusterIP AddressMode = "ClusterIP"
)

// ServiceReference names a Service in a member cluster.
type ServiceReference struct {
	// Cluster is the MemberCluster name.
	// +required
	Cluster string `json:"cluster"`
	// +required
	Namespace string `json:"namespace"`
	// +required
	Name string `json:"name"`
}

// ExportedPort is one port of an exported Service.
type ExportedPort struct {
	// +optional
	Name string `json:"name,omitempty"`
	// +optional
	Protocol corev1.Protocol `json:"protocol,omitempty"`
	// +optional
	AppProtocol string `json:"appProtocol,omitempty"`
	// Port is the Service port mirrors expose.
	Port int32 `json:"port"`
}

// MirrorConflict is a member where the mirror could not be written.
type MirrorConflict struct {
	// Cluster where the mirror was refused.
	Cluster string `json:"cluster"`
	// Message says what is in the way, e.g. an unowned Service of the same name.
	Message string `json:"message"`
}

// ImportRefusal is a member that refuses the export's mirror: its namespace of the same name
// does not import.
type ImportRefusal struct {
	// Cluster that refuses the mirror.
	Cluster string `json:"cluster"`
	// Reason: ImportDisabled (the namespace is labelled fleet.flotilla.dev/import: "false") or
	// ImportNotEnabled (the hub imports opt-in and the namespace is not labelled "true").
	Reason string `json:"reason"`
	// Message says what would change it.
	Message string `json:"message"`
}

// ExportedServiceSpec identifies the exported Service.
type ExportedServiceSpec struct {
	// Source is the exported Service.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="source is immutable"
	// +required
	Source ServiceReference `json:"source"`
}

// MaxListed is how many refused addresses and conflicts an ExportedService's status lists
// (the MaxItems of those lists; the markers must say the same number). A Service can have
// thousands of addresses and a fleet hundreds of members: the rest are counted, so that a
// status write can never fail for size.
const MaxListed = 50

// ExportedServiceStatus is what the hub mirrors for the Service.
type ExportedServiceStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// AddressMode in effect (Auto resolved to the mode used).
	// +optional
	AddressMode AddressMode `json:"addressMode,omitempty"`
	// ExportTo is the export-to selector in effect; empty means every other member.
	// +optional
	ExportTo string `json:"exportTo,omitempty"`
	// +listType=atomic
	// +optional
	Ports []ExportedPort `json:"ports,omitempty"`
	// ServiceExport is true when an MCS ServiceExport of the same name asks for the export
	// (alone or beside the fleet.flotilla.dev/export annotation).
	// +optional
	ServiceExport bool `json:"serviceExport,omitempty"`
	// ExportedSince is when the export began: the ServiceExport's creation, else this entry's.
	// The oldest export of a namespace/name decides the merged service's ports and type.
	// +optional
	ExportedSince *metav1.Time `json:"exportedSince,omitempty"`
	// Headless is true when the source Service is headless: merged mirrors are headless too.
	// +optional
	Headless bool `json:"headless,omitempty"`
	// Global is true when the source asks for the merged <name>-global mirror.
	// +optional
	Global bool `json:"global,omitempty"`
	// Endpoints published (ready or not).
	// +optional
	Endpoints int32 `json:"endpoints"`
	// ReadyEndpoints published as ready.
	// +optional
	ReadyEndpoints int32 `json:"readyEndpoints"`
	// MirroredInto lists the members holding a current mirror.
	// +listType=set
	// +optional
	MirroredInto []string `json:"mirroredInto,omitempty"`
	// Refused lists source addresses left out of the mirrors, each with the reason
	// (loopback, link-local, unspecified, multicast, not an IP, a pod IP outside the source
	// cluster's pod CIDRs or a source cluster without pod CIDRs): the first 50, sorted.
	// +kubebuilder:validation:MaxItems=50
	// +listType=atomic
	// +optional
	Refused []string `json:"refused,omitempty"`
	// RefusedOmitted counts the refused addresses Refused has no room for.
	// +optional
	RefusedOmitted int32 `json:"refusedOmitted,omitempty"`
	// ImportRefusedBy lists the selected members whose namespace refuses mirrors (they hold
	// none of this export): the first 50, by member name.
	// +kubebuilder:validation:MaxItems=50
	// +listType=atomic
	// +optional
	ImportRefusedBy []ImportRefusal `json:"importRefusedBy,omitempty"`
	// ImportRefusedOmitted counts the refusing members ImportRefusedBy has no room for.
	// +optional
	ImportRefusedOmitted int32 `json:"importRefusedOmitted,omitempty"`
	// Conflicts lists members where the mirror could not be written: the first 50, by
	// member name.
	// +kubebuilder:validation:MaxItems=50
	// +listType=atomic
	// +optional
	Conflicts []MirrorConflict `json:"conflicts,omitempty"`
	// ConflictsOmitted counts the conflicts Conflicts has no room for.
	// +optional
	ConflictsOmitted int32 `json:"conflictsOmitted,omitempty"`
	// Conditions: Synced, Ready, and Conflict (this export disagrees with the merged service of
	// its namespace/name: PortConflict, TypeConflict; NoConflicts otherwise).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ExportedService is the hub's catalog entry for one exported Service: where it comes from,
// what is published and where it is mirrored. The service-sync controller writes it; its name
// is <cluster>.<namespace>.<service>.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=exsvc,categories=flotilla
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.source.cluster`
// +kubebuilder:printcolumn:name="Namespace",type=string,JSONPath=`.spec.source.namespace`
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.source.name`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.status.addressMode`
// +kubebuilder:printcolumn:name="Endpoints",type=integer,JSONPath=`.status.readyEndpoints`
// +kubebuilder:printcolumn:name="Synced",type=string,JSONPath=`.status.conditions[?(@.type=="Synced")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ExportedService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ExportedServiceSpec `json:"spec"`
	// +optional
	Status ExportedServiceStatus `json:"status,omitempty"`
}

// ExportedServiceList is a list of ExportedServices.
//
// +kubebuilder:object:root=true
type ExportedServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ExportedService `json:"items"`
}

// ExportedServiceName is the catalog name of a Service: cluster, namespace and name are DNS
// labels, so the dotted form is unambiguous and at most 191 characters.
func ExportedServiceName(cluster, namespace, name string) string {
	return cluster + "." + namespace + "." + name
}

// GetConditions returns the status conditions (for condition helpers).
func (e *ExportedService) GetConditions() []metav1.Condition { return e.Status.Conditions }

// SetConditions replaces the status conditions.
func (e *ExportedService) SetConditions(c []metav1.Condition) { e.Status.Conditions = c }

// GetObservedGeneration returns the generation the status was last computed for.
func (e *ExportedService) GetObservedGeneration() int64 { return e.Status.ObservedGeneration }

// SetObservedGeneration records the generation the status was computed for.
func (e *ExportedService) SetObservedGeneration(g int64) { e.Status.ObservedGeneration = g }
