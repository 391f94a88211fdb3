package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Where one Baseline stands in one member, as `fleetctl status` and `fleetctl rollout status`
// show it. Upper case is for what needs a person.
const (
	// stateOK: the member holds the Baseline's revision, applied and healthy.
	stateOK = "ok"
	// stateApplying: the revision was released to the member and is not applied and healthy yet.
	stateApplying = "applying"
	// stateWaiting: the rollout has not released the Baseline's revision to the member (or no
	// binding exists yet).
	stateWaiting = "waiting"
	// statePaused: the Baseline or the MemberCluster is paused; nothing is written.
	statePaused = "paused"
	// stateFailed: the last apply failed (rejected object, unknown kind, invalid source).
	stateFailed = "FAILED"
	// stateDrifted: an object differs from the Baseline (policy Inform reports, never corrects).
	stateDrifted = "DRIFTED"
	// stateConflict: an object is owned by someone else and was left untouched.
	stateConflict = "CONFLICT"
	// stateUnreachable: the hub is not connected to the member.
	stateUnreachable = "unreachable"
	// stateNotSelected: the Baseline does not select the member.
	stateNotSelected = "-"
)

// bindingState says where the Baseline at revision stands in the binding's member, causes
// first: an unreachable member explains everything else about it, and a failure or a
// conflict matters more than the rollout's progress.
func bindingState(revision string, bb *fleetv1alpha1.BaselineBinding) string {
	conds := bb.Status.Conditions
	applied := meta.FindStatusCondition(conds, fleetv1alpha1.ConditionApplied)
	switch {
	case applied != nil && applied.Reason == fleetv1alpha1.ReasonClusterUnreachable:
		return stateUnreachable
	case bb.ApplyFailed():
		return stateFailed
	case meta.IsStatusConditionTrue(conds, fleetv1alpha1.ConditionConflict):
		return stateConflict
	case meta.IsStatusConditionTrue(conds, fleetv1alpha1.ConditionDrifted):
		return stateDrifted
	case applied != nil && applied.Reason == fleetv1alpha1.ReasonPaused:
		return statePaused
	case revision == "" || bb.Spec.Revision != revision ||
		(applied != nil && applied.Reason == fleetv1alpha1.ReasonWaitingForRollout):
		return stateWaiting
	case bb.Done(revision):
		return stateOK
	default:
		return stateApplying
	}
}

// selects reports whether b's clusterSelector matches mc, as the Baseline controller
// decides it: a member being deleted is no longer selected.
func selects(b *fleetv1alpha1.Baseline, mc *fleetv1alpha1.MemberCluster) (bool, error) {
	sel, err := metav1.LabelSelectorAsSelector(&b.Spec.ClusterSelector)
	if err != nil {
		return false, fmt.Errorf("baseline %q: spec.clusterSelector: %w", b.Name, err)
	}
	return mc.DeletionTimestamp.IsZero() && sel.Matches(labels.Set(mc.Labels)), nil
}

// selectedMembers lists the MemberClusters b selects, by name.
func selectedMembers(ctx context.Context, hub client.Client, b *fleetv1alpha1.Baseline) ([]fleetv1alpha1.MemberCluster, error) {
	var list fleetv1alpha1.MemberClusterList
	if err := hub.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list memberclusters: %w", err)
	}
	var out []fleetv1alpha1.MemberCluster
	for _, mc := range list.Items {
		ok, err := selects(b, &mc)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, mc)
		}
	}
	slices.SortFunc(out, func(a, b fleetv1alpha1.MemberCluster) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// bindingsOf returns b's BaselineBindings by cluster name.
func bindingsOf(ctx context.Context, hub client.Client, baseline string) (map[string]*fleetv1alpha1.BaselineBinding, error) {
	var list fleetv1alpha1.BaselineBindingList
	if err := hub.List(ctx, &list, client.MatchingLabels{fleetv1alpha1.LabelBaseline: baseline}); err != nil {
		return nil, fmt.Errorf("list baselinebindings of baseline %q: %w", baseline, err)
	}
	out := make(map[string]*fleetv1alpha1.BaselineBinding, len(list.Items))
	for i := range list.Items {
		bb := &list.Items[i]
		if bb.Spec.BaselineName == baseline {
			out[bb.Spec.ClusterName] = bb
		}
	}
	return out, nil
}

// getBaseline reads one Baseline from the hub, with errors a person can act on.
func getBaseline(ctx context.Context, hub client.Client, name string) (*fleetv1alpha1.Baseline, error) {
	b := &fleetv1alpha1.Baseline{}
	switch err := hub.Get(ctx, client.ObjectKey{Name: name}, b); {
	case meta.IsNoMatchError(err):
		return nil, fmt.Errorf("the Flotilla API %s is not installed on the hub", fleetv1alpha1.GroupVersion)
	case client.IgnoreNotFound(err) == nil && err != nil:
		return nil, fmt.Errorf("baseline %q not found on the hub (kubectl get baselines lists them)", name)
	case err != nil:
		return nil, fmt.Errorf("get baseline %q: %w", name, err)
	}
	return b, nil
}

// conditionText is "Reason: message" on one line, cut to limit runes (0: no limit).
func conditionText(c *metav1.Condition, limit int) string {
	text := c.Reason
	if msg := strings.Join(strings.Fields(c.Message), " "); msg != "" {
		text += ": " + msg
	}
	if r := []rune(text); limit > 0 && len(r) > limit {
		text = string(r[:limit-1]) + "…"
	}
	return text
}
