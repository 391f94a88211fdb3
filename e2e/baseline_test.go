//go:build e2e

package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		fleetctl(t, "register", m.Name, "--kubeconfig", hub, "--member-kubeconfig", m.Kubeconfig, "--labels", "env=e2e")
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
