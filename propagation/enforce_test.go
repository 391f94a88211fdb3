package propagation

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// lockdownYAML is what a platform team enforces in namespace team: deny all ingress, and a
// read-only Role bound to the team's group.
const lockdownYAML = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny
  namespace: team
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reader
  namespace: team
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: readers
  namespace: team
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: team-readers}
`

// tenantClient is a client of the member as user "tenant", bound to the built-in ClusterRole
// admin in namespace: the rights a team gets over its own namespace (edit would not let it
// touch Roles), and no more.
func (e *env) tenantClient(t *testing.T, cluster, namespace string) client.Client {
	t.Helper()
	ctx := context.Background()
	m := e.members[cluster]
	must(t, m.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "tenant-admin", Namespace: namespace},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "admin"},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "tenant"}}}))
	i := slices.IndexFunc(e.fleet.Members, func(c *localfleet.ControlPlane) bool { return c.Name == cluster })
	kc, err := e.fleet.Members[i].UserKubeconfig("tenant")
	must(t, err)
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	must(t, err)
	c, err := client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	must(t, err)
	return c
}

// editAs updates obj as c with field manager manager (kubectl edit is "kubectl-edit"),
// again on a conflict: the controller writes the same object.
func editAs(t *testing.T, c client.Client, manager string, obj client.Object, mutate func()) {
	t.Helper()
	eventually(t, 30*time.Second, "edit "+obj.GetName()+" as "+manager, func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate()
		return c.Update(context.Background(), obj, client.FieldOwner(manager))
	})
}

// applyAs server-side applies the partial object y as c with field manager manager, as
// `kubectl apply --server-side --field-manager=<manager> [--force-conflicts]` does.
func applyAs(t *testing.T, c client.Client, manager string, force bool, y map[string]any) {
	t.Helper()
	opts := []client.ApplyOption{client.FieldOwner(manager)}
	if force {
		opts = append(opts, client.ForceOwnership)
	}
	must(t, c.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: y}), opts...))
}

// A namespace admin of the member tries to switch the enforced default-deny policy and RBAC
// off in every way kubectl offers: each time the hub puts the Baseline's content back,
// including fields the Baseline never set (server-side apply alone removes only fields its
// manager owned, so `ingress: [{}]` added by someone else would stay for good).
func TestNamespaceEditorCannotSwitchEnforcementOff(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	m1 := e.members["member-1"]
	must(t, m1.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}))
	tenant := e.tenantClient(t, "member-1", "team")
	must(t, e.hub.Create(ctx, baseline("lockdown", lockdownYAML)))
	e.waitBaseline(t, "lockdown", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")

	npKey := types.NamespacedName{Namespace: "team", Name: "default-deny"}
	np := &networkingv1.NetworkPolicy{}
	must(t, m1.Get(ctx, npKey, np))
	denyAll := func(what string, since time.Time) {
		t.Helper()
		eventually(t, 30*time.Second, what, func() error {
			got := &networkingv1.NetworkPolicy{}
			if err := m1.Get(ctx, npKey, got); err != nil {
				return err
			}
			switch {
			case got.UID != np.UID:
				return fmt.Errorf("UID %s, want %s: corrected, not replaced", got.UID, np.UID)
			case len(got.Spec.Ingress) > 0 || len(got.Spec.Egress) > 0:
				return fmt.Errorf("ingress %v, egress %v: the policy lets traffic in", got.Spec.Ingress, got.Spec.Egress)
			case !slices.Equal(got.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}):
				return fmt.Errorf("policyTypes %v, want [Ingress]", got.Spec.PolicyTypes)
			}
			return nil
		})
		t.Logf("%s after %v", what, time.Since(since).Round(10*time.Millisecond))
	}
	roleKey := types.NamespacedName{Namespace: "team", Name: "reader"}
	wantRules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}}
	readOnly := func(what string, since time.Time) {
		t.Helper()
		eventually(t, 30*time.Second, what, func() error {
			got := &rbacv1.Role{}
			if err := m1.Get(ctx, roleKey, got); err != nil {
				return err
			}
			if !slices.EqualFunc(got.Rules, wantRules, func(a, b rbacv1.PolicyRule) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
				return fmt.Errorf("rules %v, want %v", got.Rules, wantRules)
			}
			return nil
		})
		t.Logf("%s after %v", what, time.Since(since).Round(10*time.Millisecond))
	}
	allowAll := []any{map[string]any{}}
	extraRule := map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"get", "list"}}
	desiredRule := map[string]any{"apiGroups": []any{""}, "resources": []any{"pods"}, "verbs": []any{"get", "list"}}
	partial := func(kind, apiVersion, name string, content map[string]any) map[string]any {
		y := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": map[string]any{"name": name, "namespace": "team"}}
		for k, v := range content {
			y[k] = v
		}
		return y
	}

	t.Run("kubectl edit adds ingress: [{}]", func(t *testing.T) {
		start := time.Now()
		got := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "default-deny"}}
		editAs(t, tenant, "kubectl-edit", got, func() { got.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}} })
		denyAll("deny-all restored after an edit", start)
		// The binding says what was removed and who had set it.
		eventually(t, 30*time.Second, "the correction reported", func() error {
			bb := &fleetv1alpha1.BaselineBinding{}
			must(t, e.hub.Get(ctx, types.NamespacedName{Name: fleetv1alpha1.BindingName("lockdown", "member-1")}, bb))
			c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionDrifted)
			if c == nil || c.Reason != fleetv1alpha1.ReasonDriftCorrected || !strings.Contains(c.Message, "removed what others set (kubectl-edit (Update): .spec.ingress)") {
				return fmt.Errorf("Drifted %+v", c)
			}
			return nil
		})
	})
	t.Run("a server-side apply by another field manager adds ingress", func(t *testing.T) {
		start := time.Now()
		applyAs(t, tenant, "tenant", false, partial("NetworkPolicy", "networking.k8s.io/v1", "default-deny",
			map[string]any{"spec": map[string]any{"ingress": allowAll}}))
		denyAll("deny-all restored after another manager's apply", start)
	})
	t.Run("the same with --force-conflicts, egress too", func(t *testing.T) {
		start := time.Now()
		applyAs(t, tenant, "tenant", true, partial("NetworkPolicy", "networking.k8s.io/v1", "default-deny",
			map[string]any{"spec": map[string]any{"ingress": allowAll, "policyTypes": []any{"Egress"}}}))
		denyAll("deny-all restored after a forced apply", start)
	})
	t.Run("kubectl edit adds a rule to the Role", func(t *testing.T) {
		start := time.Now()
		r := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "reader"}}
		editAs(t, tenant, "kubectl-edit", r, func() {
			r.Rules = append(r.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}})
		})
		readOnly("extra rule removed after an edit", start)
	})
	t.Run("a forced server-side apply adds a rule to the Role", func(t *testing.T) {
		start := time.Now()
		applyAs(t, tenant, "tenant", true, partial("Role", "rbac.authorization.k8s.io/v1", "reader",
			map[string]any{"rules": []any{desiredRule, extraRule}}))
		readOnly("extra rule removed after a forced apply", start)
	})
	t.Run("a forced server-side apply adds a subject to the RoleBinding", func(t *testing.T) {
		start := time.Now()
		applyAs(t, tenant, "tenant", true, partial("RoleBinding", "rbac.authorization.k8s.io/v1", "readers",
			map[string]any{
				"roleRef": map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
				"subjects": []any{
					map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "team-readers"},
					map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "tenant-friend"},
				}}))
		eventually(t, 30*time.Second, "extra subject removed", func() error {
			got := &rbacv1.RoleBinding{}
			if err := m1.Get(ctx, types.NamespacedName{Namespace: "team", Name: "readers"}, got); err != nil {
				return err
			}
			if len(got.Subjects) != 1 || got.Subjects[0].Name != "team-readers" {
				return fmt.Errorf("subjects %v, want only Group team-readers", got.Subjects)
			}
			return nil
		})
		t.Logf("extra subject removed after %v", time.Since(start).Round(10*time.Millisecond))
	})

	bb := &fleetv1alpha1.BaselineBinding{}
	must(t, e.hub.Get(ctx, types.NamespacedName{Name: fleetv1alpha1.BindingName("lockdown", "member-1")}, bb))
	if c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionConflict); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("Conflict condition %+v, want False: the objects are the Baseline's", c)
	}
}

// Under Inform the hub writes nothing: content a namespace admin adds stays, and the binding
// reports it as drift, naming the field manager and the fields.
func TestInformReportsForeignContentAndLeavesIt(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	m1 := e.members["member-1"]
	must(t, m1.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}))
	tenant := e.tenantClient(t, "member-1", "team")
	b := baseline("lockdown", lockdownYAML)
	must(t, e.hub.Create(ctx, b))
	e.waitBaseline(t, "lockdown", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	// Enforced first, so that the objects are Flotilla's; then only audited.
	update(t, e.hub, b, func() { b.Spec.Policy = fleetv1alpha1.PolicyInform })
	eventually(t, 30*time.Second, "the binding applied under Inform", func() error {
		bb := &fleetv1alpha1.BaselineBinding{}
		must(t, e.hub.Get(ctx, types.NamespacedName{Name: fleetv1alpha1.BindingName("lockdown", "member-1")}, bb))
		if c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionApplied); c == nil || !strings.Contains(c.Message, "Inform") {
			return fmt.Errorf("Applied %+v", c)
		}
		return nil
	})

	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "default-deny"}}
	editAs(t, tenant, "kubectl-edit", np, func() { np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}} })
	bb := e.waitBinding(t, "lockdown", "member-1", fleetv1alpha1.ConditionDrifted, metav1.ConditionTrue, fleetv1alpha1.ReasonDriftDetected)
	c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionDrifted)
	if want := "NetworkPolicy team/default-deny has content others set: kubectl-edit (Update): .spec.ingress"; !strings.Contains(c.Message, want) {
		t.Errorf("Drifted message %q does not say %q", c.Message, want)
	}
	consistently(t, 3*time.Second, "Inform to leave the added ingress alone", func() error {
		got := &networkingv1.NetworkPolicy{}
		must(t, m1.Get(ctx, client.ObjectKeyFromObject(np), got))
		if len(got.Spec.Ingress) != 1 || got.ResourceVersion != np.ResourceVersion {
			return fmt.Errorf("Inform wrote the NetworkPolicy: ingress %v, resourceVersion %s -> %s", got.Spec.Ingress, np.ResourceVersion, got.ResourceVersion)
		}
		return nil
	})
}
