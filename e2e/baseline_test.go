//go:build e2e

package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/flotilla-dev/flotilla/e2e"
)

// e2eBaseline is a small security baseline: a ClusterRole once per member and a default-deny
// ingress NetworkPolicy in every namespace labelled e2e.fleet.flotilla.dev/workloads=true.
const e2eBaseline = `apiVersion: fleet.flotilla.dev/v1alpha1
kind: Baseline
metadata:
  name: e2e-security
spec:
  clusterSelector:
    matchLabels:
      env: e2e
  resources:
  - inline: |
      apiVersion: rbac.authorization.k8s.io/v1
      kind: ClusterRole
      metadata:
        name: e2e-viewer
      rules:
      - apiGroups: [""]
        resources: [pods]
        verbs: [get, list, watch]
  perNamespace:
    namespaceSelector:
      matchLabels:
        e2e.fleet.flotilla.dev/workloads: "true"
    resources:
    - inline: |
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: default-deny-ingress
        spec:
          podSelector: {}
          policyTypes: [Ingress]
`

// TestBaselineReachesEveryMember applies a Baseline with kubectl and follows it as a platform
// engineer would: Ready on the hub, its objects in every selected member (also in a namespace
// created afterwards), the bindings matrix, and everything gone when the Baseline is deleted.
func TestBaselineReachesEveryMember(t *testing.T) {
	b := sharedBackend(t)
	hub := b.HubKubeconfig()
	members := b.Members()
	for _, m := range members {
		register(t, hub, m, "env=e2e")
		kubectl(t, "--kubeconfig", m.Kubeconfig, "create", "namespace", "shop")
		kubectl(t, "--kubeconfig", m.Kubeconfig, "label", "namespace", "shop", "e2e.fleet.flotilla.dev/workloads=true")
	}
	manifest := filepath.Join(t.TempDir(), "baseline.yaml")
	if err := os.WriteFile(manifest, []byte(e2eBaseline), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "--kubeconfig", hub, "apply", "-f", manifest)

	eventually(t, readyTimeout, "Baseline e2e-security Ready and applied to every member", func() error {
		out, err := runProgram(t, suite.bins.Kubectl, "--kubeconfig", hub, "get", "baseline", "e2e-security", "-o",
			`jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.selected} {.status.applied}`)
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		if want := fmt.Sprintf("True %d %d", len(members), len(members)); strings.TrimSpace(out) != want {
			return fmt.Errorf("Ready, selected, applied: %q, want %q", out, want)
		}
		return nil
	})
	kubectl(t, "--kubeconfig", hub, "get", "baselinebindings")
	for _, m := range members {
		kubectl(t, "--kubeconfig", m.Kubeconfig, "get", "clusterrole", "e2e-viewer")
		kubectl(t, "--kubeconfig", m.Kubeconfig, "-n", "shop", "get", "networkpolicy", "default-deny-ingress")
	}

	t.Run("the Baseline's ClusterRole grants what it says, and no more", func(t *testing.T) {
		for _, m := range members {
			viewer := boundServiceAccount(t, m, "shop", "viewer", "e2e-viewer")
			for _, c := range []struct {
				args []string
				want string
			}{
				{[]string{"get", "pods", "-n", "shop"}, "yes"},
				{[]string{"list", "pods", "-n", "shop"}, "yes"},
				{[]string{"watch", "pods", "-n", "shop"}, "yes"},
				{[]string{"delete", "pods", "-n", "shop"}, "no"},
				{[]string{"get", "secrets", "-n", "shop"}, "no"},
				{[]string{"list", "pods", "-n", "kube-system"}, "no"}, // bound in shop only
			} {
				// can-i exits 1 on "no"; the answer is what counts.
				out, _ := runProgram(t, suite.bins.Kubectl, append([]string{"--kubeconfig", viewer, "auth", "can-i"}, c.args...)...)
				if got := strings.TrimSpace(withoutWarnings(out)); got != c.want {
					t.Errorf("member %s: ServiceAccount shop/viewer bound to e2e-viewer: can-i %s = %q, want %s",
						m.Name, strings.Join(c.args, " "), got, c.want)
				}
			}
			kubectl(t, "--kubeconfig", viewer, "-n", "shop", "get", "pods")
			if out, err := runProgram(t, suite.bins.Kubectl, "--kubeconfig", viewer, "-n", "shop", "get", "secrets"); err == nil || !strings.Contains(out, "Forbidden") {
				t.Errorf("member %s: shop/viewer listed Secrets (%v):\n%s", m.Name, err, out)
			}
		}
	})

	later := members[0]
	kubectl(t, "--kubeconfig", later.Kubeconfig, "create", "namespace", "cart")
	kubectl(t, "--kubeconfig", later.Kubeconfig, "label", "namespace", "cart", "e2e.fleet.flotilla.dev/workloads=true")
	eventually(t, readyTimeout, "the NetworkPolicy in namespace cart, created after the Baseline", func() error {
		out, err := runProgram(t, suite.bins.Kubectl, "--kubeconfig", later.Kubeconfig, "-n", "cart", "get", "networkpolicy", "default-deny-ingress")
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	})
	if out := fleetctl(t, "status", "--kubeconfig", hub); !strings.Contains(out, "e2e-security") {
		t.Errorf("fleetctl status does not mention Baseline e2e-security")
	}

	kubectl(t, "--kubeconfig", hub, "delete", "baseline", "e2e-security", "--timeout=2m")
	for _, m := range members {
		eventually(t, 30*time.Second, "member "+m.Name+" without the Baseline's objects (deletionPolicy Delete)", func() error {
			var left []string
			for _, args := range [][]string{{"get", "clusterrole", "e2e-viewer", "--ignore-not-found"}, {"get", "networkpolicies", "-A"}} {
				out, err := runProgram(t, suite.bins.Kubectl, append([]string{"--kubeconfig", m.Kubeconfig, "-o", "name"}, args...)...)
				if err != nil {
					return fmt.Errorf("%w: %s", err, out)
				}
				left = append(left, strings.Fields(out)...)
			}
			if len(left) > 0 {
				return fmt.Errorf("left: %v", left)
			}
			return nil
		})
	}
	for _, m := range members {
		fleetctl(t, "unregister", m.Name, "--kubeconfig", hub, "--cleanup", "--member-kubeconfig", m.Kubeconfig)
		kubectl(t, "--kubeconfig", m.Kubeconfig, "delete", "namespace", "shop", "--wait=false")
	}
	kubectl(t, "--kubeconfig", later.Kubeconfig, "delete", "namespace", "cart", "--wait=false")
}

