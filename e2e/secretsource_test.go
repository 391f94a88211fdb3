//go:build e2e

package e2e_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flotilla-dev/flotilla/e2e"
)

// TestLabelledKubeconfigSecretRegistersAMember registers a member without fleetctl: a
// kubeconfig Secret labelled fleet.flotilla.dev/kubeconfig=true in the hub namespace, made
// with kubectl. Deleting the Secret unregisters it.
func TestLabelledKubeconfigSecretRegistersAMember(t *testing.T) {
	b := sharedBackend(t)
	hub := b.HubKubeconfig()
	m := b.Members()[0]
	name := "secret-" + m.Name // not the fleetctl spec's name: specs share the hub

	kubectl(t, "--kubeconfig", hub, "-n", e2e.HubNamespace, "create", "secret", "generic", name, "--from-file=value="+m.KubeconfigForHub())
	kubectl(t, "--kubeconfig", hub, "-n", e2e.HubNamespace, "annotate", "secret", name, "fleet.flotilla.dev/cluster-labels=env=e2e-secret")
	kubectl(t, "--kubeconfig", hub, "-n", e2e.HubNamespace, "label", "secret", name, "fleet.flotilla.dev/kubeconfig=true")

	eventually(t, readyTimeout, "MemberCluster "+name+" to be registered from the Secret and Ready", func() error {
		out, err := runProgram(t, suite.bins.Kubectl, "--kubeconfig", hub, "get", "membercluster", name, "-o",
			`jsonpath={.metadata.labels.env} {.metadata.labels.fleet\.flotilla\.dev/registration} {.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		if strings.TrimSpace(out) != "e2e-secret secret True" {
			return fmt.Errorf("labels env, registration and Ready: %q", out)
		}
		return nil
	})

	kubectl(t, "--kubeconfig", hub, "-n", e2e.HubNamespace, "delete", "secret", name)
	eventually(t, readyTimeout, "MemberCluster "+name+" to go with its Secret", func() error {
		out, err := runProgram(t, suite.bins.Kubectl, "--kubeconfig", hub, "get", "membercluster", name, "--ignore-not-found", "-o", "name")
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		if strings.TrimSpace(out) != "" {
			return fmt.Errorf("still there: %q", out)
		}
		return nil
	})
}
