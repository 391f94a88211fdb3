package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretKeyReference points at one key of a Secret on the hub.
type SecretKeyReference struct {
	// Namespace of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Namespace string `json:"namespace"`

	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// Key in the Secret's data holding the kubeconfig.
	// +kubebuilder:default=value
	// +kubebuilder:validation:MinLength=1
	// +optional
	Key string `json:"key,omitempty"`
}

// MemberClusterSpec says how the hub reaches a member cluster.
type MemberClusterSpec struct {
	// KubeconfigSecretRef names the hub Secret holding the member's kubeconfig. The hub reads
	// it; the credentials are never copied anywhere else.
	// +required
	KubeconfigSecretRef SecretKeyReference `json:"kubeconfigSecretRef"`

	// Paused stops every write to this member (probes continue).
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// MemberClusterStatus is what the hub last observed of a member.
type MemberClusterStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: CredentialsValid, Connected, Ready, Stalled (credentials a person must fix),
	// Reconciling (retrying after a transient failure).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// KubernetesVersion the member's API server reports, e.g. v1.37.2.
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`

	// NodeCount is the number of Nodes at the last successful probe.
	// +optional
	NodeCount *int32 `json:"nodeCount,omitempty"`

	// LastProbeTime is when the health probe last finished, successfully or not.
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`

	// ObservedCredentialHash is a hash of the kubeconfig in use; a change rebuilds the connection.
	// +optional
	ObservedCredentialHash string `json:"observedCredentialHash,omitempty"`

	// CredentialsExpireAt is when the member token in the kubeconfig expires (its exp claim);
	// unset for credentials that do not expire (a long-lived token, a client certificate).
	// +optional
	CredentialsExpireAt *metav1.Time `json:"credentialsExpireAt,omitempty"`
}

// MemberCluster is a Kubernetes cluster the hub manages. Its labels are the cluster's labels,
// matched by Baseline cluster selectors and Service export-to selectors. Its name appears in
// label values and mirror names, so it is a DNS label (at most 63 characters, no dots).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=mc;member,categories=flotilla
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')",message="metadata.name must be a DNS label: at most 63 lowercase alphanumerics or '-'"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.kubernetesVersion`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.nodeCount`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MemberCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec MemberClusterSpec `json:"spec"`
	// +optional
	Status MemberClusterStatus `json:"status,omitempty"`
}

// MemberClusterList is a list of MemberClusters.
//
// +kubebuilder:object:root=true
type MemberClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MemberCluster `json:"items"`
}

// GetConditions returns the status conditions (for condition helpers).
func (m *MemberCluster) GetConditions() []metav1.Condition { return m.Status.Conditions }

// SetConditions replaces the status conditions.
func (m *MemberCluster) SetConditions(c []metav1.Condition) { m.Status.Conditions = c }

// GetObservedGeneration returns the generation the status was last computed for.
func (m *MemberCluster) GetObservedGeneration() int64 { return m.Status.ObservedGeneration }

// SetObservedGeneration records the generation the status was computed for.
func (m *MemberCluster) SetObservedGeneration(g int64) { m.Status.ObservedGeneration = g }
