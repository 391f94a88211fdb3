//go:build e2e

package e2e_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-dev/flotilla/e2e"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

// TestMakeDeployAndUndeploy runs the README's install and uninstall commands against a hub
// of its own (undeploy removes the CRDs, which the other specs share): `make deploy` with
// another registry and tag installs everything with that image, a second deploy (an upgrade)
// applies cleanly, `make undeploy` refuses while a member is registered and then removes it
// all. The controller's pods cannot run here
// (no nodes); the other specs run its binary.
func TestMakeDeployAndUndeploy(t *testing.T) {
	if backendName() != "local" {
		t.Skip("the kind backend installs with make deploy itself")
	}
	fleet := localfleet.StartForTest(t, localfleet.Options{NoCRDs: true})
	hub := fleet.Hub.KubeconfigPath
	keepArtifactsOnFailure(t, hub, nil, suite.artifacts)
	const img = "registry.example.com/flotilla/fleet-controller:v9.9.9-0-gabcdef0"

	tryMake := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), "make", append([]string{"-C", suite.root}, args...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+hub) // "the current kubeconfig"
		out, err := cmd.CombinedOutput()
		t.Logf("$ KUBECONFIG=%s make %s\n%s", hub, strings.Join(args, " "), out)
		return string(out), err
	}
	make := func(args ...string) {
		t.Helper()
		if _, err := tryMake(args...); err != nil {
			t.Fatalf("make %s: %v", strings.Join(args, " "), err)
		}
	}
	deploy := []string{"deploy", "IMAGE_REPO=registry.example.com/flotilla/fleet-controller", "IMAGE_TAG=v9.9.9-0-gabcdef0"}
	make(deploy...)
	make(deploy...)

	got := kubectl(t, "--kubeconfig", hub, "-n", e2e.HubNamespace, "get", "deployment", "flotilla-controller",
		"-o", "jsonpath={.spec.template.spec.containers[0].image}")
	if got != img {
		t.Errorf("deployed image %q, want %q", got, img)
	}
	kubectl(t, "--kubeconfig", hub, "get", "crd", "memberclusters.fleet.flotilla.dev", "baselines.fleet.flotilla.dev")
	kubectl(t, "--kubeconfig", hub, "get", "clusterrolebinding", "flotilla-manager")
	kubectl(t, "--kubeconfig", hub, "-n", e2e.HubNamespace, "get", "serviceaccount/flotilla-controller",
		"rolebinding/flotilla-manager", "service/flotilla-controller-metrics")

	// A member still registered: its finalizers need the controller, so undeploy refuses.
	kubectl(t, "--kubeconfig", hub, "apply", "--server-side", "-f", filepath.Join(suite.root, "config", "samples", "membercluster.yaml"))
	if out, err := tryMake("undeploy"); err == nil || !strings.Contains(out, "membercluster.fleet.flotilla.dev/eu-1") {
		t.Fatalf("make undeploy with a MemberCluster left: %v; want a refusal naming it", err)
	}
	kubectl(t, "--kubeconfig", hub, "delete", "membercluster", "eu-1")
	make("undeploy")
	for _, args := range [][]string{
		{"get", "crd", "memberclusters.fleet.flotilla.dev"},
		{"get", "clusterrolebinding", "flotilla-manager"},
		{"get", "namespace", e2e.HubNamespace},
	} {
		if out, err := runProgram(t, suite.bins.Kubectl, append([]string{"--kubeconfig", hub}, args...)...); err == nil {
			t.Errorf("still there after make undeploy: kubectl %s\n%s", strings.Join(args, " "), out)
		}
	}
}
