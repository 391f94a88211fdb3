package scale

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// fanOutControllers are the controllers a member's status heartbeat must not wake.
var fanOutControllers = []string{"baseline", "baselinebinding", "exportedservice", "secretsource", "tokenrenewal"}

// TestHeartbeatEnqueuesNothing: with a Baseline applied to two real members and Services
// exported from each into the other, MemberCluster status heartbeats (here once a second
// per member) are followed by no Baseline, binding, export, registration or token reconcile. Reconciles are
// counted by controller-runtime's reconcile counter, and heartbeats by watching
// status.lastProbeTime move on the hub.
func TestHeartbeatEnqueuesNothing(t *testing.T) {
	ctx := context.Background()
	fleet, err := localfleet.Start(ctx, localfleet.Options{Members: 2, NoControllerManager: true, Lean: true})
	must(t, err)
	defer func() { must(t, fleet.Stop()) }()
	members := map[string]client.Client{}
	for _, m := range fleet.Members {
		members[m.Name] = fastClient(t, m.Config)
	}
	names := keys(members)
	hub, stop := runHub(t, fleet.Hub.Config, hubOptions{Heartbeat: time.Second, ProbeInterval: time.Second})
	defer stop()
	must(t, client.IgnoreAlreadyExists(hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hubNS}})))
	registerMembers(t, hub, fleet, members)
	createExports(t, hub, members, names)
	bl := &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: "scale"}}
	bl.Spec.Resources = []fleetv1alpha1.ResourceSource{{Inline: heartbeatWorkload}}
	must(t, hub.Create(ctx, bl))
	waitApplied(t, hub, len(names), "")

	// Converging costs reconciles (status writes bring their own objects back once); it is
	// over when two heartbeats of every member pass without any.
	fleettest.EventuallyEvery(t, time.Second, 3*time.Minute, "no reconcile across two heartbeats of every member", func() error {
		before := reconcileCounts(t)
		waitHeartbeats(t, hub, names, 2)
		if after := reconcileCounts(t); !maps.Equal(before, after) {
			return fmt.Errorf("reconciles went from %v to %v", before, after)
		}
		return nil
	})

	before, heartbeatsBefore := reconcileCounts(t), fleettest.Reconciles(t, "membercluster")
	waitHeartbeats(t, hub, names, 5)
	after, heartbeatsAfter := reconcileCounts(t), fleettest.Reconciles(t, "membercluster")
	if heartbeatsAfter <= heartbeatsBefore {
		t.Fatalf("the MemberCluster controller did not reconcile while lastProbeTime moved (%v reconciles)", heartbeatsAfter)
	}
	for _, c := range fanOutControllers {
		if d := after[c] - before[c]; d != 0 {
			t.Errorf("controller %s: %v reconciles during 5 status heartbeats of each of %d members, want none", c, d, len(names))
		}
	}
}

// heartbeatWorkload is a small Baseline: one namespace and one ConfigMap in it.
const heartbeatWorkload = `apiVersion: v1
kind: Namespace
metadata:
  name: heartbeat
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: heartbeat
data:
  a: "1"
`

// reconcileCounts is how many reconciles each of the fan-out controllers has finished.
func reconcileCounts(tb testing.TB) map[string]float64 {
	tb.Helper()
	out := map[string]float64{}
	for _, c := range fanOutControllers {
		out[c] = fleettest.Reconciles(tb, c)
	}
	return out
}

// waitHeartbeats waits until every member's status.lastProbeTime has moved k times from
// now on, as seen by polling the hub.
func waitHeartbeats(tb testing.TB, hub client.Client, names []string, k int) {
	tb.Helper()
	ctx := context.Background()
	last := map[string]string{}
	moved := map[string]int{}
	fleettest.EventuallyEvery(tb, 200*time.Millisecond, 2*time.Minute, fmt.Sprintf("%d heartbeats of every member", k), func() error {
		for _, name := range names {
			mc := &fleetv1alpha1.MemberCluster{}
			if err := hub.Get(ctx, client.ObjectKey{Name: name}, mc); err != nil {
				return err
			}
			probe := ""
			if mc.Status.LastProbeTime != nil {
				probe = mc.Status.LastProbeTime.UTC().Format(time.RFC3339Nano)
			}
			if prev, seen := last[name]; seen && prev != probe {
				moved[name]++
			}
			last[name] = probe
		}
		for _, name := range names {
			if moved[name] < k {
				return fmt.Errorf("member %s: %d of %d heartbeats", name, moved[name], k)
			}
		}
		return nil
	})
}
