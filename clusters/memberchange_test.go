package clusters

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func readyMember() *fleetv1alpha1.MemberCluster {
	now := metav1.Now()
	nodes := int32(3)
	return &fleetv1alpha1.MemberCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "m1", Generation: 1, Labels: map[string]string{"env": "prod"}},
		Status: fleetv1alpha1.MemberClusterStatus{
			LastProbeTime: &now, NodeCount: &nodes, KubernetesVersion: "v1.37.2", ObservedCredentialHash: "h1",
			Conditions: []metav1.Condition{
				{Type: fleetv1alpha1.ConditionCredentialsValid, Status: metav1.ConditionTrue, Reason: fleetv1alpha1.ReasonValid},
				{Type: fleetv1alpha1.ConditionConnected, Status: metav1.ConditionTrue, Reason: fleetv1alpha1.ReasonConnected, Message: "API server answers"},
				{Type: fleetv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: fleetv1alpha1.ReasonHealthy, Message: "connected; 3 nodes"},
			},
		},
	}
}

// TestMemberChangePredicates: a status heartbeat (probe time, node count, messages) passes
// neither predicate; what bindings read passes MemberStateChanged; only labels and deletion
// pass MemberSelectionChanged.
func TestMemberChangePredicates(t *testing.T) {
	cases := []struct {
		name          string
		change        func(mc *fleetv1alpha1.MemberCluster)
		wantState     bool
		wantSelection bool
	}{
		{"heartbeat", func(mc *fleetv1alpha1.MemberCluster) {
			later := metav1.NewTime(mc.Status.LastProbeTime.Add(time.Minute))
			mc.Status.LastProbeTime = &later
			mc.ResourceVersion = "2"
		}, false, false},
		{"node count and version in the Ready message", func(mc *fleetv1alpha1.MemberCluster) {
			n := int32(4)
			mc.Status.NodeCount = &n
			mc.Status.KubernetesVersion = "v1.37.3"
			mc.Status.Conditions[2].Message = "connected; 4 nodes"
		}, false, false},
		{"Ready turns False", func(mc *fleetv1alpha1.MemberCluster) {
			mc.Status.Conditions[2].Status = metav1.ConditionFalse
			mc.Status.Conditions[2].Reason = fleetv1alpha1.ReasonNotConnected
		}, true, false},
		{"Connected reason changes", func(mc *fleetv1alpha1.MemberCluster) {
			mc.Status.Conditions[1].Reason = fleetv1alpha1.ReasonConnecting
		}, true, false},
		{"credentials changed", func(mc *fleetv1alpha1.MemberCluster) { mc.Status.ObservedCredentialHash = "h2" }, true, false},
		{"paused", func(mc *fleetv1alpha1.MemberCluster) { mc.Spec.Paused = true; mc.Generation = 2 }, true, false},
		{"labels", func(mc *fleetv1alpha1.MemberCluster) { mc.Labels["env"] = "dev" }, true, true},
		{"deletion", func(mc *fleetv1alpha1.MemberCluster) {
			now := metav1.Now()
			mc.DeletionTimestamp = &now
		}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := readyMember()
			mc := old.DeepCopy()
			tc.change(mc)
			e := event.UpdateEvent{ObjectOld: old, ObjectNew: mc}
			if got := MemberStateChanged().Update(e); got != tc.wantState {
				t.Errorf("MemberStateChanged = %v, want %v", got, tc.wantState)
			}
			if got := MemberSelectionChanged().Update(e); got != tc.wantSelection {
				t.Errorf("MemberSelectionChanged = %v, want %v", got, tc.wantSelection)
			}
		})
	}
}
