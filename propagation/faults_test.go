package propagation

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Probe settings of the harness (startController): interval, timeout and threshold.
const (
	probeInterval  = 500 * time.Millisecond
	probeTimeout   = time.Second
	probeThreshold = 2
)

func configMapDoc(name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: default\ndata:\n  v: %q\n", name, value)
}

// setBaselineValue changes the value of the Baseline's single ConfigMap.
func (e *env) setBaselineValue(t *testing.T, name, cm, value string) {
	t.Helper()
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		b := &fleetv1alpha1.Baseline{}
		if err := e.hub.Get(context.Background(), types.NamespacedName{Name: name}, b); err != nil {
			return err
		}
		b.Spec.Resources[0].Inline = configMapDoc(cm, value)
		return e.hub.Update(context.Background(), b)
	}))
}

// waitValue waits until the ConfigMap in cluster holds value and returns when it was seen.
func (e *env) waitValue(t *testing.T, cluster, cm, value string, timeout time.Duration) time.Time {
	t.Helper()
	fleettest.EventuallyEvery(t, 10*time.Millisecond, timeout, fmt.Sprintf("ConfigMap %s=%s in %s", cm, value, cluster), func() error {
		got := &corev1.ConfigMap{}
		if err := e.members[cluster].Get(context.Background(), types.NamespacedName{Namespace: "default", Name: cm}, got); err != nil {
			return err
		}
		if got.Data["v"] != value {
			return fmt.Errorf("v=%q", got.Data["v"])
		}
		return nil
	})
	return time.Now()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (e *env) setPaused(t *testing.T, cluster string, paused bool) {
	t.Helper()
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mc := &fleetv1alpha1.MemberCluster{}
		if err := e.hub.Get(context.Background(), types.NamespacedName{Name: cluster}, mc); err != nil {
			return err
		}
		mc.Spec.Paused = paused
		return e.hub.Update(context.Background(), mc)
	}))
}

func (e *env) waitReady(t *testing.T, cluster string, status metav1.ConditionStatus, timeout time.Duration) time.Time {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("member %s Ready=%s", cluster, status), func() error {
		mc := &fleetv1alpha1.MemberCluster{}
		if err := e.hub.Get(context.Background(), types.NamespacedName{Name: cluster}, mc); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionReady); c == nil || c.Status != status {
			return fmt.Errorf("conditions %v", mc.Status.Conditions)
		}
		return nil
	})
	return time.Now()
}

// A member whose API server stops answering (SIGSTOP: connections stay open, nothing
// answers) after it connected delays no other member's Baseline apply by more than a
// second, goes NotReady within interval × threshold (+ one timeout), and is Ready and
// caught up within about one probe interval of answering again.
func TestFrozenMemberDelaysNoOther(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	must(t, e.hub.Create(ctx, baseline("fleet-config", configMapDoc("settings", "v1"))))
	for _, m := range []string{"member-1", "member-2", "member-3"} {
		e.waitValue(t, m, "settings", "v1", 60*time.Second)
	}

	// The undisturbed latency of a change, for comparison.
	start := time.Now()
	e.setBaselineValue(t, "fleet-config", "settings", "v2")
	healthy := later(e.waitValue(t, "member-1", "settings", "v2", 30*time.Second), e.waitValue(t, "member-2", "settings", "v2", 30*time.Second)).Sub(start)
	e.waitValue(t, "member-3", "settings", "v2", 30*time.Second)

	frozenAt := time.Now()
	member3 := e.fleet.Member("member-3")
	fleettest.Must(t, member3.FreezeAPIServer()) // the fleet thaws it at teardown if the test fails first
	// At once, before the hub can notice: member-3's calls hang, the others' must not wait.
	start = time.Now()
	e.setBaselineValue(t, "fleet-config", "settings", "v3")
	frozen := later(e.waitValue(t, "member-1", "settings", "v3", 30*time.Second), e.waitValue(t, "member-2", "settings", "v3", 30*time.Second)).Sub(start)
	t.Logf("Baseline change reached the healthy members in %s undisturbed, %s with member-3 frozen", healthy, frozen)
	if frozen > healthy+time.Second {
		t.Errorf("with member-3 frozen the healthy members got the change after %s, %s later than undisturbed (%s): want at most 1s later",
			frozen, frozen-healthy, healthy)
	}

	detected := e.waitReady(t, "member-3", metav1.ConditionFalse, 30*time.Second).Sub(frozenAt)
	bound := probeInterval*probeThreshold + probeTimeout
	t.Logf("frozen member detected NotReady after %s (bound: interval × threshold + timeout = %s)", detected, bound)
	if detected > bound+2*time.Second {
		t.Errorf("frozen member went NotReady after %s, want within %s (+2s slack)", detected, bound)
	}

	fleettest.Must(t, member3.ThawAPIServer())
	thawedAt := time.Now()
	back := e.waitReady(t, "member-3", metav1.ConditionTrue, 30*time.Second).Sub(thawedAt)
	caughtUp := e.waitValue(t, "member-3", "settings", "v3", 30*time.Second).Sub(thawedAt)
	t.Logf("after thaw: Ready in %s, caught up in %s (probe interval %s)", back, caughtUp, probeInterval)
	if back > probeInterval+2*time.Second {
		t.Errorf("thawed member Ready after %s, want within one probe interval (%s, +2s slack)", back, probeInterval)
	}
}

