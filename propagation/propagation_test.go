package propagation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

const (
	clusterRoleYAML = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: fleet-viewer
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
`
	namespaceYAML = `apiVersion: v1
kind: Namespace
metadata:
  name: addons
`
	configMapYAML = `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: addons
data:
  level: "1"
`
)

var errMissing = errors.New("not there yet")

func exists(err error) error {
	if err != nil {
		return fmt.Errorf("%w: %w", errMissing, err)
	}
	return nil
}

func gone(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("still there (%w)", err)
}

func TestBaselineAppliesCorrectsDriftAndPrunes(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	b := baseline("security", clusterRoleYAML, namespaceYAML+"---\n"+configMapYAML)
	must(t, e.hub.Create(ctx, b))

	ready := e.waitBaseline(t, "security", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	if ready.Status.Selected != 2 || ready.Status.Applied != 2 || ready.Status.Healthy != 2 {
		t.Errorf("counts = %+v, want 2 selected, applied and healthy", ready.Status)
	}
	for name, m := range e.members {
		cm := &corev1.ConfigMap{}
		must(t, m.Get(ctx, types.NamespacedName{Namespace: "addons", Name: "settings"}, cm))
		if cm.Labels[fleetv1alpha1.LabelBaseline] != "security" || cm.Labels[fleetv1alpha1.LabelManagedBy] != "flotilla" {
			t.Errorf("%s: ConfigMap labels %v lack the ownership labels", name, cm.Labels)
		}
		bb := e.waitBinding(t, "security", name, fleetv1alpha1.ConditionApplied, metav1.ConditionTrue, fleetv1alpha1.ReasonApplySucceeded)
		if len(bb.Status.Inventory) != 3 || bb.Status.Revision != ready.Status.Revision {
			t.Errorf("%s: inventory %v revision %s, want 3 objects at %s", name, bb.Status.Inventory, bb.Status.Revision, ready.Status.Revision)
		}
	}

	t.Run("a deleted object is restored", func(t *testing.T) {
		m1 := e.members["member-1"]
		must(t, m1.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "addons", Name: "settings"}}))
		e.waitObject(t, "member-1", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "addons", Name: "settings"}}, "ConfigMap restored", exists)
	})

	t.Run("a changed object is corrected", func(t *testing.T) {
		m2 := e.members["member-2"]
		cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "fleet-viewer"}}
		update(t, m2, cr, func() { cr.Rules[0].Verbs = []string{"get", "list", "delete"} })
		e.waitObject(t, "member-2", &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "fleet-viewer"}}, "ClusterRole verbs restored",
			func(err error) error {
				if err != nil {
					return err
				}
				got := &rbacv1.ClusterRole{}
				_ = m2.Get(ctx, types.NamespacedName{Name: "fleet-viewer"}, got)
				if strings.Join(got.Rules[0].Verbs, ",") != "get,list" {
					return fmt.Errorf("verbs %v", got.Rules[0].Verbs)
				}
				return nil
			})
	})

	t.Run("an object removed from the Baseline is pruned, its Namespace kept", func(t *testing.T) {
		update(t, e.hub, b, func() { b.Spec.Resources = b.Spec.Resources[:1] }) // only the ClusterRole
		for name := range e.members {
			e.waitObject(t, name, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "addons", Name: "settings"}}, "ConfigMap pruned", gone)
			ns := &corev1.Namespace{}
			must(t, e.members[name].Get(ctx, types.NamespacedName{Name: "addons"}, ns))
			if !ns.DeletionTimestamp.IsZero() {
				t.Errorf("%s: Namespace addons is being deleted; Namespaces are pruned only when marked", name)
			}
		}
	})
}

func TestPerNamespaceFanOutFollowsNamespaces(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	m1 := e.members["member-1"]
	must(t, m1.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"workloads": "true"}}}))

	b := &fleetv1alpha1.Baseline{
		ObjectMeta: metav1.ObjectMeta{Name: "default-deny"},
		Spec: fleetv1alpha1.BaselineSpec{PerNamespace: &fleetv1alpha1.PerNamespace{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"workloads": "true"}},
			Resources: []fleetv1alpha1.ResourceSource{{Inline: `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
spec:
  podSelector: {}
  policyTypes: [Ingress]
`}},
		}},
	}
	must(t, e.hub.Create(ctx, b))
	policy := func(ns string) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default-deny-ingress"}}
	}
	e.waitObject(t, "member-1", policy("shop"), "default-deny in existing namespace shop", exists)

	// A namespace created later gets the policy too.
	must(t, m1.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "billing", Labels: map[string]string{"workloads": "true"}}}))
	e.waitObject(t, "member-1", policy("billing"), "default-deny in new namespace billing", exists)

	// A namespace relabelled away loses it.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	update(t, m1, ns, func() { ns.Labels["workloads"] = "false" })
	e.waitObject(t, "member-1", policy("shop"), "default-deny removed from relabelled namespace shop", gone)

	// Unselected namespaces never get it.
	if err := m1.Get(ctx, client.ObjectKeyFromObject(policy("default")), policy("default")); !apierrors.IsNotFound(err) {
		t.Errorf("namespace default is not selected but has the policy (get: %v)", err)
	}
}

func TestConflictAbortThenAdopt(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	m1 := e.members["member-1"]
	must(t, m1.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "shared"}, Data: map[string]string{"owner": "team"}}))

	b := baseline("takeover", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n  namespace: default\ndata:\n  owner: platform\n")
	must(t, e.hub.Create(ctx, b))
	bb := e.waitBinding(t, "takeover", "member-1", fleetv1alpha1.ConditionConflict, metav1.ConditionTrue, fleetv1alpha1.ReasonOwnedByOther)
	if c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionConflict); !strings.Contains(c.Message, "ConfigMap default/shared") {
		t.Errorf("conflict message %q does not name the object", c.Message)
	}
	cm := &corev1.ConfigMap{}
	must(t, m1.Get(ctx, types.NamespacedName{Namespace: "default", Name: "shared"}, cm))
	if cm.Data["owner"] != "team" || cm.Labels[fleetv1alpha1.LabelBaseline] != "" {
		t.Fatalf("Abort touched the unowned object: %v %v", cm.Data, cm.Labels)
	}

	t.Run("a second Baseline claiming an adopted object reports a conflict", func(t *testing.T) {
		// The controller writes this Baseline too (finalizer, status): update it conflict-safely.
		update(t, e.hub, b, func() { b.Spec.ConflictPolicy = fleetv1alpha1.ConflictAdopt })
		e.waitObject(t, "member-1", cm, "ConfigMap adopted", func(err error) error {
			if err != nil {
				return err
			}
			if cm.Data["owner"] != "platform" || cm.Labels[fleetv1alpha1.LabelBaseline] != "takeover" {
				return fmt.Errorf("data %v labels %v", cm.Data, cm.Labels)
			}
			return nil
		})
		later := baseline("latecomer", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n  namespace: default\ndata:\n  owner: other\n")
		later.Spec.ConflictPolicy = fleetv1alpha1.ConflictAdopt
		must(t, e.hub.Create(ctx, later))
		bb := e.waitBinding(t, "latecomer", "member-1", fleetv1alpha1.ConditionConflict, metav1.ConditionTrue, fleetv1alpha1.ReasonOwnedByOther)
		if c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionConflict); !strings.Contains(c.Message, `Baseline "takeover"`) {
			t.Errorf("conflict message %q does not name the owning Baseline", c.Message)
		}
	})
}

func TestInvalidSourcesApplyNothing(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()

	bad := baseline("broken", clusterRoleYAML, "apiVersion: v1\nkind: ConfigMap\nmetadata: [not, a, map\n")
	must(t, e.hub.Create(ctx, bad))
	b := e.waitBaseline(t, "broken", fleetv1alpha1.ConditionStalled, metav1.ConditionTrue, fleetv1alpha1.ReasonInvalidSource)
	if c := meta.FindStatusCondition(b.Status.Conditions, fleetv1alpha1.ConditionStalled); !strings.Contains(c.Message, "resources[1] (inline) document 1") {
		t.Errorf("message %q does not name the source and document", c.Message)
	}
	if err := e.members["member-1"].Get(ctx, types.NamespacedName{Name: "fleet-viewer"}, &rbacv1.ClusterRole{}); !apierrors.IsNotFound(err) {
		t.Errorf("the valid ClusterRole of an invalid revision was applied (get: %v)", err)
	}

	unknown := baseline("unknown-kind", clusterRoleYAML, "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")
	must(t, e.hub.Create(ctx, unknown))
	bb := e.waitBinding(t, "unknown-kind", "member-1", fleetv1alpha1.ConditionApplied, metav1.ConditionFalse, fleetv1alpha1.ReasonUnknownKind)
	if c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionApplied); !strings.Contains(c.Message, "Widget w") {
		t.Errorf("message %q does not name the object of the unknown kind", c.Message)
	}
	if err := e.members["member-1"].Get(ctx, types.NamespacedName{Name: "fleet-viewer"}, &rbacv1.ClusterRole{}); !apierrors.IsNotFound(err) {
		t.Errorf("a binding with an unknown kind applied the rest (get: %v)", err)
	}
}

func TestDeletionPolicy(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	m1 := e.members["member-1"]
	cm := func(name string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: default\n"
	}
	del := baseline("deleted", cm("delete-me"))
	orphan := baseline("orphaned", cm("keep-me"))
	orphan.Spec.DeletionPolicy = fleetv1alpha1.DeletionOrphan
	must(t, e.hub.Create(ctx, del))
	must(t, e.hub.Create(ctx, orphan))
	e.waitBaseline(t, "deleted", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	e.waitBaseline(t, "orphaned", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")

	must(t, e.hub.Delete(ctx, del))
	must(t, e.hub.Delete(ctx, orphan))
	e.waitObject(t, "member-1", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "delete-me"}}, "Delete removes the object", gone)
	eventually(t, 30e9, "Baseline orphaned gone", func() error {
		return gone(e.hub.Get(ctx, types.NamespacedName{Name: "orphaned"}, &fleetv1alpha1.Baseline{}))
	})
	kept := &corev1.ConfigMap{}
	must(t, m1.Get(ctx, types.NamespacedName{Namespace: "default", Name: "keep-me"}, kept))
	if kept.Labels[fleetv1alpha1.LabelBaseline] != "" {
		t.Errorf("orphaned object still carries the ownership label: %v", kept.Labels)
	}
}

func TestCreateOnlyAndReferencedSources(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	m1 := e.members["member-1"]
	must(t, e.hub.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: "addon-manifests"},
		Data: map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-configmap\n  namespace: default\ndata:\n  v: \"1\"\n"}}))
	must(t, e.hub.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: "secret-manifests"},
		Data: map[string][]byte{"s.yaml": []byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: from-secret\n  namespace: default\nstringData:\n  token: s3cret\n")}}))

	b := &fleetv1alpha1.Baseline{
		ObjectMeta: metav1.ObjectMeta{Name: "create-only"},
		Spec: fleetv1alpha1.BaselineSpec{
			Policy: fleetv1alpha1.PolicyCreateOnly,
			Resources: []fleetv1alpha1.ResourceSource{
				{ConfigMapRef: &fleetv1alpha1.LocalObjectReference{Name: "addon-manifests"}},
				{SecretRef: &fleetv1alpha1.LocalObjectReference{Name: "secret-manifests"}},
			},
		},
	}
	must(t, e.hub.Create(ctx, b))
	e.waitBaseline(t, "create-only", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	secret := &corev1.Secret{}
	must(t, m1.Get(ctx, types.NamespacedName{Namespace: "default", Name: "from-secret"}, secret))
	if string(secret.Data["token"]) != "s3cret" {
		t.Errorf("secret data = %q", secret.Data["token"])
	}

	// CreateOnly never updates: a change in the member stays.
	cm := cmRef("from-configmap")
	update(t, m1, cm, func() { cm.Data["v"] = "changed-in-member" })
	// A new source revision makes the binding apply again; the changed object must stay.
	src := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: "addon-manifests"}}
	update(t, e.hub, src, func() {
		src.Data["more.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: second\n  namespace: default\n"
	})
	e.waitObject(t, "member-1", cmRef("second"), "object added to the ConfigMap source created", exists)
	must(t, m1.Get(ctx, types.NamespacedName{Namespace: "default", Name: "from-configmap"}, cm))
	if cm.Data["v"] != "changed-in-member" {
		t.Errorf("CreateOnly overwrote a member change: v=%q", cm.Data["v"])
	}
	// ...but a deleted object is created again.
	must(t, m1.Delete(ctx, cm))
	e.waitObject(t, "member-1", cmRef("from-configmap"), "deleted object re-created", exists)
}
