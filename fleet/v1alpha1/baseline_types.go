package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ApplyPolicy says what a Baseline does about member objects.
// +kubebuilder:validation:Enum=Enforce;Inform;CreateOnly
type ApplyPolicy string

const (
	// PolicyEnforce applies and corrects drift.
	PolicyEnforce ApplyPolicy = "Enforce"
	// PolicyInform never writes; it reports what differs as Drifted.
	PolicyInform ApplyPolicy = "Inform"
	// PolicyCreateOnly creates missing objects and never updates existing ones.
	PolicyCreateOnly ApplyPolicy = "CreateOnly"
)

// DeletionPolicy says what happens to applied objects when a Baseline is deleted or a
// member stops matching its selector.
// +kubebuilder:validation:Enum=Delete;Orphan
type DeletionPolicy string

const (
	// DeletionDelete removes what the Baseline applied.
	DeletionDelete DeletionPolicy = "Delete"
	// DeletionOrphan leaves applied objects in place and drops Flotilla's ownership labels.
	DeletionOrphan DeletionPolicy = "Orphan"
)

// ConflictPolicy says what happens when an object already exists in a member and this
// Baseline does not own it.
// +kubebuilder:validation:Enum=Abort;Adopt
type ConflictPolicy string

const (
	// ConflictAbort leaves the object untouched and reports a Conflict naming it.
	ConflictAbort ConflictPolicy = "Abort"
	// ConflictAdopt takes ownership of the object.
	ConflictAdopt ConflictPolicy = "Adopt"
)

// LocalObjectReference names an object in the hub namespace. Sources are read from the hub
// namespace only, so the right to create Baselines is not a way to read other namespaces.
type LocalObjectReference struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
}

// ResourceSource is one source of manifests: exactly one of inline, configMapRef, secretRef.
// +kubebuilder:validation:XValidation:rule="(has(self.inline) ? 1 : 0) + (has(self.configMapRef) ? 1 : 0) + (has(self.secretRef) ? 1 : 0) == 1",message="exactly one of inline, configMapRef or secretRef must be set"
type ResourceSource struct {
	// Inline multi-document YAML.
	// +kubebuilder:validation:MinLength=1
	// +optional
	Inline string `json:"inline,omitempty"`

	// ConfigMapRef: every data key of this hub ConfigMap holds multi-document YAML.
	// +optional
	ConfigMapRef *LocalObjectReference `json:"configMapRef,omitempty"`

	// SecretRef: every data key of this hub Secret holds multi-document YAML (for manifests
	// that are themselves Secrets). Values are masked in diffs and never logged.
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`
}

// PerNamespace fans resources out into every member namespace that matches, including
// namespaces created later.
type PerNamespace struct {
	// NamespaceSelector selects member Namespaces by label ({} selects all). Exclude system
	// namespaces with an expression on kubernetes.io/metadata.name.
	// +required
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`

	// Resources are namespaced manifests applied into each selected namespace; their own
	// metadata.namespace, if any, is replaced.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +required
	Resources []ResourceSource `json:"resources"`
}

// Substitution turns on ${VAR} substitution in this Baseline's manifests. Built-in variables:
// ${CLUSTER_NAME} and ${CLUSTER_LABEL_<KEY>} (the label key upper-cased, every character
// other than A-Z and 0-9 replaced by _). Without it, manifests are applied verbatim.
type Substitution struct {
	// Variables adds fixed variables; built-in names win on a clash.
	// +optional
	Variables map[string]string `json:"variables,omitempty"`
}

// RolloutStrategy moves a new revision through the fleet in steps.
type RolloutStrategy struct {
	// MaxConcurrent members updated at once: a count (>= 1) or a percentage of the selected
	// members ("25%"). Unset means all at once.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 1 : self.matches('^(100|[1-9][0-9]?)%$')",message="maxConcurrent must be a count >= 1 or a percentage between 1% and 100%"
	// +optional
	MaxConcurrent *intstr.IntOrString `json:"maxConcurrent,omitempty"`

	// MaxFailures is how many members may fail the new revision before the rollout stops
	// (Stalled).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=0
	// +optional
	MaxFailures *int32 `json:"maxFailures,omitempty"`

	// Canary selects the members that get a new revision first, before any batch.
	// +optional
	Canary *metav1.LabelSelector `json:"canary,omitempty"`
}

