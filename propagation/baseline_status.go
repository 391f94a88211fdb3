package propagation

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/status"
)

// summarizeStatus computes the Baseline's status once, from what the bindings report. It
// runs after the patcher cleared Stalled and Reconciling, and sets them again while they hold.
func summarizeStatus(b *fleetv1alpha1.Baseline, revision string, members map[string]*fleetv1alpha1.MemberCluster,
	bindings map[string]*fleetv1alpha1.BaselineBinding, plan rolloutPlan) {
	s := &b.Status
	s.Revision = revision
	s.Selected = int32(len(members))
	s.Applied, s.Healthy, s.Failed, s.Unreachable, s.Drifted, s.Conflicted = 0, 0, 0, 0, 0, 0
	done := 0
	for _, bb := range bindings {
		conds := bb.Status.Conditions
		applied := meta.FindStatusCondition(conds, fleetv1alpha1.ConditionApplied)
		if bb.Status.Revision == revision && applied != nil && applied.Status == metav1.ConditionTrue {
			s.Applied++
		}
		if bb.Status.Revision == revision && meta.IsStatusConditionTrue(conds, fleetv1alpha1.ConditionHealthy) {
			s.Healthy++
		}
		if bb.Failed(revision) {
			s.Failed++
		}
		if applied != nil && applied.Reason == fleetv1alpha1.ReasonClusterUnreachable {
			s.Unreachable++
		}
		if meta.IsStatusConditionTrue(conds, fleetv1alpha1.ConditionDrifted) {
			s.Drifted++
		}
		if meta.IsStatusConditionTrue(conds, fleetv1alpha1.ConditionConflict) {
			s.Conflicted++
		}
		if bb.Done(revision) {
			done++
		}
	}

	switch {
	case plan.Stalled:
		// Not a user error of this reconcile (nothing in the Baseline is invalid): the
		// failing members must be fixed, and their bindings bring the Baseline back.
		msg := fmt.Sprintf("rollout of revision %s stopped: %d members failed (maxFailures %d); fix the failing objects (kubectl get baselinebindings -l %s=%s)",
			revision, plan.Failures, maxFailuresOf(b), fleetv1alpha1.LabelBaseline, b.Name)
		status.Set(b, fleetv1alpha1.ConditionStalled, metav1.ConditionTrue, fleetv1alpha1.ReasonTooManyFailures, msg)
		status.Set(b, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonTooManyFailures, msg)
		status.Set(b, fleetv1alpha1.ConditionProgressing, metav1.ConditionFalse, fleetv1alpha1.ReasonTooManyFailures, "stalled: "+msg)
		return
	case done == len(members):
		status.Set(b, fleetv1alpha1.ConditionProgressing, metav1.ConditionFalse, fleetv1alpha1.ReasonRolloutComplete,
			fmt.Sprintf("revision %s is applied and healthy in all %d selected members", revision, len(members)))
	case b.Spec.Paused:
		status.Set(b, fleetv1alpha1.ConditionProgressing, metav1.ConditionFalse, fleetv1alpha1.ReasonPaused,
			fmt.Sprintf("paused with %d of %d members on revision %s", done, len(members), revision))
	default:
		msg := fmt.Sprintf("%d of %d members applied and healthy on revision %s; %d waiting for the rollout", done, len(members), revision, plan.Waiting)
		status.Set(b, fleetv1alpha1.ConditionProgressing, metav1.ConditionTrue, fleetv1alpha1.ReasonRollingOut, msg)
		// kstatus (Flux, Argo CD) reads Reconciling, not Progressing: InProgress.
		status.Set(b, fleetv1alpha1.ConditionReconciling, metav1.ConditionTrue, fleetv1alpha1.ReasonRollingOut, msg)
	}
	switch {
	case done == len(members) && s.Conflicted == 0 && s.Drifted == 0:
		status.Set(b, fleetv1alpha1.ConditionReady, metav1.ConditionTrue, fleetv1alpha1.ReasonRolloutComplete,
			fmt.Sprintf("all %d selected members hold revision %s", len(members), revision))
	case s.Conflicted > 0:
		status.Set(b, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonOwnedByOther,
			fmt.Sprintf("%d members have objects owned by someone else; see their BaselineBindings' Conflict condition", s.Conflicted))
	case s.Drifted > 0:
		status.Set(b, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonDriftDetected,
			fmt.Sprintf("%d members differ from the Baseline", s.Drifted))
	default:
		status.Set(b, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonProgressing,
			fmt.Sprintf("%d of %d members applied and healthy", done, len(members)))
	}
}

func maxFailuresOf(b *fleetv1alpha1.Baseline) int32 {
	if b.Spec.Rollout == nil || b.Spec.Rollout.MaxFailures == nil {
		return 0
	}
	return *b.Spec.Rollout.MaxFailures
}
