package clusters

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// TestThrottleHeartbeat: lastProbeTime is written again once a heartbeat has passed, give or
// take one probe interval (probe times come in its steps, and the heartbeat's reconcile
// runs one heartbeat after the last), and kept while younger.
func TestThrottleHeartbeat(t *testing.T) {
	r := &MemberClusterReconciler{Heartbeat: 5 * time.Minute,
		Connections: NewConnections(runtime.NewScheme(), Options{ProbeInterval: 10 * time.Second})}
	written := metav1.NewTime(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	tests := []struct {
		name      string
		probed    time.Duration // after the written probe time
		wantWrite bool
	}{
		{"the next probe", 10 * time.Second, false},
		{"a minute later", time.Minute, false},
		{"more than an interval short of the heartbeat", 5*time.Minute - 11*time.Second, false},
		{"one interval short of the heartbeat (the heartbeat's reconcile)", 5*time.Minute - 8*time.Second, true},
		{"a heartbeat later", 5 * time.Minute, true},
		{"long after", time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probed := metav1.NewTime(written.Add(tt.probed))
			mc := &fleetv1alpha1.MemberCluster{}
			mc.Status.LastProbeTime = &probed
			r.throttleHeartbeat(mc, &written)
			want := written
			if tt.wantWrite {
				want = probed
			}
			if diff := cmp.Diff(want.UTC(), mc.Status.LastProbeTime.UTC()); diff != "" {
				t.Errorf("lastProbeTime (-want +got):\n%s", diff)
			}
		})
	}
}
