package propagation

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
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

// gatePodYAML is a Pod no kubelet ever runs (local members have none): it stays Pending, so
// kstatus reports it not healthy until the test marks it Ready. It holds a member's part of a
// rollout open for as long as the test wants. It lives outside the quota's namespace, whose
// admission would refuse Pods until kube-controller-manager has computed the quota's usage.
const gatePodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: gate
  namespace: kube-public
  annotations:
    cluster: "${CLUSTER_NAME}"
spec:
  containers:
  - name: app
    image: registry.invalid/gate:1
`

// The canary is member-3, last in name order, so a rollout that ignored the canary selector
// and went by name would start elsewhere. Every member substitutes its own label value.
func TestRolloutCanaryFirstThenBatchesOfOne(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	// member-3 is the canary and first rejects the quota ("lots" is not a quantity).
	setClusterLabels(t, e, "member-1", map[string]string{"pods": "11"})
	setClusterLabels(t, e, "member-2", map[string]string{"pods": "12"})
	setClusterLabels(t, e, "member-3", map[string]string{"pods": "lots", "canary": "true"})

	one := intstr.FromInt32(1)
	b := baseline("quota", quotaYAML, gatePodYAML)
	b.Spec.Substitute = &fleetv1alpha1.Substitution{}
	b.Spec.Rollout = &fleetv1alpha1.RolloutStrategy{
		MaxConcurrent: &one,
		MaxFailures:   ptr.To[int32](0),
		Canary:        &metav1.LabelSelector{MatchLabels: map[string]string{"canary": "true"}},
	}
	must(t, e.hub.Create(ctx, b))

	bb := e.waitBinding(t, "quota", "member-3", fleetv1alpha1.ConditionApplied, metav1.ConditionFalse, fleetv1alpha1.ReasonApplyFailed)
	if c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionApplied); !strings.Contains(c.Message, "ResourceQuota/default/pods") ||
		!strings.Contains(c.Message, `cluster "member-3"`) {
		t.Errorf("failure message %q should name the object and the member", c.Message)
	}
	stalled := e.waitBaseline(t, "quota", fleetv1alpha1.ConditionStalled, metav1.ConditionTrue, fleetv1alpha1.ReasonTooManyFailures)
	if stalled.Status.Failed != 1 {
		t.Errorf("failed = %d, want 1", stalled.Status.Failed)
	}
	// The rollout stopped at the canary: no other member got the revision.
	for _, name := range []string{"member-1", "member-2"} {
		other := &fleetv1alpha1.BaselineBinding{}
		must(t, e.hub.Get(ctx, types.NamespacedName{Name: fleetv1alpha1.BindingName("quota", name)}, other))
		if other.Spec.Revision != "" {
			t.Errorf("%s was released revision %q after the canary failed", name, other.Spec.Revision)
		}
		if err := e.members[name].Get(ctx, types.NamespacedName{Namespace: "default", Name: "pods"}, &corev1.ResourceQuota{}); err == nil {
			t.Errorf("%s holds the quota although the rollout stopped", name)
		}
	}

	t.Run("fixed, the canary goes first and the others follow one at a time, each after the previous is healthy", func(t *testing.T) {
		w := watchRollout(t, e, 1)
		setClusterLabels(t, e, "member-3", map[string]string{"pods": "13", "canary": "true"})
		for _, next := range []string{"member-3", "member-1", "member-2"} {
			e.waitObject(t, next, gatePod(), "the gate Pod of the rollout's next member", exists)
			e.waitBinding(t, "quota", next, fleetv1alpha1.ConditionHealthy, metav1.ConditionFalse, fleetv1alpha1.ReasonUnhealthy)
			// While next is not healthy, nobody else may get the revision.
			consistently(t, 4*time.Second, "no member other than "+next+" to receive the revision while "+next+" is not healthy", w.check)
			w.markReady(t, next)
		}
		ready := e.waitBaseline(t, "quota", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
		if ready.Status.Applied != 3 || ready.Status.Healthy != 3 {
			t.Errorf("applied = %d healthy = %d, want 3 and 3", ready.Status.Applied, ready.Status.Healthy)
		}
		if diff := cmp.Diff([]string{"member-3", "member-1", "member-2"}, w.stop(t)); diff != "" {
			t.Errorf("order in which members received the revision (-want +got):\n%s", diff)
		}
	})

	t.Run("each member gets its own substituted values", func(t *testing.T) {
		for name, want := range map[string]string{"member-1": "11", "member-2": "12", "member-3": "13"} {
			q := &corev1.ResourceQuota{}
			must(t, e.members[name].Get(ctx, types.NamespacedName{Namespace: "default", Name: "pods"}, q))
			if got := q.Spec.Hard.Pods().String(); got != want {
				t.Errorf("%s: quota pods = %s, want %s (substituted from its label)", name, got, want)
			}
			pod := gatePod()
			must(t, e.members[name].Get(ctx, client.ObjectKeyFromObject(pod), pod))
			if got := pod.Annotations["cluster"]; got != name {
				t.Errorf("%s: ${CLUSTER_NAME} became %q", name, got)
			}
		}
	})
}

func gatePod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-public", Name: "gate"}}
}

// rolloutWatch polls every member's gate Pod during a rollout, as a user of the members
// would see it: the order in which members received the revision, and every moment at which
// more members held it unhealthy than maxConcurrent allows.
type rolloutWatch struct {
	e             *env
	maxConcurrent int

	mu         sync.Mutex // held by a poll round and by markReady, so they never interleave
	order      []string
	violations []string
	done       chan struct{}
	stopped    chan struct{}
}

func watchRollout(t *testing.T, e *env, maxConcurrent int) *rolloutWatch {
	w := &rolloutWatch{e: e, maxConcurrent: maxConcurrent, done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(w.stopped)
		for {
			select {
			case <-w.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			w.poll()
		}
	}()
	t.Cleanup(func() { w.stop(t) })
	return w
}

func (w *rolloutWatch) poll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	var unhealthy []string
	for _, name := range slices.Sorted(maps.Keys(w.e.members)) {
		pod := gatePod()
		if err := w.e.members[name].Get(context.Background(), client.ObjectKeyFromObject(pod), pod); err != nil {
			continue // not released yet (or a transient error: the next round looks again)
		}
		if !slices.Contains(w.order, name) {
			w.order = append(w.order, name)
		}
		if !podReady(pod) {
			unhealthy = append(unhealthy, name)
		}
	}
	if len(unhealthy) > w.maxConcurrent {
		w.violations = append(w.violations, fmt.Sprintf("%s: %v hold the revision, not healthy (maxConcurrent %d)",
			time.Now().Format("15:04:05.000"), unhealthy, w.maxConcurrent))
	}
}

// check fails when a member received the revision out of turn since the watch began.
func (w *rolloutWatch) check() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.violations) > 0 {
		return fmt.Errorf("%s", strings.Join(w.violations, "; "))
	}
	return nil
}

// markReady makes the member's gate Pod Running and Ready, as a kubelet would.
func (w *rolloutWatch) markReady(t *testing.T, cluster string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	pod := gatePod()
	updateStatus(t, w.e.members[cluster], pod, func() {
		now := metav1.Now()
		pod.Status.Phase = corev1.PodRunning
		pod.Status.ObservedGeneration = pod.Generation
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
	})
}

// stop ends the watch, fails the test on a violation and returns the order of arrival.
func (w *rolloutWatch) stop(t *testing.T) []string {
	t.Helper()
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	<-w.stopped
	if err := w.check(); err != nil {
		t.Error(err)
	}
	return w.order
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
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
	update(t, e.hub, b, func() {
		b.Spec.Resources[0].Inline = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: second\n  namespace: default\n"
	})
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
	m1 := e.members["member-1"]
	// "edited" is the Baseline's own object (it carries the Baseline's label, as after an
	// earlier Enforce) with a value someone changed by hand; "audited" is missing.
	edited := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "edited",
		Labels: map[string]string{fleetv1alpha1.LabelBaseline: "audit", fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue}},
		Data: map[string]string{"level": "by-hand"}}
	must(t, m1.Create(ctx, edited))
	b := baseline("audit", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: audited\n  namespace: default\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: edited\n  namespace: default\ndata:\n  level: \"1\"\n")
	b.Spec.Policy = fleetv1alpha1.PolicyInform
	must(t, e.hub.Create(ctx, b))
	bb := e.waitBinding(t, "audit", "member-1", fleetv1alpha1.ConditionDrifted, metav1.ConditionTrue, fleetv1alpha1.ReasonDriftDetected)
	c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionDrifted)
	for _, want := range []string{"ConfigMap default/audited is missing", "ConfigMap default/edited differs"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("drift message %q does not say %q", c.Message, want)
		}
	}
	e.waitBaseline(t, "audit", fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonDriftDetected)
	// Inform reports and never writes: neither the missing object nor the changed value.
	consistently(t, 3*time.Second, "Inform to leave the member as it is", func() error {
		if err := m1.Get(ctx, client.ObjectKeyFromObject(cmRef("audited")), cmRef("audited")); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Inform created ConfigMap audited (get: %w)", err)
		}
		got := cmRef("edited")
		must(t, m1.Get(ctx, client.ObjectKeyFromObject(got), got))
		if got.Data["level"] != "by-hand" || got.ResourceVersion != edited.ResourceVersion {
			return fmt.Errorf("Inform wrote ConfigMap edited: level %q, resourceVersion %s -> %s", got.Data["level"], edited.ResourceVersion, got.ResourceVersion)
		}
		return nil
	})
}

func TestRestartedControllerMakesNoWrites(t *testing.T) {
	e := newEnvWith(t, localfleet.Options{Members: 2, AuditLog: true})
	ctx := context.Background()
	b := baseline("steady", clusterRoleYAML, namespaceYAML+"---\n"+configMapYAML)
	must(t, e.hub.Create(ctx, b))
	e.waitBaseline(t, "steady", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	e.waitSettled(t)

	statusBefore := bindingStatuses(t, e)
	e.stop()
	appliesBefore := map[string]float64{}
	for name := range e.members {
		appliesBefore[name] = testutil.ToFloat64(applies.WithLabelValues("steady", name, "succeeded"))
	}
	writes := e.markControllerWrites(t)
	e.startController(t)
	// Wait until the new controller has applied to every member at least once: each apply
	// diffs with a server-side dry run and would write if anything differed.
	eventually(t, 30*time.Second, "an apply per member by the restarted controller", func() error {
		for name, n := range appliesBefore {
			if testutil.ToFloat64(applies.WithLabelValues("steady", name, "succeeded")) <= n {
				return fmt.Errorf("no apply to %s yet", name)
			}
		}
		return nil
	})
	// Counted at the API servers: no request that writes, not even a no-op apply, in the
	// members, and no write to a Baseline or binding on the hub, also while the statuses of
	// those applies would be written.
	consistently(t, 3*time.Second, "no write by the restarted controller", writes.None)
	if diff := cmp.Diff(statusBefore, bindingStatuses(t, e)); diff != "" {
		t.Errorf("binding status changed after a restart (-before +after):\n%s", diff)
	}
}

// markControllerWrites starts counting what the controller writes: in members, every write of
// the hub's identity; in the hub, writes to Baselines and bindings (the test makes none while
// it counts).
func (e *env) markControllerWrites(t *testing.T) *fleettest.WriteCounter {
	t.Helper()
	audited := []fleettest.Audited{{Cluster: e.fleet.Hub, Count: fleettest.ToResources("baselines", "baselinebindings")}}
	for _, m := range e.fleet.Members {
		audited = append(audited, fleettest.Audited{Cluster: m, Count: fleettest.ByUser(fleettest.HubUser)})
	}
	return fleettest.MarkWrites(t, audited...)
}

// waitSettled waits until the controller has written nothing for two seconds: the state a
// restart must leave untouched.
func (e *env) waitSettled(t *testing.T) {
	t.Helper()
	eventually(t, 60*time.Second, "the controller to stop writing", func() error {
		w := e.markControllerWrites(t)
		time.Sleep(2 * time.Second)
		return w.None()
	})
}

func cmRef(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
}

// setClusterLabels changes a registered member's labels through its kubeconfig Secret's
// annotation, as a platform team would.
func setClusterLabels(t *testing.T, e *env, cluster string, extra map[string]string) {
	t.Helper()
	ctx := context.Background()
	pairs := []string{"env=test", "name=" + cluster}
	for k, v := range extra {
		pairs = append(pairs, k+"="+v)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: cluster}}
	update(t, e.hub, s, func() { s.Annotations[fleetv1alpha1.AnnotationClusterLabels] = strings.Join(pairs, ",") })
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

func bindingStatuses(t *testing.T, e *env) map[string]fleetv1alpha1.BaselineBindingStatus {
	list := &fleetv1alpha1.BaselineBindingList{}
	must(t, e.hub.List(context.Background(), list))
	out := map[string]fleetv1alpha1.BaselineBindingStatus{}
	for _, bb := range list.Items {
		out[bb.Name] = bb.Status
	}
	return out
}
