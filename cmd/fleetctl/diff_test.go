package main

import (
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// webBaseline is the Baseline most diff tests use: cluster-wide RBAC, config maps and
// Secrets in default, a new namespace with a quota in it, and a NetworkPolicy in every
// namespace labelled tier=app.
const webBaseline = `apiVersion: v1
kind: ConfigMap
metadata:
  name: same
  namespace: default
data:
  k: v
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: differs
  namespace: default
data:
  k: new
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: theirs
  namespace: default
data:
  k: v
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: unowned
  namespace: default
data:
  k: v
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: new
  namespace: default
data:
  k: v
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: default
stringData:
  user: admin
  password: new-password-value
---
apiVersion: v1
kind: Secret
metadata:
  name: fresh
  namespace: default
stringData:
  token: fresh-token-value
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: fleet-viewer
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
---
apiVersion: v1
kind: Namespace
metadata:
  name: addons
---
apiVersion: v1
kind: ResourceQuota
metadata:
  name: quota
  namespace: addons
spec:
  hard:
    pods: "10"
`

const denyIngress = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny
spec:
  podSelector: {}
  policyTypes: [Ingress]
`

func TestDiff(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 2, NoControllerManager: true})
	hub := adminClient(t, f.Hub)
	m1, m2 := adminClient(t, f.Members[0]), adminClient(t, f.Members[1])
	ensureHubNamespaceForTest(t, hub)
	registerWithAdminKubeconfig(t, hub, "m1", f.Members[0], map[string]string{"env": "test", "name": "m1"})
	registerWithAdminKubeconfig(t, hub, "m2", f.Members[1], map[string]string{"env": "test", "name": "m2"})
	diff := func(args ...string) []string {
		return append([]string{"diff", "--kubeconfig", f.Hub.KubeconfigPath}, args...)
	}

	web := baselineObj("web", map[string]string{"env": "test"}, webBaseline)
	web.Spec.PerNamespace = &fleetv1alpha1.PerNamespace{
		NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"tier": "app"}},
		Resources:         []fleetv1alpha1.ResourceSource{{Inline: denyIngress}},
	}
	mustCreate(t, hub, web)
	ours := func(baseline string) map[string]string {
		return map[string]string{fleetv1alpha1.LabelBaseline: baseline, fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue}
	}
	configMap := func(name string, labels map[string]string, value string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels}, Data: map[string]string{"k": value}}
	}
	// m1 holds some of it already: one object exactly as rendered, one that differs, one
	// another Baseline owns, one nobody owns, one the Baseline applied before and dropped
	// since, a namespace it applied before, and a namespace the perNamespace part selects.
	for _, obj := range []client.Object{
		configMap("same", ours("web"), "v"),
		configMap("differs", ours("web"), "old"),
		configMap("theirs", ours("other"), "v"),
		configMap("unowned", nil, "v"),
		configMap("old", ours("web"), "v"),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "default", Labels: ours("web")},
			Data: map[string][]byte{"user": []byte("admin"), "password": []byte("old-password-value")}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "fleet-viewer", Labels: ours("web")},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "retired", Labels: ours("web")}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"tier": "app"}}},
	} {
		mustCreate(t, m1, obj)
	}
	// What the controller recorded as applied in m1 before "old" and "retired" left the
	// Baseline.
	bind(t, hub, bindingObj("web", "m1", "0000000000"), fleetv1alpha1.BaselineBindingStatus{Revision: "0000000000", Inventory: []fleetv1alpha1.InventoryEntry{
		{Version: "v1", Kind: "ConfigMap", Namespace: "default", Name: "old"},
		{Version: "v1", Kind: "ConfigMap", Namespace: "default", Name: "same"},
		{Version: "v1", Kind: "Namespace", Name: "retired"},
	}})

	t.Run("shows what an apply would change in every selected member and writes nothing", func(t *testing.T) {
		beforeHub := snapshot(t, hub, hubKinds)
		beforeM1, beforeM2 := snapshot(t, m1, memberKinds), snapshot(t, m2, memberKinds)

		out, err := fleetctl(t, diff("web")...)
		if code, _ := exitCode(err); code != diffExitChanges {
			t.Errorf("exit code %d (%v), want %d: there are differences", code, err, diffExitChanges)
		}
		m1Out, m2Out, ok := strings.Cut(out, "\ncluster m2:\n")
		if !ok {
			t.Fatalf("want a section per member, m1 first; got:\n%s", out)
		}
		assertContains(t, out, "Baseline web at revision ")
		assertContains(t, m1Out,
			"cluster m1:\n",
			"note: the rollout has not released revision ",
			"+ create ConfigMap default/new\n",
			"    +  k: v\n",
			"~ update ConfigMap default/differs\n",
			"    -  k: old\n",
			"    +  k: new\n",
			`! conflict ConfigMap default/theirs: owned by Baseline "other"`,
			"! conflict ConfigMap default/unowned: exists and is not managed by Flotilla (conflictPolicy Abort)",
			"~ update ClusterRole fleet-viewer\n",
			"    +  - watch\n",
			"~ update Secret default/creds\n",
			"    -  password: '*** (before)'\n",
			"    +  password: '*** (after)'\n",
			"       user: '***'\n",
			"+ create Secret default/fresh\n",
			"    +  token: '***'\n",
			"+ create Namespace addons\n",
			"+ create ResourceQuota addons/quota (not dry-run: the apply creates its Namespace first)\n",
			"+ create NetworkPolicy shop/default-deny\n",
			"- prune ConfigMap default/old\n",
			`(kept: Namespace retired left the Baseline; a Namespace is pruned only when annotated fleet.flotilla.dev/prune: "true")`,
			"cluster m1: 5 to create, 3 to update, 1 to prune, 2 in conflict, 1 kept, 1 unchanged\n",
		)
		// m2 has nothing yet: everything is created, and only the perNamespace part is
		// missing (no namespace there is labelled tier=app).
		assertContains(t, m2Out,
			"note: no BaselineBinding for this member yet",
			"+ create ConfigMap default/same\n",
			"cluster m2: 10 to create\n",
		)
		assertContains(t, out, "Differences in 2 of 2 members: m1, m2\n")
		for _, secret := range []string{"new-password-value", "old-password-value", "fresh-token-value",
			base64.StdEncoding.EncodeToString([]byte("old-password-value")), base64.StdEncoding.EncodeToString([]byte("admin"))} {
			if strings.Contains(out, secret) {
				t.Errorf("diff shows the Secret value %q", secret)
			}
		}
		if strings.Contains(m1Out, "ConfigMap default/same") {
			t.Errorf("the unchanged ConfigMap default/same should only be counted in m1:\n%s", m1Out)
		}
		for _, field := range []string{"managedFields", "resourceVersion", "uid:", "creationTimestamp"} {
			if strings.Contains(out, field) {
				t.Errorf("diff shows the server-kept field %s", field)
			}
		}

		// Nothing was written: no object in a member or on the hub changed or appeared.
		assertSameSnapshot(t, "hub", beforeHub, snapshot(t, hub, hubKinds))
		assertSameSnapshot(t, "m1", beforeM1, snapshot(t, m1, memberKinds))
		assertSameSnapshot(t, "m2", beforeM2, snapshot(t, m2, memberKinds))
	})

	t.Run("--cluster diffs one member", func(t *testing.T) {
		out, err := fleetctl(t, diff("web", "--member", "m2")...)
		if code, _ := exitCode(err); code != diffExitChanges {
			t.Errorf("exit code %d (%v), want %d", code, err, diffExitChanges)
		}
		if strings.Contains(out, "cluster m1") {
			t.Errorf("--cluster m2 shows m1:\n%s", out)
		}
		assertContains(t, out, "Differences in 1 of 1 member: m2\n")
	})

	t.Run("no differences exits 0", func(t *testing.T) {
		mustCreate(t, hub, baselineObj("steady", map[string]string{"name": "m1"}, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: steady\n  namespace: default\ndata:\n  k: v\n"))
		mustCreate(t, m1, configMap("steady", ours("steady"), "v"))
		out, err := fleetctl(t, diff("steady")...)
		if err != nil {
			t.Errorf("diff of a member that matches: %v, want exit 0", err)
		}
		assertContains(t, out, "cluster m1: 1 unchanged\n", "No differences in 1 member.\n")
	})

	t.Run("conflictPolicy Adopt takes over an object nobody owns", func(t *testing.T) {
		adopter := baselineObj("adopter", map[string]string{"name": "m1"},
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unowned\n  namespace: default\ndata:\n  k: v\n")
		adopter.Spec.ConflictPolicy = fleetv1alpha1.ConflictAdopt
		mustCreate(t, hub, adopter)
		out, err := fleetctl(t, diff("adopter")...)
		if code, _ := exitCode(err); code != diffExitChanges {
			t.Errorf("exit code %d (%v), want %d", code, err, diffExitChanges)
		}
		assertContains(t, out, "~ adopt ConfigMap default/unowned\n", "    +    fleet.flotilla.dev/baseline: adopter\n", "cluster m1: 1 to update\n")
	})

	t.Run("objects from a Secret source are not shown", func(t *testing.T) {
		mustCreate(t, hub, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "private", Namespace: fleetv1alpha1.DefaultHubNamespace},
			Data: map[string][]byte{"cm.yaml": []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: private\n  namespace: default\ndata:\n  api-key: hidden-api-key\n")}})
		private := baselineObj("private", map[string]string{"name": "m1"}, "")
		private.Spec.Resources = []fleetv1alpha1.ResourceSource{{SecretRef: &fleetv1alpha1.LocalObjectReference{Name: "private"}}}
		mustCreate(t, hub, private)
		out, _ := fleetctl(t, diff("private")...)
		assertContains(t, out, "+ create ConfigMap default/private\n    (content hidden: its manifest comes from a Secret source)\n")
		if strings.Contains(out, "hidden-api-key") {
			t.Errorf("diff shows content of a Secret source:\n%s", out)
		}
	})

	t.Run("policy Inform writes nothing and never prunes", func(t *testing.T) {
		watcher := baselineObj("watcher", map[string]string{"name": "m1"}, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\n  namespace: default\ndata:\n  k: v\n")
		watcher.Spec.Policy = fleetv1alpha1.PolicyInform
		mustCreate(t, hub, watcher)
		mustCreate(t, m1, configMap("watched", ours("watcher"), "drifted"))
		mustCreate(t, m1, configMap("gone", ours("watcher"), "v"))
		bind(t, hub, bindingObj("watcher", "m1", ""), fleetv1alpha1.BaselineBindingStatus{Inventory: []fleetv1alpha1.InventoryEntry{
			{Version: "v1", Kind: "ConfigMap", Namespace: "default", Name: "gone"},
		}})
		out, _ := fleetctl(t, diff("watcher")...)
		assertContains(t, out,
			"note: policy Inform: fleet-controller writes nothing and reports these differences as drift",
			"~ update ConfigMap default/watched\n",
			"(kept: ConfigMap default/gone left the Baseline; policy Inform never prunes)",
		)
	})

	t.Run("an object the member rejects is an error", func(t *testing.T) {
		mustCreate(t, hub, baselineObj("rejected", map[string]string{"name": "m1"},
			"apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\n  namespace: default\nspec:\n  ports:\n  - port: 0\n"))
		out, err := fleetctl(t, diff("rejected")...)
		if code, _ := exitCode(err); code != diffExitError {
			t.Errorf("exit code %d (%v), want %d", code, err, diffExitError)
		}
		assertContains(t, out, "! rejected Service default/bad: ", "spec.ports[0].port")
	})

	t.Run("sources that do not parse are an error naming the source and document", func(t *testing.T) {
		mustCreate(t, hub, baselineObj("broken", nil, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: [\n"))
		out, err := fleetctl(t, diff("broken")...)
		if code, _ := exitCode(err); code != diffExitError || !strings.Contains(err.Error(), "resources[0] (inline) document 2: invalid YAML") {
			t.Errorf("error %v (exit %d), want exit %d naming resources[0] (inline) document 2", err, code, diffExitError)
		}
		if strings.Contains(out, "cluster m1") {
			t.Errorf("no member should be diffed for sources that do not parse:\n%s", out)
		}
	})

	t.Run("a cluster the Baseline does not select", func(t *testing.T) {
		_, err := fleetctl(t, diff("steady", "--cluster", "m2")...)
		if code, _ := exitCode(err); code != diffExitError || !strings.Contains(err.Error(), `baseline "steady" does not select cluster "m2"`) {
			t.Errorf("error %v (exit %d), want exit %d saying m2 is not selected", err, code, diffExitError)
		}
	})

	t.Run("a user who may not read the members' kubeconfig Secrets is told so", func(t *testing.T) {
		const user = "jane"
		mustCreate(t, hub, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "fleet-reader"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{fleetv1alpha1.GroupVersion.Group}, Resources: []string{"*"}, Verbs: []string{"get", "list"}},
		}})
		mustCreate(t, hub, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "fleet-reader-jane"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "fleet-reader"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}})
		kubeconfig := impersonatingKubeconfig(t, f.Hub, user)
		var out string
		var err error
		eventually(t, 10*time.Second, "refused for the kubeconfig Secret (not for the Baseline: RBAC takes a moment)", func() error {
			out, err = fleetctl(t, "diff", "steady", "--kubeconfig", kubeconfig)
			if err == nil || !strings.Contains(out, "you may not read Secret flotilla-system/m1-kubeconfig on the hub") {
				return fmt.Errorf("error %w", err)
			}
			return nil
		})
		if code, _ := exitCode(err); code != diffExitError {
			t.Errorf("exit code %d, want %d", code, diffExitError)
		}
		assertContains(t, out, `which holds the kubeconfig of cluster "m1": fleetctl diff connects to members with the credentials the hub stores for them, so it needs get on that Secret`)
	})
}

// The kinds whose every object a snapshot records: what the diff tests' Baselines and
// fleetctl itself could write.
var (
	memberKinds = []schema.GroupVersionKind{
		{Version: "v1", Kind: "Namespace"}, {Version: "v1", Kind: "ConfigMap"}, {Version: "v1", Kind: "Secret"},
		{Version: "v1", Kind: "ResourceQuota"}, {Version: "v1", Kind: "Service"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"},
		{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"},
	}
	hubKinds = []schema.GroupVersionKind{
		{Version: "v1", Kind: "Secret"}, {Version: "v1", Kind: "ConfigMap"},
		fleetv1alpha1.GroupVersion.WithKind("Baseline"), fleetv1alpha1.GroupVersion.WithKind("BaselineBinding"),
		fleetv1alpha1.GroupVersion.WithKind("MemberCluster"),
	}
)

// snapshot maps "Kind namespace/name" of every object of kinds to its resourceVersion.
func snapshot(t *testing.T, c client.Client, kinds []schema.GroupVersionKind) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, gvk := range kinds {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := c.List(t.Context(), list); err != nil {
			t.Fatalf("list %s: %v", gvk.Kind, err)
		}
		for _, item := range list.Items {
			out[gvk.Kind+" "+item.GetNamespace()+"/"+item.GetName()] = item.GetResourceVersion()
		}
	}
	return out
}

func assertSameSnapshot(t *testing.T, cluster string, before, after map[string]string) {
	t.Helper()
	if maps.Equal(before, after) {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if rv, ok := before[k]; !ok {
			t.Errorf("%s: %s appeared", cluster, k)
		} else if rv != after[k] {
			t.Errorf("%s: %s changed (resourceVersion %s -> %s)", cluster, k, rv, after[k])
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			t.Errorf("%s: %s disappeared", cluster, k)
		}
	}
}

// impersonatingKubeconfig writes a kubeconfig for cp whose admin acts as user.
func impersonatingKubeconfig(t *testing.T, cp *localfleet.ControlPlane, user string) string {
	t.Helper()
	cfg, err := clientcmd.Load(cp.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range cfg.AuthInfos {
		u.Impersonate = user
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
