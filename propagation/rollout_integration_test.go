package propagation

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// A ResourceQuota whose quantity comes from a cluster label: the member labelled with a
// value that is not a quantity rejects it, which is how one member fails a rollout here.
const quotaYAML = `apiVersion: v1
kind: ResourceQuota
metadata:
  name: pods
  namespace: default
spec:
  hard:
    pods: "${CLUSTER_LABEL_PODS}"
`

func TestRolloutStopsAtMaxFailures(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	// member-1 is the canary and rejects the quota; the others would accept it.
	setClusterLabels(t, e, "member-1", map[string]string{"pods": "lots", "canary": "true"})
	setClusterLabels(t, e, "member-2", map[string]string{"pods": "10"})
	setClusterLabels(t, e, "member-3", map[string]string{"pods": "10"})

	one := intstr.FromInt32(1)
	b := baseline("quota", quotaYAML)
	b.Spec.Substitute = &fleetv1alpha1.Substitution{}
	b.Spec.Rollout = &fleetv1alpha1.RolloutStrategy{
		MaxConcurrent: &one,
		MaxFailures:   ptr.To[int32](0),
		Canary:        &metav1.LabelSelector{MatchLabels: map[string]string{"canary": "true"}},
	}
	must(t, e.hub.Create(ctx, b))

	bb := e.waitBinding(t, "quota", "member-1", fleetv1alpha1.ConditionApplied, metav1.ConditionFalse, fleetv1alpha1.ReasonApplyFailed)
	if c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionApplied); !strings.Contains(c.Message, "ResourceQuota/default/pods") ||
		!strings.Contains(c.Message, `cluster "member-1"`) {
		t.Errorf("failure message %q should name the object and the member", c.Message)
	}
	stalled := e.waitBaseline(t, "quota", fleetv1alpha1.ConditionStalled, metav1.ConditionTrue, fleetv1alpha1.ReasonTooManyFailures)
	if stalled.Status.Failed != 1 {
		t.Errorf("failed = %d, want 1", stalled.Status.Failed)
	}
	// The rollout stopped at the canary: no other member got the revision.
	for _, name := range []string{"member-2", "member-3"} {
		other := &fleetv1alpha1.BaselineBinding{}
		must(t, e.hub.Get(ctx, types.NamespacedName{Name: fleetv1alpha1.BindingName("quota", name)}, other))
		if other.Spec.Revision != "" {
			t.Errorf("%s was released revision %q after the canary failed", name, other.Spec.Revision)
		}
		if err := e.members[name].Get(ctx, types.NamespacedName{Namespace: "default", Name: "pods"}, &corev1.ResourceQuota{}); err == nil {
			t.Errorf("%s holds the quota although the rollout stopped", name)
		}
	}

	t.Run("fixing the canary lets the rollout go on in batches", func(t *testing.T) {
		setClusterLabels(t, e, "member-1", map[string]string{"pods": "20", "canary": "true"})
		ready := e.waitBaseline(t, "quota", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
		if ready.Status.Applied != 3 {
			t.Errorf("applied = %d, want 3", ready.Status.Applied)
		}
		q := &corev1.ResourceQuota{}
		must(t, e.members["member-1"].Get(ctx, types.NamespacedName{Namespace: "default", Name: "pods"}, q))
		if got := q.Spec.Hard.Pods().String(); got != "20" {
			t.Errorf("member-1 quota pods = %s, want 20 (substituted from its label)", got)
		}
	})
}