// BaselineSpec is what every selected member must hold.
// +kubebuilder:validation:XValidation:rule="(has(self.resources) && size(self.resources) > 0) || has(self.perNamespace)",message="a Baseline needs resources or perNamespace"
type BaselineSpec struct {
	// ClusterSelector selects MemberClusters by label; {} selects every member.
	// +required
	ClusterSelector metav1.LabelSelector `json:"clusterSelector"`

	// Resources are ordered manifest sources applied once per member.
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Resources []ResourceSource `json:"resources,omitempty"`

	// PerNamespace resources are applied into every matching member namespace.
	// +optional
	PerNamespace *PerNamespace `json:"perNamespace,omitempty"`

	// Substitute opts in to per-cluster ${VAR} substitution.
	// +optional
	Substitute *Substitution `json:"substitute,omitempty"`

	// Policy: Enforce (apply and correct drift), Inform (report only) or CreateOnly.
	// +kubebuilder:default=Enforce
	// +optional
	Policy ApplyPolicy `json:"policy,omitempty"`

	// Prune deletes objects that left the Baseline. Namespaces and CRDs are pruned only when
	// their manifest carries the annotation fleet.flotilla.dev/prune: "true".
	// +kubebuilder:default=true
	// +optional
	Prune *bool `json:"prune,omitempty"`

	// DeletionPolicy applies when the Baseline is deleted or a member stops matching.
	// +kubebuilder:default=Delete
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// ConflictPolicy applies to existing objects this Baseline does not own.
	// +kubebuilder:default=Abort
	// +optional
	ConflictPolicy ConflictPolicy `json:"conflictPolicy,omitempty"`

	// Rollout controls how a new revision moves through the selected members.
	// +optional
	Rollout *RolloutStrategy `json:"rollout,omitempty"`

	// Paused stops every write for this Baseline; status keeps being reported.
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// BaselineStatus summarises the Baseline across the fleet.
type BaselineStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Revision is a hash of the rendered sources; bindings report which revision they hold.
	// +optional
	Revision string `json:"revision,omitempty"`

	// Selected members.
	// +optional
	Selected int32 `json:"selected"`
	// Applied members holding the current revision.
	// +optional
	Applied int32 `json:"applied"`
	// Healthy members whose applied objects are all healthy.
	// +optional
	Healthy int32 `json:"healthy"`
	// Failed members whose last apply failed.
	// +optional
	Failed int32 `json:"failed"`
	// Unreachable members not connected to the hub.
	// +optional
	Unreachable int32 `json:"unreachable"`
	// Drifted members with an object that differs from the Baseline.
	// +optional
	Drifted int32 `json:"drifted"`
	// Conflicted members with an object owned by someone else.
	// +optional
	Conflicted int32 `json:"conflicted"`

	// Conditions: Ready, Progressing, Reconciling (rolling out or retrying; kstatus InProgress),
	// Stalled (a person must act; kstatus Failed).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Baseline is a set of manifests — addons, RBAC, NetworkPolicies — that every selected
// member cluster must hold, continuously.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bl,categories=flotilla
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')",message="metadata.name must be a DNS label: at most 63 lowercase alphanumerics or '-'"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.status.revision`
// +kubebuilder:printcolumn:name="Selected",type=integer,JSONPath=`.status.selected`
// +kubebuilder:printcolumn:name="Applied",type=integer,JSONPath=`.status.applied`
// +kubebuilder:printcolumn:name="Healthy",type=integer,JSONPath=`.status.healthy`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failed`,priority=1
// +kubebuilder:printcolumn:name="Drifted",type=integer,JSONPath=`.status.drifted`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Baseline struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec BaselineSpec `json:"spec"`
	// +optional
	Status BaselineStatus `json:"status,omitempty"`
}

// BaselineList is a list of Baselines.
//
// +kubebuilder:object:root=true
type BaselineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Baseline `json:"items"`
}

// GetConditions returns the status conditions (for condition helpers).
func (b *Baseline) GetConditions() []metav1.Condition { return b.Status.Conditions }

// SetConditions replaces the status conditions.
func (b *Baseline) SetConditions(c []metav1.Condition) { b.Status.Conditions = c }

// GetObservedGeneration returns the generation the status was last computed for.
func (b *Baseline) GetObservedGeneration() int64 { return b.Status.ObservedGeneration }

// SetObservedGeneration records the generation the status was computed for.
func (b *Baseline) SetObservedGeneration(g int64) { b.Status.ObservedGeneration = g }