// A paused member gets no Baseline writes while paused, and after unpausing gets exactly
// the writes it missed (no duplicates).
func TestPausedMemberGetsNoWritesThenCatchesUp(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	must(t, e.hub.Create(ctx, baseline("paused-config", configMapDoc("paused", "v1"))))
	e.waitValue(t, "member-2", "paused", "v1", 60*time.Second)

	e.setPaused(t, "member-2", true)
	e.waitBinding(t, "paused-config", "member-2", fleetv1alpha1.ConditionApplied, metav1.ConditionTrue, fleetv1alpha1.ReasonPaused)
	written := testutil.ToFloat64(objectsWritten.WithLabelValues("paused-config", "member-2"))
	e.setBaselineValue(t, "paused-config", "paused", "v2")
	e.waitValue(t, "member-1", "paused", "v2", 30*time.Second)
	// The binding of the paused member sees the new revision (and says it is paused).
	eventually(t, 30*time.Second, "member-2's binding released the new revision while paused", func() error {
		bb := e.waitBinding(t, "paused-config", "member-2", fleetv1alpha1.ConditionApplied, metav1.ConditionTrue, fleetv1alpha1.ReasonPaused)
		b := &fleetv1alpha1.Baseline{}
		must(t, e.hub.Get(ctx, types.NamespacedName{Name: "paused-config"}, b))
		if bb.Spec.Revision != b.Status.Revision {
			return fmt.Errorf("binding at %s, Baseline at %s", bb.Spec.Revision, b.Status.Revision)
		}
		return nil
	})
	got := &corev1.ConfigMap{}
	must(t, e.members["member-2"].Get(ctx, types.NamespacedName{Namespace: "default", Name: "paused"}, got))
	if got.Data["v"] != "v1" || testutil.ToFloat64(objectsWritten.WithLabelValues("paused-config", "member-2")) != written {
		t.Errorf("paused member was written to: v=%q, writes %v -> %v", got.Data["v"], written, testutil.ToFloat64(objectsWritten.WithLabelValues("paused-config", "member-2")))
	}

	e.setPaused(t, "member-2", false)
	e.waitValue(t, "member-2", "paused", "v2", 30*time.Second)
	e.waitBinding(t, "paused-config", "member-2", fleetv1alpha1.ConditionApplied, metav1.ConditionTrue, fleetv1alpha1.ReasonApplySucceeded)
	if n := testutil.ToFloat64(objectsWritten.WithLabelValues("paused-config", "member-2")) - written; n != 1 {
		t.Errorf("catching up after unpause wrote %v objects, want exactly 1 (the changed ConfigMap)", n)
	}
}

// Unregistering a member removes what its Baselines applied per deletionPolicy before the
// MemberCluster goes; an unreachable member leaves after the bounded wait, with an event
// saying what was left behind.
func TestUnregisteredMemberIsCleanedUp(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	del := baseline("removed", configMapDoc("removed", "x"))
	orphan := baseline("kept", configMapDoc("kept", "x"))
	orphan.Spec.DeletionPolicy = fleetv1alpha1.DeletionOrphan
	must(t, e.hub.Create(ctx, del))
	must(t, e.hub.Create(ctx, orphan))
	for _, m := range []string{"member-1", "member-2"} {
		e.waitValue(t, m, "removed", "x", 60*time.Second)
		e.waitValue(t, m, "kept", "x", 60*time.Second)
	}

	// The registration source deletes the MemberCluster when its Secret goes.
	must(t, e.hub.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: "member-2"}}))
	eventually(t, 30*time.Second, "MemberCluster member-2 gone after its clean-up", func() error {
		return gone(e.hub.Get(ctx, types.NamespacedName{Name: "member-2"}, &fleetv1alpha1.MemberCluster{}))
	})
	// Checked after the MemberCluster is gone: the clean-up happened before, not after.
	if err := e.members["member-2"].Get(ctx, types.NamespacedName{Namespace: "default", Name: "removed"}, &corev1.ConfigMap{}); gone(err) != nil {
		t.Errorf("deletionPolicy Delete: the object should be removed from the member before it leaves: %v", err)
	}
	kept := &corev1.ConfigMap{}
	must(t, e.members["member-2"].Get(ctx, types.NamespacedName{Namespace: "default", Name: "kept"}, kept))
	if kept.Labels[fleetv1alpha1.LabelBaseline] != "" {
		t.Errorf("deletionPolicy Orphan: the object should stay without ownership labels, has %v", kept.Labels)
	}

	// An unreachable member: leaves after the cleanup timeout, saying what it left behind.
	down := e.fleet.Member("member-1")
	must(t, down.StopAPIServer())
	e.waitReady(t, "member-1", metav1.ConditionFalse, 30*time.Second)
	deleted := time.Now()
	must(t, e.hub.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: "member-1"}}))
	eventually(t, memberCleanupTimeout+30*time.Second, "unreachable MemberCluster member-1 gone after the cleanup timeout", func() error {
		return gone(e.hub.Get(ctx, types.NamespacedName{Name: "member-1"}, &fleetv1alpha1.MemberCluster{}))
	})
	// (DeletionTimestamp has whole seconds: up to one second less.)
	if took := time.Since(deleted); took < memberCleanupTimeout-time.Second {
		t.Errorf("unreachable member left after %s, before the cleanup timeout %s: nothing could have been cleaned", took, memberCleanupTimeout)
	}
	eventually(t, 30*time.Second, "a CleanupIncomplete event naming the Baselines left behind", func() error {
		events := &corev1.EventList{}
		if err := e.hub.List(ctx, events); err != nil {
			return err
		}
		for _, ev := range events.Items {
			if ev.InvolvedObject.Name == "member-1" && ev.Reason == fleetv1alpha1.ReasonCleanupIncomplete {
				if !strings.Contains(ev.Message, "removed (1 objects)") || !strings.Contains(ev.Message, "kept (1 objects)") {
					return fmt.Errorf("event does not name both Baselines: %s", ev.Message)
				}
				return nil
			}
		}
		return fmt.Errorf("no CleanupIncomplete event for member-1 among %d events", len(events.Items))
	})
}
