package propagation

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func TestPlanRollout(t *testing.T) {
	two := intstr.FromInt32(2)
	half := intstr.FromString("50%")
	canary := &metav1.LabelSelector{MatchLabels: map[string]string{"canary": "true"}}
	fresh := func(names ...string) []memberRollout {
		var ms []memberRollout
		for _, n := range names {
			ms = append(ms, memberRollout{Cluster: n})
		}
		return ms
	}

	tests := []struct {
		name         string
		members      []memberRollout
		strategy     *fleetv1alpha1.RolloutStrategy
		paused       bool
		wantRelease  []string
		wantStalled  bool
		wantFailures int
	}{
		{name: "no strategy releases everyone", members: fresh("c", "a", "b"), wantRelease: []string{"a", "b", "c"}},
		{name: "maxConcurrent limits the first batch", members: fresh("a", "b", "c", "d"),
			strategy: &fleetv1alpha1.RolloutStrategy{MaxConcurrent: &two}, wantRelease: []string{"a", "b"}},
		{name: "in-flight members use up the batch",
			members:  []memberRollout{{Cluster: "a", Released: true}, {Cluster: "b", Released: true, Done: true}, {Cluster: "c"}, {Cluster: "d"}},
			strategy: &fleetv1alpha1.RolloutStrategy{MaxConcurrent: &two}, wantRelease: []string{"c"}},
		{name: "percentage rounds up", members: fresh("a", "b", "c"),
			strategy: &fleetv1alpha1.RolloutStrategy{MaxConcurrent: &half}, wantRelease: []string{"a", "b"}},
		{name: "canaries go first",
			members:  []memberRollout{{Cluster: "a"}, {Cluster: "z", Canary: true}, {Cluster: "b"}},
			strategy: &fleetv1alpha1.RolloutStrategy{Canary: canary}, wantRelease: []string{"z"}},
		{name: "others wait while a canary is in flight",
			members:  []memberRollout{{Cluster: "a"}, {Cluster: "z", Canary: true, Released: true}},
			strategy: &fleetv1alpha1.RolloutStrategy{Canary: canary}},
		{name: "others follow once canaries are done",
			members:  []memberRollout{{Cluster: "a"}, {Cluster: "b"}, {Cluster: "z", Canary: true, Released: true, Done: true}},
			strategy: &fleetv1alpha1.RolloutStrategy{Canary: canary, MaxConcurrent: &two}, wantRelease: []string{"a", "b"}},
		{name: "a failure within maxFailures does not stop the rollout",
			members:  []memberRollout{{Cluster: "a", Released: true, Failed: true}, {Cluster: "b"}},
			strategy: &fleetv1alpha1.RolloutStrategy{MaxFailures: ptr.To[int32](1), MaxConcurrent: &two}, wantRelease: []string{"b"}, wantFailures: 1},
		{name: "more than maxFailures failures stall the rollout",
			members:     []memberRollout{{Cluster: "a", Released: true, Failed: true}, {Cluster: "b"}},
			strategy:    &fleetv1alpha1.RolloutStrategy{MaxFailures: ptr.To[int32](0)},
			wantStalled: true, wantFailures: 1},
		{name: "paused releases nothing", members: fresh("a"), paused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planRollout(tt.members, tt.strategy, tt.paused)
			if diff := cmp.Diff(tt.wantRelease, got.Release); diff != "" {
				t.Errorf("released (-want +got):\n%s", diff)
			}
			if got.Stalled != tt.wantStalled || got.Failures != tt.wantFailures {
				t.Errorf("stalled=%v failures=%d, want stalled=%v failures=%d", got.Stalled, got.Failures, tt.wantStalled, tt.wantFailures)
			}
		})
	}
}