// boundServiceAccount creates the ServiceAccount ns/name in m, binds it in ns to clusterRole
// and returns the path of a kubeconfig that authenticates as it, with a token and nothing else
// (an admin kubeconfig's client certificate would win over a token added to it).
func boundServiceAccount(t *testing.T, m e2e.Member, ns, name, clusterRole string) string {
	t.Helper()
	kubectl(t, "--kubeconfig", m.Kubeconfig, "-n", ns, "create", "serviceaccount", name)
	kubectl(t, "--kubeconfig", m.Kubeconfig, "-n", ns, "create", "rolebinding", name, "--clusterrole="+clusterRole, "--serviceaccount="+ns+":"+name)
	// Not logged: it is a credential.
	token, err := runProgram(t, suite.bins.Kubectl, "--kubeconfig", m.Kubeconfig, "-n", ns, "create", "token", name, "--duration=10m")
	if err != nil {
		t.Fatalf("kubectl create token %s/%s in member %s: %v", ns, name, m.Name, err)
	}
	admin, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if len(admin.CAData) == 0 && admin.CAFile != "" {
		if admin.CAData, err = os.ReadFile(admin.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := e2e.WriteTokenKubeconfig(admin, name, strings.TrimSpace(token), path); err != nil {
		t.Fatal(err)
	}
	return path
}
