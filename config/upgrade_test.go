package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e"
	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// upgradeBaseline is a Baseline created under the previous release and reconciled by the new one.
const upgradeBaseline = `apiVersion: fleet.flotilla.dev/v1alpha1
kind: Baseline
metadata:
  name: upgrade
spec:
  clusterSelector: {}
  resources:
  - inline: |
      apiVersion: v1
      kind: ConfigMap
      metadata: {name: from-the-hub, namespace: default}
      data: {installed: before-the-upgrade}
`

// TestUpgradeFromPreviousRelease installs the previous release's install.yaml (testdata: the
// install of the commit before `make release` existed) the way README "Install" says, creates a
// member and a Baseline with it, applies this checkout's install.yaml as `make release` renders
// it, and checks that nothing was lost (same objects, same specs), that the Deployment now names
// the image by digest, and that the new controller — run as the installed ServiceAccount, with
// exactly the installed RBAC, since the hub has no nodes for its Pods — reconciles what the
// previous release's users created, and reports its version to `fleetctl version`.
func TestUpgradeFromPreviousRelease(t *testing.T) {
	bins := binaries(t)
	fleet := localfleet.StartForTest(t, localfleet.Options{Members: 1, NoCRDs: true})
	hubKC := "--kubeconfig=" + fleet.Hub.KubeconfigPath
	dir := t.TempDir()
	fleetctl := func(args ...string) []byte {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), bins.Fleetctl, append(args, hubKC)...).CombinedOutput()
		if err != nil {
			t.Fatalf("fleetctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	// The previous release, as a user installed it.
	run(t, nil, hubKC, "apply", "-f", filepath.Join(repoRoot(t), "config", "testdata", "install-previous.yaml"))
	run(t, nil, hubKC, "wait", "--for=condition=Established", "--timeout=60s", "crd/memberclusters.fleet.flotilla.dev", "crd/baselines.fleet.flotilla.dev")
	fleetctl("register", "m1", "--member-kubeconfig", fleet.Members[0].KubeconfigPath, "--labels", "env=upgrade")
	run(t, []byte(upgradeBaseline), hubKC, "apply", "-f", "-")

	scheme := runtime.NewScheme()
	fleettest.Must(t, clientgoscheme.AddToScheme(scheme))
	fleettest.Must(t, fleetv1alpha1.AddToScheme(scheme))
	hub, err := client.New(fleet.Hub.Config, client.Options{Scheme: scheme})
	fleettest.Must(t, err)
	before := snapshot(t, hub)

	// The new release, rendered as `make release` renders it.
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const newVersion = "v9.9.9-upgrade"
	installYAML := filepath.Join(dir, "install.yaml")
	mk := exec.CommandContext(t.Context(), "make", "-C", repoRoot(t), "--no-print-directory", "release-manifests",
		"IMAGE_DIGEST="+digest, "INSTALL_YAML="+installYAML, "VERSION="+newVersion, "KUBECTL="+kubectl(t))
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make release-manifests: %v\n%s", err, out)
	}
	run(t, nil, hubKC, "apply", "-f", installYAML)

	if diff := cmp.Diff(before, snapshot(t, hub)); diff != "" {
		t.Errorf("the upgrade changed what users created (-before +after):\n%s", diff)
	}
	image := string(run(t, nil, hubKC, "-n", hubNamespace, "get", "deployment", "flotilla-controller",
		"-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.labels.app\\.kubernetes\\.io/version}"))
	if want := "flotilla/fleet-controller@" + digest + " " + newVersion; image != want {
		t.Errorf("upgraded Deployment: image and version %q, want %q", image, want)
	}

	// The new controller takes over what the previous release's users made.
	saKubeconfig := filepath.Join(dir, "controller.kubeconfig")
	fleettest.Must(t, e2e.WriteServiceAccountKubeconfig(t.Context(), fleet.Hub.Config, saKubeconfig, time.Hour))
	c, err := e2e.StartController(t.Context(), e2e.ControllerOptions{
		Bin: bins.Controller, Kubeconfig: saKubeconfig, LogPath: filepath.Join(dir, "fleet-controller.log"),
		Args: []string{"--allow-loopback-members", "--metrics-secure=false"},
	})
	fleettest.Must(t, err)
	t.Cleanup(c.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("fleet-controller log:\n%s", c.Log())
		}
	})
	member, err := client.New(fleet.Members[0].Config, client.Options{Scheme: scheme})
	fleettest.Must(t, err)
	fleettest.Eventually(t, 90*time.Second, "member m1 Ready and the Baseline's ConfigMap in it", func() error {
		mc := &fleetv1alpha1.MemberCluster{}
		if err := hub.Get(t.Context(), client.ObjectKey{Name: "m1"}, mc); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(mc.Status.Conditions, fleetv1alpha1.ConditionReady) {
			return fmt.Errorf("m1 conditions %+v", mc.Status.Conditions)
		}
		cm := &corev1.ConfigMap{}
		return member.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: "from-the-hub"}, cm)
	})

	// fleetctl version shows the version of the controller that runs.
	want, err := exec.CommandContext(t.Context(), bins.Controller, "--version").Output()
	fleettest.Must(t, err)
	fleettest.Eventually(t, 30*time.Second, "fleetctl version to report the running controller", func() error {
		var report struct {
			Hub struct {
				Controller struct{ Version, GitCommit string }
			}
		}
		out := fleetctl("version", "-o", "json")
		if err := json.Unmarshal(out, &report); err != nil {
			return fmt.Errorf("fleetctl version -o json: %w\n%s", err, out)
		}
		got := report.Hub.Controller
		if got.Version == "" || !bytes.Contains(want, []byte(got.Version+" (commit "+got.GitCommit)) {
			return fmt.Errorf("fleetctl version reports controller %+v; the binary says %q", got, want)
		}
		return nil
	})
}

// upgradeState is what a user made before an upgrade, as it must be after.
type upgradeState struct {
	MemberClusters map[string]objectState
	Baselines      map[string]objectState
	Secrets        map[string]objectState
}

type objectState struct {
	UID    string
	Labels map[string]string
	Spec   string
}

func snapshot(t *testing.T, hub client.Client) upgradeState {
	t.Helper()
	s := upgradeState{MemberClusters: map[string]objectState{}, Baselines: map[string]objectState{}, Secrets: map[string]objectState{}}
	spec := func(v any) string {
		data, err := json.Marshal(v)
		fleettest.Must(t, err)
		return string(data)
	}
	var mcs fleetv1alpha1.MemberClusterList
	fleettest.Must(t, hub.List(t.Context(), &mcs))
	for _, o := range mcs.Items {
		s.MemberClusters[o.Name] = objectState{UID: string(o.UID), Labels: o.Labels, Spec: spec(o.Spec)}
	}
	var bls fleetv1alpha1.BaselineList
	fleettest.Must(t, hub.List(t.Context(), &bls))
	for _, o := range bls.Items {
		s.Baselines[o.Name] = objectState{UID: string(o.UID), Labels: o.Labels, Spec: spec(o.Spec)}
	}
	var secrets corev1.SecretList
	fleettest.Must(t, hub.List(t.Context(), &secrets, client.InNamespace(hubNamespace)))
	for _, o := range secrets.Items {
		s.Secrets[o.Name] = objectState{UID: string(o.UID), Labels: o.Labels, Spec: spec(o.Data)}
	}
	if len(s.MemberClusters) != 1 || len(s.Baselines) != 1 {
		t.Fatalf("want the member and the Baseline made before the upgrade, got %+v", s)
	}
	return s
}
