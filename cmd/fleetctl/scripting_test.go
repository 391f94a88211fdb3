package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// fleetctlSplit runs the command line with stdout and stderr apart, as a script sees them.
func fleetctlSplit(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut syncBuffer
	cmd := newRootCommand(&out, &errOut)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(t.Context())
	t.Logf("$ fleetctl %s\nstdout:\n%s\nstderr:\n%s\nerror: %v", strings.Join(args, " "), out.String(), errOut.String(), err)
	return out.String(), errOut.String(), err
}

// TestRegisterDryRun: --dry-run reads the member and the hub and writes to neither (their
// audit logs, which count even a no-op apply, say so), and prints the objects a real
// register then creates.
func TestRegisterDryRun(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 1, AuditLog: true})
	m := f.Members[0]
	hub := adminClient(t, f.Hub)

	hubMark, err := f.Hub.AuditMark()
	must(t, err)
	memberMark, err := m.AuditMark()
	must(t, err)
	args := registerArgs(f, "m1", m, "--labels", "env=dev", "--dry-run")
	yamlOut, stderr, err := fleetctlSplit(t, args...)
	must(t, err)
	jsonOut, _, err := fleetctlSplit(t, append(args, "-o", "json")...)
	must(t, err)
	nameOut, _, err := fleetctlSplit(t, append(args, "-o", "name")...)
	must(t, err)
	for _, c := range []struct {
		cp   *localfleet.ControlPlane
		mark localfleet.AuditMark
	}{{f.Hub, hubMark}, {m, memberMark}} {
		writes, err := c.cp.Writes(c.mark)
		must(t, err)
		if len(writes) > 0 {
			t.Errorf("register --dry-run wrote to %s: %v", c.cp.Name, writes)
		}
	}
	assertContains(t, stderr, "nothing was written", dryRunTokenPlaceholder)

	docs := decodeDocuments(t, yamlOut)
	wantKinds := []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Secret", "MemberCluster"}
	var kinds []string
	for _, d := range docs {
		kinds = append(kinds, d.GetKind())
	}
	if !slices.Equal(kinds, wantKinds) {
		t.Fatalf("dry-run YAML documents are %v, want %v", kinds, wantKinds)
	}
	var list unstructured.UnstructuredList
	must(t, list.UnmarshalJSON([]byte(jsonOut)))
	if len(list.Items) != len(docs) {
		t.Errorf("-o json lists %d objects, -o yaml %d", len(list.Items), len(docs))
	}
	for i := range min(len(list.Items), len(docs)) {
		if !equality.Semantic.DeepEqual(list.Items[i].Object, docs[i].Object) {
			t.Errorf("-o json item %d differs from -o yaml: %s", i, cmp.Diff(docs[i].Object, list.Items[i].Object))
		}
	}
	if want := "namespace/flotilla-system\nserviceaccount/flotilla-hub\nclusterrole.rbac.authorization.k8s.io/flotilla-hub\n" +
		"clusterrolebinding.rbac.authorization.k8s.io/flotilla-hub\nrole.rbac.authorization.k8s.io/flotilla-hub-token\n" +
		"rolebinding.rbac.authorization.k8s.io/flotilla-hub-token\nsecret/m1-kubeconfig\nmembercluster.fleet.flotilla.dev/m1\n"; nameOut != want {
		t.Errorf("-o name:\n%s\nwant:\n%s", nameOut, want)
	}

	// What register then creates is what --dry-run printed.
	mustFleetctl(t, registerArgs(f, "m1", m, "--labels", "env=dev")...)
	member := adminClient(t, m)
	role := &rbacv1.ClusterRole{}
	must(t, member.Get(t.Context(), client.ObjectKey{Name: hubServiceAccount}, role))
	var printedRole rbacv1.ClusterRole
	fromUnstructured(t, docs[2], &printedRole)
	if diff := cmp.Diff(printedRole.Rules, role.Rules); diff != "" {
		t.Errorf("ClusterRole rules: printed vs created (-+):\n%s", diff)
	}
	mc := &fleetv1alpha1.MemberCluster{}
	must(t, hub.Get(t.Context(), client.ObjectKey{Name: "m1"}, mc))
	var printedMC fleetv1alpha1.MemberCluster
	fromUnstructured(t, docs[7], &printedMC)
	if diff := cmp.Diff(printedMC.Spec, mc.Spec); diff != "" {
		t.Errorf("MemberCluster spec: printed vs created (-+):\n%s", diff)
	}
	if diff := cmp.Diff(printedMC.Labels, mc.Labels); diff != "" {
		t.Errorf("MemberCluster labels: printed vs created (-+):\n%s", diff)
	}
	secret := hubKubeconfigSecret(t, hub, "m1")
	if diff := cmp.Diff(docs[6].GetAnnotations(), secret.Annotations); diff != "" {
		t.Errorf("hub Secret annotations: printed vs created (-+):\n%s", diff)
	}

	t.Run("a registration another source owns is refused as for real", func(t *testing.T) {
		must(t, hub.Patch(t.Context(), &fleetv1alpha1.MemberCluster{ObjectMeta: metav1.ObjectMeta{Name: "m1"}},
			client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"labels":{"fleet.flotilla.dev/registration":"secret"}}}`))))
		if _, _, err := fleetctlSplit(t, args...); err == nil || !strings.Contains(err.Error(), "registered by") {
			t.Errorf("register --dry-run over another source's MemberCluster: %v, want a refusal", err)
		}
	})
	t.Run("-o without --dry-run is refused", func(t *testing.T) {
		if _, _, err := fleetctlSplit(t, registerArgs(f, "m2", m, "-o", "json")...); err == nil || !strings.Contains(err.Error(), "--dry-run") {
			t.Errorf("register -o json: %v, want an error naming --dry-run", err)
		}
	})
}

// TestScriptableStatus drives status, rollout status, completion and the connection flags
// against a hub whose member status comes from fleet-controller's own cluster registry.
func TestScriptableStatus(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 2})
	hub := adminClient(t, f.Hub)
	kc := []string{"--kubeconfig", f.Hub.KubeconfigPath}
	mustFleetctl(t, registerArgs(f, "m1", f.Members[0], "--labels", "env=dev")...)
	mustFleetctl(t, registerArgs(f, "m2", f.Members[1], "--labels", "env=prod")...)
	mustCreate(t, hub, baselineObj("security", map[string]string{"env": "dev"}, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: default}\n"))
	runTokenHub(t, f, 0.5)
	waitReady(t, hub, "m1")
	waitReady(t, hub, "m2")

	t.Run("-o json is the hub's objects", func(t *testing.T) {
		out, _, err := fleetctlSplit(t, append([]string{"status", "-o", "json"}, kc...)...)
		must(t, err)
		var list unstructured.UnstructuredList
		must(t, list.UnmarshalJSON([]byte(out)))
		var names []string
		for _, item := range list.Items {
			names = append(names, item.GetKind()+"/"+item.GetName())
			if item.GetManagedFields() != nil {
				t.Errorf("%s/%s printed with managedFields (kubectl leaves them out unless asked)", item.GetKind(), item.GetName())
			}
		}
		if want := []string{"MemberCluster/m1", "MemberCluster/m2", "Baseline/security"}; !slices.Equal(names, want) {
			t.Fatalf("status -o json items %v, want %v", names, want)
		}
		for _, item := range list.Items[:2] {
			var printed fleetv1alpha1.MemberCluster
			fromUnstructured(t, &item, &printed)
			live := memberClusterOf(t, hub, item.GetName())
			// Read after the print: equal unless the controller wrote in between (a heartbeat),
			// which a changed resourceVersion shows.
			if printed.ResourceVersion != live.ResourceVersion {
				continue
			}
			live.ManagedFields = nil
			if printed.Kind != "MemberCluster" || printed.APIVersion != fleetv1alpha1.GroupVersion.String() {
				t.Errorf("printed %s: kind %q apiVersion %q", item.GetName(), printed.Kind, printed.APIVersion)
			}
			live.TypeMeta = printed.TypeMeta // a typed read carries none
			if diff := cmp.Diff(live, &printed); diff != "" {
				t.Errorf("printed MemberCluster %s differs from the hub's (-hub +printed):\n%s", item.GetName(), diff)
			}
		}
		yamlOut, _, err := fleetctlSplit(t, append([]string{"status", "-o", "yaml"}, kc...)...)
		must(t, err)
		docs := decodeDocuments(t, yamlOut)
		if len(docs) != 1 || docs[0].GetKind() != "List" {
			t.Errorf("status -o yaml: want one List document, got %d", len(docs))
		}
		names2, _, err := fleetctlSplit(t, append([]string{"status", "-o", "name"}, kc...)...)
		must(t, err)
		if want := "membercluster.fleet.flotilla.dev/m1\nmembercluster.fleet.flotilla.dev/m2\nbaseline.fleet.flotilla.dev/security\n"; names2 != want {
			t.Errorf("status -o name = %q, want %q", names2, want)
		}
		jp, _, err := fleetctlSplit(t, append([]string{"status", "-o", "jsonpath={.items[0].status.kubernetesVersion}"}, kc...)...)
		must(t, err)
		if jp != memberClusterOf(t, hub, "m1").Status.KubernetesVersion || jp == "" {
			t.Errorf("status -o jsonpath kubernetesVersion = %q", jp)
		}
	})

	t.Run("-o wide adds columns", func(t *testing.T) {
		out, _, err := fleetctlSplit(t, append([]string{"status", "-o", "wide"}, kc...)...)
		must(t, err)
		assertContains(t, out, "LABELS", "env=dev,fleet.flotilla.dev/registration=fleetctl", "flotilla-system/m1-kubeconfig", "UNREACHABLE")
		if _, _, err := fleetctlSplit(t, append([]string{"status", "-o", "table"}, kc...)...); err == nil ||
			!strings.Contains(err.Error(), "wide") || !strings.Contains(err.Error(), "json") {
			t.Errorf("status -o table: %v, want an error listing the formats", err)
		}
	})

	t.Run("rollout status -o json prints the Baseline", func(t *testing.T) {
		out, _, _ := fleetctlSplit(t, append([]string{"rollout", "status", "security", "-o", "json"}, kc...)...)
		var list unstructured.UnstructuredList
		must(t, list.UnmarshalJSON([]byte(out)))
		if len(list.Items) == 0 || list.Items[0].GetKind() != "Baseline" || list.Items[0].GetName() != "security" {
			t.Errorf("rollout status -o json: want the Baseline first, got %v", list.Items)
		}
	})

	t.Run("completion lists member and Baseline names from the hub", func(t *testing.T) {
		for _, c := range []struct {
			// args follow the connection flags; the last is the word being completed.
			cmd, args []string
			want      []string
		}{
			{[]string{"unregister"}, []string{""}, []string{"m1", "m2"}},
			{[]string{"rotate-credentials"}, []string{"m"}, []string{"m1", "m2"}},
			{[]string{"rollout", "status"}, []string{"sec"}, []string{"security"}},
			{[]string{"diff"}, []string{"security", "--member", "m2"}, []string{"m2"}},
			{[]string{"unregister"}, []string{"x"}, nil},
		} {
			out, _, err := fleetctlSplit(t, slices.Concat([]string{"__complete"}, c.cmd, kc, c.args)...)
			must(t, err)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if got := lines[:len(lines)-1]; !slices.Equal(got, c.want) && (len(got) != 0 || c.want != nil) {
				t.Errorf("%v completes %q, want %q", c.args, got, c.want)
			}
			if last := lines[len(lines)-1]; last != ":4" { // ShellCompDirectiveNoFileComp
				t.Errorf("%v ends with %q, want :4 (no file completion)", c.args, last)
			}
		}
		script, _, err := fleetctlSplit(t, "completion", "bash")
		must(t, err)
		assertContains(t, script, "__start_fleetctl")
	})

	t.Run("status --exit-code", func(t *testing.T) {
		code := func(args ...string) (int, string) {
			t.Helper()
			_, stderr, err := fleetctlSplit(t, append(append([]string{"status", "--exit-code", "-o", "name"}, kc...), args...)...)
			c, _ := exitCode(err)
			return c, stderr
		}
		// The Baseline is not Ready (no propagation controller runs here).
		c, stderr := code()
		if c != 1 || !strings.Contains(stderr, "not ready: baseline/security") || strings.Contains(stderr, "membercluster/") {
			t.Errorf("--exit-code with a Baseline not ready: exit %d, stderr %q; want 1 naming only the Baseline", c, stderr)
		}
		must(t, hub.Delete(t.Context(), &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: "security"}}))
		eventually(t, 30*time.Second, "status --exit-code to exit 0 with every member Ready", func() error {
			if c, stderr := code(); c != 0 {
				return fmt.Errorf("exit %d: %s", c, stderr)
			}
			return nil
		})
		// A member whose API server stops goes not Ready.
		must(t, f.Members[1].StopAPIServer())
		eventually(t, 60*time.Second, "status --exit-code to exit 1 naming m2", func() error {
			if c, stderr := code(); c != 1 || !strings.Contains(stderr, "membercluster/m2") {
				return fmt.Errorf("exit %d: %s", c, stderr)
			}
			return nil
		})
		// Not knowing is not "not ready".
		if c, _ := code("--server", "https://127.0.0.1:1", "--request-timeout", "2s"); c != 2 {
			t.Errorf("--exit-code against an unreachable hub: exit %d, want 2", c)
		}
	})

	t.Run("kubectl's connection flags: --as", func(t *testing.T) {
		_, _, err := fleetctlSplit(t, append([]string{"status", "-o", "name", "--as", "nobody"}, kc...)...)
		if err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("status --as nobody: %v, want forbidden", err)
		}
	})
}

func decodeDocuments(t *testing.T, s string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(s)), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := d.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return out
		}
		must(t, err)
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	data, err := json.Marshal(u.Object)
	must(t, err)
	must(t, json.Unmarshal(data, into))
}
