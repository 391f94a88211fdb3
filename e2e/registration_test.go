//go:build e2e

package e2e_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/e2e"
)

// readyTimeout bounds how long a registered member may take to be Ready: a connection, a
// probe and a status write, on a loaded machine.
const readyTimeout = 2 * time.Minute

// TestFleetctlRegisterStatusUnregister is the platform engineer's first day: register every
// member with fleetctl, see them Ready in fleetctl status and kubectl, and unregister them.
// The controller runs under config/rbac's ServiceAccount, so a missing rule fails it.
func TestFleetctlRegisterStatusUnregister(t *testing.T) {
	b := sharedBackend(t)
	hub := b.HubKubeconfig()
	members := b.Members()

	for _, m := range members {
		out := register(t, hub, m, "env=e2e,e2e.fleet.flotilla.dev/member="+m.Name)
		if want := fmt.Sprintf("Registered %q", m.Name); !strings.Contains(out, want) {
			t.Fatalf("fleetctl register %s printed no %q", m.Name, want)
		}
	}

	var status string
	eventually(t, readyTimeout, "fleetctl status to show every member Ready", func() error {
		out, err := runProgram(t, suite.bins.Fleetctl, "status", "--kubeconfig", hub)
		if err != nil {
			return fmt.Errorf("fleetctl status: %w\n%s", err, out)
		}
		rows := table(out)
		for _, m := range members {
			if got := rows[m.Name]["READY"]; got != "True" {
				return fmt.Errorf("member %s READY %q:\n%s", m.Name, got, out)
			}
		}
		if want := fmt.Sprintf("Clusters: %d (%d ready, 0 not ready)", len(members), len(members)); !strings.Contains(out, want) {
			return fmt.Errorf("no %q in:\n%s", want, out)
		}
		status = out
		return nil
	})
	t.Logf("fleetctl status:\n%s", status)

	t.Run("kubectl get memberclusters shows Ready and the member's version", func(t *testing.T) {
		rows := table(kubectl(t, "--kubeconfig", hub, "get", "memberclusters"))
		for _, m := range members {
			row := rows[m.Name]
			if row["READY"] != "True" || row["VERSION"] != serverVersion(t, m) {
				t.Errorf("member %s: READY %q VERSION %q, want True and %s", m.Name, row["READY"], row["VERSION"], serverVersion(t, m))
			}
		}
		selected := kubectl(t, "--kubeconfig", hub, "get", "memberclusters", "-l", "env=e2e", "-o", "name")
		for _, m := range members {
			if !strings.Contains(selected, "membercluster.fleet.flotilla.dev/"+m.Name+"\n") {
				t.Errorf("label selector env=e2e does not select %s: the --labels of register are missing", m.Name)
			}
		}
	})

	for _, m := range members {
		fleetctl(t, "unregister", m.Name, "--kubeconfig", hub, "--cleanup", "--member-kubeconfig", m.Kubeconfig)
	}
	if left := kubectl(t, "--kubeconfig", hub, "get", "memberclusters", "-o", "name"); strings.TrimSpace(left) != "" {
		t.Errorf("MemberClusters left after unregister:\n%s", left)
	}
	if left := kubectl(t, "--kubeconfig", hub, "-n", e2e.HubNamespace, "get", "secrets",
		"-l", "fleet.flotilla.dev/registration=fleetctl", "-o", "name"); strings.TrimSpace(left) != "" {
		t.Errorf("kubeconfig Secrets left on the hub after unregister:\n%s", left)
	}
	for _, m := range members {
		// --cleanup removes the hub's identity from the member.
		if out, err := runProgram(t, suite.bins.Kubectl, "--kubeconfig", m.Kubeconfig, "get", "clusterrolebinding", "flotilla-hub"); err == nil {
			t.Errorf("member %s still has the hub's ClusterRoleBinding after unregister --cleanup:\n%s", m.Name, out)
		}
	}
	if out := fleetctl(t, "status", "--kubeconfig", hub); !strings.Contains(out, "No member clusters registered") {
		t.Errorf("fleetctl status after unregistering everything:\n%s", out)
	}
}

// serverVersion is the member's Kubernetes version as its own API server reports it.
func serverVersion(t *testing.T, m e2e.Member) string {
	t.Helper()
	out, err := runProgram(t, suite.bins.Kubectl, "--kubeconfig", m.Kubeconfig, "version", "-o", "json")
	if err != nil {
		t.Fatalf("kubectl version of member %s: %v\n%s", m.Name, err, out)
	}
	var v struct {
		ServerVersion struct {
			GitVersion string `json:"gitVersion"`
		} `json:"serverVersion"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.ServerVersion.GitVersion == "" {
		t.Fatalf("kubectl version of member %s: %v\n%s", m.Name, err, out)
	}
	return v.ServerVersion.GitVersion
}
