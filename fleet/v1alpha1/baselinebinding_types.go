package v1alpha1

import (
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// BaselineBindingSpec binds one Baseline to one MemberCluster. Both names are immutable: a
// binding is created for a pair and deleted with it.
type BaselineBindingSpec struct {
	// BaselineName is the Baseline this binding applies.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="baselineName is immutable"
	// +required
	BaselineName string `json:"baselineName"`

	// ClusterName is the MemberCluster it applies to.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="clusterName is immutable"
	// +required
	ClusterName string `json:"clusterName"`

	// Revision is the Baseline revision released to this member. The Baseline controller
	// sets it as a rollout reaches the member (canary first, then batches); the binding
	// applies it. It lives in spec, not in the Baseline's status, because it is the
	// rollout's decision for this member and a single writer keeps maxConcurrent exact.
	// +optional
	Revision string `json:"revision,omitempty"`
}

// InventoryEntry identifies one object applied into a member.
type InventoryEntry struct {
	// +optional
	Group string `json:"group,omitempty"`
	// +required
	Version string `json:"version"`
	// +required
	Kind string `json:"kind"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// +required
	Name string `json:"name"`
	// UID is the member object's UID as Flotilla applied it. An object with this UID stays
	// owned by the Baseline whatever its labels say: labels can be edited by anyone who can
	// edit the object, so they cannot decide ownership on their own.
	// +optional
	UID types.UID `json:"uid,omitempty"`
	// ResourceVersion is the member object's resourceVersion when Flotilla last applied it,
	// or last found it matching the Baseline, for people reading the inventory (and for
	// entries recorded without ContentHash: while the object still has it, nobody changed it).
	// +optional
	ResourceVersion string `json:"resourceVersion,omitempty"`
	// ContentHash identifies, at that time, what of the member object anyone but a status
	// writer can change: its metadata.managedFields apart from subresources' entries (every
	// write of content, labels or annotations changes them; a status write does not), its
	// generation and deletion. While the object still hashes to it, nobody has changed it
	// since, and an apply of the same desired object (Hash) is skipped without a diff —
	// also when a controller keeps writing the object's status (a ResourceQuota's usage).
	// +optional
	ContentHash string `json:"contentHash,omitempty"`
	// Generation is the member object's metadata.generation at that time (zero for kinds
	// that do not count generations), for people reading the inventory.
	// +optional
	Generation int64 `json:"generation,omitempty"`
	// Hash identifies the desired object (as rendered for this member) that ResourceVersion
	// belongs to: a changed Baseline gives a new hash, and the object is applied again.
	// +optional
	Hash string `json:"hash,omitempty"`
}

// MaxInventory is the most objects a binding's inventory can hold (its MaxItems; the marker
// must say the same number), and so the highest --max-baseline-objects the hub accepts: at
// a few hundred bytes per entry it keeps the binding well within the API server's object size.
const MaxInventory = 5000

// BaselineBindingStatus is the state of one Baseline in one member.
type BaselineBindingStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Revision of the Baseline last applied to this member.
	// +optional
	Revision string `json:"revision,omitempty"`

	// Inventory lists every object applied into the member, so what leaves the Baseline can
	// be pruned. It is never cut (prune and clean-up rely on every entry): the hub refuses a
	// Baseline that would own more than --max-baseline-objects (at most 5000) in a member.
	// +kubebuilder:validation:MaxItems=5000
	// +listType=atomic
	// +optional
	Inventory []InventoryEntry `json:"inventory,omitempty"`

	// LastAppliedTime is when the last apply to this member finished.
	// +optional
	LastAppliedTime *metav1.Time `json:"lastAppliedTime,omitempty"`

	// Conditions: Applied, Healthy, Drifted, Conflict, Reconciling (retrying after a transient
	// failure). Messages name the failing object and the member's error.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BaselineBinding is one Baseline in one member cluster. The Baseline controller creates one
// per selected member and owns it; `kubectl get baselinebindings` is the baseline × cluster
// matrix.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bb,categories=flotilla
// +kubebuilder:printcolumn:name="Baseline",type=string,JSONPath=`.spec.baselineName`
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.clusterName`
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.status.revision`
// +kubebuilder:printcolumn:name="Applied",type=string,JSONPath=`.status.conditions[?(@.type=="Applied")].status`
// +kubebuilder:printcolumn:name="Healthy",type=string,JSONPath=`.status.conditions[?(@.type=="Healthy")].status`
// +kubebuilder:printcolumn:name="Drifted",type=string,JSONPath=`.status.conditions[?(@.type=="Drifted")].status`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Applied")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BaselineBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec BaselineBindingSpec `json:"spec"`
	// +optional
	Status BaselineBindingStatus `json:"status,omitempty"`
}

// BaselineBindingList is a list of BaselineBindings.
//
// +kubebuilder:object:root=true
type BaselineBindingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BaselineBinding `json:"items"`
}

// BindingName is the name of the binding of baseline to cluster. Both are DNS labels (no
// dots), so the dotted name is unambiguous.
func BindingName(baseline, cluster string) string { return baseline + "." + cluster }

// GetConditions returns the status conditions (for condition helpers).
func (b *BaselineBinding) GetConditions() []metav1.Condition { return b.Status.Conditions }

// SetConditions replaces the status conditions.
func (b *BaselineBinding) SetConditions(c []metav1.Condition) { b.Status.Conditions = c }

// GetObservedGeneration returns the generation the status was last computed for.
func (b *BaselineBinding) GetObservedGeneration() int64 { return b.Status.ObservedGeneration }

// SetObservedGeneration records the generation the status was computed for.
func (b *BaselineBinding) SetObservedGeneration(g int64) { b.Status.ObservedGeneration = g }

// FailureReasons are the Applied=False reasons that count a member as failed in a rollout
// (maxFailures): the member was given the revision and something must change before it can
// hold it. Every other Applied=False reason means "not yet" (waiting, paused, unreachable).
var FailureReasons = []string{ReasonApplyFailed, ReasonUnknownKind, ReasonInvalidSource, ReasonBaselineTooLarge}

// Done reports whether the binding's member holds revision, applied and healthy: the
// rollout's "updated", and fleetctl's "ok".
func (bb *BaselineBinding) Done(revision string) bool {
	return revision != "" && bb.Status.Revision == revision &&
		meta.IsStatusConditionTrue(bb.Status.Conditions, ConditionApplied) &&
		meta.IsStatusConditionTrue(bb.Status.Conditions, ConditionHealthy)
}

// Failed reports whether the binding's member was given revision and could not apply it
// (see FailureReasons).
func (bb *BaselineBinding) Failed(revision string) bool {
	return bb.Spec.Revision == revision && bb.ApplyFailed()
}

// ApplyFailed reports whether the last apply failed with one of FailureReasons, whatever
// the revision.
func (bb *BaselineBinding) ApplyFailed() bool {
	c := meta.FindStatusCondition(bb.Status.Conditions, ConditionApplied)
	return c != nil && c.Status == metav1.ConditionFalse && slices.Contains(FailureReasons, c.Reason)
}
