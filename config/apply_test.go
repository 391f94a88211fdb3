package config_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

// TestDefaultAppliesToARealHub installs config/default the way `make deploy` does — kubectl
// server-side apply — into a hub without the CRDs, then the samples, and checks that the
// bindings give the controller's ServiceAccount what it needs and not more.
func TestDefaultAppliesToARealHub(t *testing.T) {
	objs := render(t, "config/default")
	fleet := localfleet.StartForTest(t, localfleet.Options{NoCRDs: true, NoControllerManager: true})
	hub := "--kubeconfig=" + fleet.Hub.KubeconfigPath

	// The Deployment is checked by the API server but not created: its pods would need the
	// image, a node and a scheduler, and creating it proves nothing more.
	var install, deployment []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			deployment = append(deployment, o)
		} else {
			install = append(install, o)
		}
	}
	apply := []string{hub, "apply", "--server-side", "--field-manager=flotilla-install", "-f", "-"}
	run(t, encode(t, install), apply...)
	run(t, encode(t, deployment), append(apply, "--dry-run=server")...)
	// An upgrade applies the same manifests again: no conflicts with what the first apply owns.
	run(t, encode(t, install), apply...)

	var crds []string
	for _, o := range install {
		if o.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, "crd/"+o.GetName())
		}
	}
	run(t, nil, append([]string{hub, "wait", "--for=condition=Established", "--timeout=60s"}, crds...)...)
	// Strict field validation (kubectl's default) makes a sample that does not match the API fail.
	run(t, run(t, nil, "kustomize", filepath.Join(repoRoot(t), "config", "samples")), apply...)

	as := "--as=system:serviceaccount:" + hubNamespace + ":" + serviceAccount
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"patch", "memberclusters.fleet.flotilla.dev", "--subresource=status"}, true},
		{[]string{"watch", "memberclusters.fleet.flotilla.dev"}, true},
		{[]string{"list", "secrets", "-n", hubNamespace}, true},
		{[]string{"update", "leases.coordination.k8s.io", "-n", hubNamespace}, true},
		{[]string{"create", "events.events.k8s.io", "-n", hubNamespace}, true},
		// The metrics endpoint checks every scrape's token and rights with the hub.
		{[]string{"create", "tokenreviews.authentication.k8s.io"}, true},
		{[]string{"create", "subjectaccessreviews.authorization.k8s.io"}, true},
		// Least privilege: leases elsewhere, writing Secrets, anything on pods.
		{[]string{"update", "leases.coordination.k8s.io", "-n", "default"}, false},
		{[]string{"create", "secrets", "-n", hubNamespace}, false},
		// Registration scope: kubeconfig Secrets are read in the hub namespace only.
		{[]string{"list", "secrets", "-A"}, false},
		{[]string{"get", "secrets", "-n", "default"}, false},
		{[]string{"list", "pods", "-A"}, false},
	} {
		if got := canI(t, fleet.Hub.KubeconfigPath, as, c.args...); got != c.want {
			t.Errorf("kubectl auth can-i %s %s: %v, want %v", strings.Join(c.args, " "), as, got, c.want)
		}
	}
}

// canI asks the hub whether the impersonated identity may do something; kubectl prints
// "yes" or "no" and exits non-zero for "no".
func canI(t *testing.T, kubeconfig, as string, args ...string) bool {
	t.Helper()
	cmdArgs := append([]string{"--kubeconfig=" + kubeconfig, "auth", "can-i", as}, args...)
	out, err := exec.CommandContext(t.Context(), kubectl(t), cmdArgs...).Output()
	answer := strings.TrimSpace(string(out))
	switch {
	case answer == "yes" && err == nil:
		return true
	case strings.HasPrefix(answer, "no"):
		return false
	default:
		t.Fatalf("kubectl %s: %q, %v", strings.Join(cmdArgs, " "), answer, err)
		return false
	}
}
