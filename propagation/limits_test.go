package propagation

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// configMaps is inline YAML of ConfigMaps prefix-1..prefix-n in namespace default, each
// with data of the given size.
func configMaps(prefix string, n, size int) string {
	docs := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		docs = append(docs, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s-%d\n  namespace: default\ndata:\n  v: %q\n",
			prefix, i, strings.Repeat("x", size)))
	}
	return strings.Join(docs, "---\n")
}

// noConfigMaps checks, for a few seconds, that the member holds no ConfigMap named prefix-*.
func (e *env) noConfigMaps(t *testing.T, cluster, prefix string) {
	t.Helper()
	consistently(t, 3*time.Second, "nothing of a refused Baseline in "+cluster, func() error {
		list := &corev1.ConfigMapList{}
		if err := e.members[cluster].List(context.Background(), list, client.InNamespace("default")); err != nil {
			return err
		}
		for _, cm := range list.Items {
			if strings.HasPrefix(cm.Name, prefix+"-") {
				return fmt.Errorf("ConfigMap %s was applied", cm.Name)
			}
		}
		return nil
	})
}

func conditionMessage(conds []metav1.Condition, typ string) string {
	if c := meta.FindStatusCondition(conds, typ); c != nil {
		return c.Message
	}
	return ""
}

// The hub's limits are set low here (3 objects, 8 KiB) so that small Baselines pass them.
func TestOversizedBaselineIsRefused(t *testing.T) {
	e := newEnvLimited(t, localfleet.Options{Members: 1}, Limits{Objects: 3, Bytes: 8 << 10})
	ctx := context.Background()
	m1 := e.members["member-1"]

	t.Run("too many objects: Stalled, nothing applied", func(t *testing.T) {
		must(t, e.hub.Create(ctx, baseline("many", configMaps("many", 4, 1))))
		b := e.waitBaseline(t, "many", fleetv1alpha1.ConditionStalled, metav1.ConditionTrue, fleetv1alpha1.ReasonBaselineTooLarge)
		msg := conditionMessage(b.Status.Conditions, fleetv1alpha1.ConditionStalled)
		for _, want := range []string{"4 objects", "--max-baseline-objects=3"} {
			if !strings.Contains(msg, want) {
				t.Errorf("Stalled message %q does not say %q", msg, want)
			}
		}
		e.noConfigMaps(t, "member-1", "many")
	})

	t.Run("too many bytes: Stalled, nothing applied", func(t *testing.T) {
		must(t, e.hub.Create(ctx, baseline("heavy", configMaps("heavy", 1, 10<<10))))
		b := e.waitBaseline(t, "heavy", fleetv1alpha1.ConditionStalled, metav1.ConditionTrue, fleetv1alpha1.ReasonBaselineTooLarge)
		if msg := conditionMessage(b.Status.Conditions, fleetv1alpha1.ConditionStalled); !strings.Contains(msg, "--max-baseline-bytes=8Ki") {
			t.Errorf("Stalled message %q does not name the limit --max-baseline-bytes=8Ki", msg)
		}
		e.noConfigMaps(t, "member-1", "heavy")
	})

	t.Run("a fan-out past the limit in a member fails that member, nothing applied there", func(t *testing.T) {
		for _, ns := range []string{"team-a", "team-b", "team-c"} {
			must(t, m1.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"fanout": "true"}}}))
		}
		b := baseline("fanout", configMaps("fanout", 1, 1))
		b.Spec.PerNamespace = &fleetv1alpha1.PerNamespace{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"fanout": "true"}},
			Resources:         []fleetv1alpha1.ResourceSource{{Inline: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fanout-ns\n"}},
		}
		must(t, e.hub.Create(ctx, b))
		bb := e.waitBinding(t, "fanout", "member-1", fleetv1alpha1.ConditionApplied, metav1.ConditionFalse, fleetv1alpha1.ReasonBaselineTooLarge)
		msg := conditionMessage(bb.Status.Conditions, fleetv1alpha1.ConditionApplied)
		if !strings.Contains(msg, "4 objects (1 once, 1 in each of 3 namespaces)") || !strings.Contains(msg, "--max-baseline-objects=3") {
			t.Errorf("Applied message %q does not give the numbers and the flag", msg)
		}
		// maxFailures 0: the member counts as failed and the rollout stops.
		e.waitBaseline(t, "fanout", fleetv1alpha1.ConditionStalled, metav1.ConditionTrue, fleetv1alpha1.ReasonTooManyFailures)
		e.noConfigMaps(t, "member-1", "fanout")
		for _, ns := range []string{"team-a", "team-b", "team-c"} {
			if err := m1.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fanout-ns"}, &corev1.ConfigMap{}); err == nil {
				t.Errorf("fanout-ns was applied in %s", ns)
			}
		}

		// One namespace fewer and it fits: the member gets it all.
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-c"}}
		update(t, m1, ns, func() { delete(ns.Labels, "fanout") })
		e.waitBaseline(t, "fanout", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
		for _, ns := range []string{"team-a", "team-b"} {
			e.waitObject(t, "member-1", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fanout-ns"}}, "fanout-ns", exists)
		}
	})

	t.Run("without pruning, what left the Baseline counts: refused before it passes the limit", func(t *testing.T) {
		b := baseline("kept", configMaps("kept", 2, 1))
		b.Spec.Prune = ptr.To(false)
		must(t, e.hub.Create(ctx, b))
		e.waitBaseline(t, "kept", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
		// Two new objects: the Baseline would own 2 + the 2 it keeps, more than 3.
		update(t, e.hub, b, func() { b.Spec.Resources[0].Inline = configMaps("kept-new", 2, 1) })
		bb := e.waitBinding(t, "kept", "member-1", fleetv1alpha1.ConditionApplied, metav1.ConditionFalse, fleetv1alpha1.ReasonBaselineTooLarge)
		if msg := conditionMessage(bb.Status.Conditions, fleetv1alpha1.ConditionApplied); !strings.Contains(msg, "keep 2 that left it") {
			t.Errorf("Applied message %q does not count the kept objects", msg)
		}
		e.noConfigMaps(t, "member-1", "kept-new")
		if len(bb.Status.Inventory) != 2 {
			t.Errorf("inventory %v; want the 2 objects still owned, none lost", bb.Status.Inventory)
		}
	})
}
