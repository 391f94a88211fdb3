package propagation

import (
	"context"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// TestBaselineObserved: a Baseline's bindings are reconciled for a spec the Baseline
// controller has taken in and that kept the revision, or paused or unpaused the Baseline;
// not for the spec change itself, which the Baseline controller has not rendered yet, nor
// for a new revision, which reaches the bindings by their release.
func TestBaselineObserved(t *testing.T) {
	baseline := func(generation, observed int64, revision string, paused, reportedPaused bool) *fleetv1alpha1.Baseline {
		b := &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: "b", Generation: generation}}
		b.Spec.Paused = paused
		b.Status.ObservedGeneration, b.Status.Revision = observed, revision
		if reportedPaused {
			b.Status.Conditions = []metav1.Condition{{Type: fleetv1alpha1.ConditionProgressing, Status: metav1.ConditionFalse, Reason: fleetv1alpha1.ReasonPaused}}
		}
		return b
	}
	for _, tc := range []struct {
		name     string
		old, new *fleetv1alpha1.Baseline
		want     bool
	}{
		{"spec changed, not rendered yet", baseline(1, 1, "r1", false, false), baseline(2, 1, "r1", false, false), false},
		{"new revision rendered and released", baseline(2, 1, "r1", false, false), baseline(2, 2, "r2", false, false), false},
		{"policy changed, same revision", baseline(2, 1, "r1", false, false), baseline(2, 2, "r1", false, false), true},
		{"paused with a new revision", baseline(2, 1, "r1", true, false), baseline(2, 2, "r2", true, false), true},
		{"unpaused with a new revision", baseline(2, 1, "r1", false, true), baseline(2, 2, "r2", false, false), true},
		{"status of the bindings summed up", baseline(2, 2, "r2", false, false), baseline(2, 2, "r2", false, false), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := baselineObserved().Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.new}); got != tc.want {
				t.Errorf("update passed: %t, want %t", got, tc.want)
			}
		})
	}
	p := baselineObserved()
	if p.Create(event.CreateEvent{Object: baseline(1, 0, "", false, false)}) {
		t.Error("a new Baseline passed: it has no bindings yet")
	}
	if !p.Delete(event.DeleteEvent{Object: baseline(1, 1, "r1", false, false)}) {
		t.Error("a deleted Baseline did not pass")
	}
}

// TestNamespaceEventsReachOnlyBindingsThatNeedThem: a member's Namespace events reconcile
// the bindings whose Baseline fans out into namespaces and those not applied (their objects
// may wait for a Namespace), not the others.
func TestNamespaceEventsReachOnlyBindingsThatNeedThem(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	fanOut := &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: "fan-out"},
		Spec: fleetv1alpha1.BaselineSpec{PerNamespace: &fleetv1alpha1.PerNamespace{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"workloads": "true"}},
			Resources:         []fleetv1alpha1.ResourceSource{{Inline: configMapIn("", "per-namespace")}},
		}}}
	must(t, e.hub.Create(ctx, fanOut))
	must(t, e.hub.Create(ctx, baseline("plain", configMapIn("default", "plain"))))
	must(t, e.hub.Create(ctx, baseline("waiting", configMapIn("not-there-yet", "waiting"))))
	e.waitBinding(t, "fan-out", "member-1", fleetv1alpha1.ConditionApplied, metav1.ConditionTrue, fleetv1alpha1.ReasonApplySucceeded)
	e.waitBinding(t, "plain", "member-1", fleetv1alpha1.ConditionApplied, metav1.ConditionTrue, fleetv1alpha1.ReasonApplySucceeded)
	e.waitBinding(t, "waiting", "member-1", fleetv1alpha1.ConditionApplied, metav1.ConditionFalse, fleetv1alpha1.ReasonApplyFailed)

	var got []string
	for _, req := range bindingsNeedingNamespaces(ctx, e.hub, "member-1") {
		got = append(got, req.Name)
	}
	slices.Sort(got)
	want := []string{fleetv1alpha1.BindingName("fan-out", "member-1"), fleetv1alpha1.BindingName("waiting", "member-1")}
	if !slices.Equal(got, want) {
		t.Errorf("a Namespace event reconciles %v, want %v", got, want)
	}
}

func configMapIn(namespace, name string) string {
	y := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n"
	if namespace != "" {
		y += "  namespace: " + namespace + "\n"
	}
	return y + "data:\n  k: v\n"
}
