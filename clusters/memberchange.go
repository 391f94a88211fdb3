package clusters

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// The MemberCluster status heartbeat (status.lastProbeTime, refreshed once per Heartbeat
// per member) and probe details (version, node count, condition messages) are updates of
// the MemberCluster that change nothing another controller decides on. Watches of
// MemberClusters in other domains filter them out with these predicates, so that the
// heartbeat of a fleet of N members does not cost N fan-outs a minute.

// MemberStateChanged passes creations, deletions and the updates of a MemberCluster that
// change what a controller working on that member decides on: its spec (paused, the
// kubeconfig reference), labels (selectors, substitution), deletion, the status of its
// CredentialsValid, Connected and Ready conditions, and its observed credentials.
func MemberStateChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		old, okOld := e.ObjectOld.(*fleetv1alpha1.MemberCluster)
		mc, okNew := e.ObjectNew.(*fleetv1alpha1.MemberCluster)
		if !okOld || !okNew {
			return true
		}
		return memberSelectionChanged(old, mc) ||
			old.Generation != mc.Generation ||
			old.Status.ObservedCredentialHash != mc.Status.ObservedCredentialHash ||
			conditionChanged(old, mc, fleetv1alpha1.ConditionCredentialsValid) ||
			conditionChanged(old, mc, fleetv1alpha1.ConditionConnected) ||
			conditionChanged(old, mc, fleetv1alpha1.ConditionReady)
	}}
}

// MemberSelectionChanged passes creations, deletions and the updates of a MemberCluster
// that can change which members a label selector picks: its labels and its deletion.
func MemberSelectionChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		old, okOld := e.ObjectOld.(*fleetv1alpha1.MemberCluster)
		mc, okNew := e.ObjectNew.(*fleetv1alpha1.MemberCluster)
		if !okOld || !okNew {
			return true
		}
		return memberSelectionChanged(old, mc)
	}}
}

func memberSelectionChanged(old, mc client.Object) bool {
	return !labels.Equals(old.GetLabels(), mc.GetLabels()) ||
		old.GetDeletionTimestamp().IsZero() != mc.GetDeletionTimestamp().IsZero()
}

// conditionChanged compares a condition's status only: its message carries probe details
// (version, node count) and its transition time follows the status.
func conditionChanged(old, mc *fleetv1alpha1.MemberCluster, typ string) bool {
	a := meta.FindStatusCondition(old.Status.Conditions, typ)
	b := meta.FindStatusCondition(mc.Status.Conditions, typ)
	switch {
	case a == nil || b == nil:
		return (a == nil) != (b == nil)
	default:
		return a.Status != b.Status || a.Reason != b.Reason
	}
}

// registrationChanged passes creations, deletions and the updates of a MemberCluster that a
// registration source reads: its spec, labels, annotations and deletion. A source applies
// the MemberCluster it made; without this, every heartbeat would be an apply.
func registrationChanged() predicate.Predicate {
	return predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
		predicate.LabelChangedPredicate{}, MemberSelectionChanged())
}