func TestDisconnectedMemberIsCaughtUp(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	b := baseline("catch-up", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\n  namespace: default\n")
	must(t, e.hub.Create(ctx, b))
	e.waitBaseline(t, "catch-up", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")

	down := e.fleet.Member("member-2")
	must(t, down.StopAPIServer())
	e.waitBinding(t, "catch-up", "member-2", fleetv1alpha1.ConditionApplied, metav1.ConditionFalse, fleetv1alpha1.ReasonClusterUnreachable)

	// A new revision: one object replaced by another. member-1 follows; member-2 is skipped
	// (nothing pruned while it is away) and caught up when it returns.
	must(t, e.hub.Get(ctx, types.NamespacedName{Name: "catch-up"}, b))
	b.Spec.Resources[0].Inline = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: second\n  namespace: default\n"
	must(t, e.hub.Update(ctx, b))
	e.waitObject(t, "member-1", cmRef("second"), "new ConfigMap", exists)
	e.waitObject(t, "member-1", cmRef("first"), "old ConfigMap pruned", gone)

	must(t, down.StartAPIServer(ctx))
	e.waitObject(t, "member-2", cmRef("second"), "new ConfigMap after reconnect", exists)
	e.waitObject(t, "member-2", cmRef("first"), "old ConfigMap pruned after reconnect", gone)
	e.waitBaseline(t, "catch-up", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
}

func TestInformReportsDriftWithoutWriting(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	b := baseline("audit", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: audited\n  namespace: default\n")
	b.Spec.Policy = fleetv1alpha1.PolicyInform
	must(t, e.hub.Create(ctx, b))
	bb := e.waitBinding(t, "audit", "member-1", fleetv1alpha1.ConditionDrifted, metav1.ConditionTrue, fleetv1alpha1.ReasonDriftDetected)
	if c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionDrifted); !strings.Contains(c.Message, "ConfigMap default/audited is missing") {
		t.Errorf("drift message %q does not name the missing object", c.Message)
	}
	if err := e.members["member-1"].Get(ctx, client.ObjectKeyFromObject(cmRef("audited")), cmRef("audited")); err == nil {
		t.Error("Inform created the object")
	}
	e.waitBaseline(t, "audit", fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonDriftDetected)
}

func TestRestartedControllerMakesNoWrites(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	b := baseline("steady", clusterRoleYAML, namespaceYAML+"---\n"+configMapYAML)
	must(t, e.hub.Create(ctx, b))
	e.waitBaseline(t, "steady", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")

	before := settledVersions(t, e)
	statusBefore := bindingStatuses(t, e)
	e.stop()
	appliesBefore := map[string]float64{}
	for name := range e.members {
		appliesBefore[name] = testutil.ToFloat64(applies.WithLabelValues(name, "succeeded"))
	}
	e.startController(t)
	// Wait until the new controller has applied to every member at least once: each apply
	// diffs with a server-side dry run and would write if anything differed.
	eventually(t, 30*time.Second, "an apply per member by the restarted controller", func() error {
		for name, n := range appliesBefore {
			if testutil.ToFloat64(applies.WithLabelValues(name, "succeeded")) <= n {
				return fmt.Errorf("no apply to %s yet", name)
			}
		}
		return nil
	})
	after := resourceVersions(t, e)
	if diff := cmp.Diff(statusBefore, bindingStatuses(t, e)); diff != "" {
		t.Errorf("binding status changed after a restart (-before +after):\n%s", diff)
	}
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed resourceVersion %s -> %s after a restart with nothing to do", k, v, after[k])
		}
	}
}

// resourceVersions of every object Flotilla wrote in members and of the hub's bindings.
func resourceVersions(t *testing.T, e *env) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for name, m := range e.members {
		for _, obj := range []client.Object{&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "addons", Name: "settings"}},
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "addons"}}} {
			must(t, m.Get(ctx, client.ObjectKeyFromObject(obj), obj))
			out[fmt.Sprintf("%s %T %s", name, obj, obj.GetName())] = obj.GetResourceVersion()
		}
	}
	list := &fleetv1alpha1.BaselineBindingList{}
	must(t, e.hub.List(ctx, list))
	for _, bb := range list.Items {
		out["binding "+bb.Name] = bb.ResourceVersion
	}
	mcs := &fleetv1alpha1.BaselineList{}
	must(t, e.hub.List(ctx, mcs))
	for _, b := range mcs.Items {
		out["baseline "+b.Name] = b.ResourceVersion
	}
	return out
}

func cmRef(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
}

// setClusterLabels changes a registered member's labels through its kubeconfig Secret's
// annotation, as a platform team would.
func setClusterLabels(t *testing.T, e *env, cluster string, extra map[string]string) {
	t.Helper()
	ctx := context.Background()
	s := &corev1.Secret{}
	must(t, e.hub.Get(ctx, types.NamespacedName{Namespace: hubNS, Name: cluster}, s))
	pairs := []string{"env=test", "name=" + cluster}
	for k, v := range extra {
		pairs = append(pairs, k+"="+v)
	}
	s.Annotations[fleetv1alpha1.AnnotationClusterLabels] = strings.Join(pairs, ",")
	must(t, e.hub.Update(ctx, s))
	eventually(t, 20*time.Second, "labels on MemberCluster "+cluster, func() error {
		mc := &fleetv1alpha1.MemberCluster{}
		must(t, e.hub.Get(ctx, types.NamespacedName{Name: cluster}, mc))
		for k, v := range extra {
			if mc.Labels[k] != v {
				return fmt.Errorf("labels %v", mc.Labels)
			}
		}
		return nil
	})
}

// settledVersions waits until nothing Flotilla writes changes for two seconds: the state a
// restart must leave untouched.
func settledVersions(t *testing.T, e *env) map[string]string {
	t.Helper()
	var last map[string]string
	eventually(t, 30*time.Second, "the fleet to settle", func() error {
		now := resourceVersions(t, e)
		defer func() { last = now }()
		if last == nil || fmt.Sprint(last) != fmt.Sprint(now) {
			time.Sleep(2 * time.Second)
			return fmt.Errorf("still changing")
		}
		return nil
	})
	return last
}

func bindingStatuses(t *testing.T, e *env) map[string]fleetv1alpha1.BaselineBindingStatus {
	list := &fleetv1alpha1.BaselineBindingList{}
	must(t, e.hub.List(context.Background(), list))
	out := map[string]fleetv1alpha1.BaselineBindingStatus{}
	for _, bb := range list.Items {
		out[bb.Name] = bb.Status
	}
	return out
}
