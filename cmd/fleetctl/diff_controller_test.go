package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/clusters"
	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation"
)

// agreeV1 and agreeV2 are two revisions of a Baseline: between them "changed" changes,
// "stale" leaves, "added" and "unowned" join.
const (
	agreeV1 = `apiVersion: v1
kind: ConfigMap
metadata: {name: same, namespace: default}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: changed, namespace: default}
data: {k: old}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: stale, namespace: default}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: stripped, namespace: default}
data: {k: v}
`
	agreeV2 = `apiVersion: v1
kind: ConfigMap
metadata: {name: same, namespace: default}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: changed, namespace: default}
data: {k: new}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: stripped, namespace: default}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: added, namespace: default}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unowned, namespace: default}
data: {k: v}
`
)

// fleetctl diff and fleet-controller see the same member state; what diff says the apply
// will do (create, update, prune, conflict, leave alone) is what the controller then does.
func TestDiffAgreesWithController(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 1, NoControllerManager: true})
	hub, m1 := adminClient(t, f.Hub), adminClient(t, f.Members[0])
	ctx := t.Context()
	ensureHubNamespaceForTest(t, hub)
	registerWithAdminKubeconfig(t, hub, "m1", f.Members[0], map[string]string{"env": "test"})
	mustCreate(t, hub, baselineObj("agree", map[string]string{"env": "test"}, agreeV1))

	// The controller applies revision 1 and records its inventory, then stops.
	stop := runController(t, f)
	waitApplied(t, hub, "agree", "m1")
	stop()

	// While it is down: the Baseline moves to revision 2, someone strips the ownership label
	// of an object it applied (still the Baseline's by its inventory UID) and edits it, and
	// someone creates an object revision 2 wants.
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		b := &fleetv1alpha1.Baseline{}
		if err := hub.Get(ctx, client.ObjectKey{Name: "agree"}, b); err != nil {
			return err
		}
		b.Spec.Resources = []fleetv1alpha1.ResourceSource{{Inline: agreeV2}}
		return hub.Update(ctx, b)
	}))
	stripped := &corev1.ConfigMap{}
	must(t, m1.Get(ctx, client.ObjectKey{Namespace: "default", Name: "stripped"}, stripped))
	delete(stripped.Labels, fleetv1alpha1.LabelBaseline)
	stripped.Data["k"] = "edited"
	must(t, m1.Update(ctx, stripped))
	mustCreate(t, m1, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unowned", Namespace: "default"}, Data: map[string]string{"k": "v"}})

	out, err := fleetctl(t, "diff", "agree", "--kubeconfig", f.Hub.KubeconfigPath)
	if code, _ := exitCode(err); code != diffExitChanges {
		t.Fatalf("fleetctl diff: exit code %d (%v), want %d", code, err, diffExitChanges)
	}
	said := diffSays(out)
	wantSaid := map[string]string{
		"ConfigMap default/changed":  "update",
		"ConfigMap default/stripped": "update",
		"ConfigMap default/added":    "create",
		"ConfigMap default/unowned":  "conflict",
		"ConfigMap default/stale":    "prune",
	}
	if d := cmp.Diff(wantSaid, said); d != "" {
		t.Errorf("fleetctl diff said (-want +got):\n%s", d)
	}
	revision := regexp.MustCompile(`Baseline agree at revision (\S+):`).FindStringSubmatch(out)
	if revision == nil {
		t.Fatalf("diff output names no revision:\n%s", out)
	}

	before := configMapVersions(t, m1)
	stop = runController(t, f)
	defer stop()
	bb := waitApplied(t, hub, "agree", "m1", revision[1])
	after := configMapVersions(t, m1)
	conflict := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionConflict)
	did := map[string]string{}
	for ref, rv := range before {
		switch now, ok := after[ref]; {
		case !ok:
			did[ref] = "prune"
		case now != rv:
			did[ref] = "update"
		case conflict != nil && conflict.Status == metav1.ConditionTrue && strings.Contains(conflict.Message, ref):
			did[ref] = "conflict"
		}
	}
	for ref := range after {
		if _, ok := before[ref]; !ok {
			did[ref] = "create"
		}
	}
	if d := cmp.Diff(said, did); d != "" {
		t.Errorf("diff said (-) and the controller did (+):\n%s\ndiff output:\n%s", d, out)
	}
}

// diffSays maps each object the diff output names to what it says the apply does.
func diffSays(out string) map[string]string {
	said := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		for prefix, action := range map[string]string{"+ create ": "create", "~ update ": "update", "~ adopt ": "update", "- prune ": "prune", "! conflict ": "conflict"} {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				ref, _, _ := strings.Cut(rest, ":")
				ref, _, _ = strings.Cut(ref, " (")
				said[strings.TrimSpace(ref)] = action
			}
		}
	}
	return said
}

// configMapVersions are the resourceVersions of the ConfigMaps in default, by "ConfigMap
// default/name".
func configMapVersions(t *testing.T, c client.Client) map[string]string {
	t.Helper()
	var list corev1.ConfigMapList
	must(t, c.List(t.Context(), &list, client.InNamespace("default")))
	out := map[string]string{}
	for _, cm := range list.Items {
		if cm.Name != "kube-root-ca.crt" {
			out["ConfigMap default/"+cm.Name] = cm.ResourceVersion
		}
	}
	return out
}

// waitApplied waits until the binding of baseline in cluster holds the Baseline's current
// revision (or want, when given) applied and healthy.
func waitApplied(t *testing.T, hub client.Client, baseline, cluster string, want ...string) *fleetv1alpha1.BaselineBinding {
	t.Helper()
	var bb *fleetv1alpha1.BaselineBinding
	fleettest.Eventually(t, 90*time.Second, fmt.Sprintf("binding %s/%s applied and healthy", baseline, cluster), func() error {
		b := &fleetv1alpha1.Baseline{}
		if err := hub.Get(context.Background(), client.ObjectKey{Name: baseline}, b); err != nil {
			return err
		}
		revision := b.Status.Revision
		if len(want) > 0 && revision != want[0] {
			return fmt.Errorf("Baseline at revision %q, want %q", revision, want[0])
		}
		got := &fleetv1alpha1.BaselineBinding{}
		if err := hub.Get(context.Background(), client.ObjectKey{Name: fleetv1alpha1.BindingName(baseline, cluster)}, got); err != nil {
			return err
		}
		if !got.Done(revision) {
			return fmt.Errorf("revision %q not done: status %+v", revision, got.Status)
		}
		bb = got
		return nil
	})
	return bb
}

// runController runs fleet-controller's clusters and propagation domains in process
// against the fleet's hub.
func runController(t *testing.T, f *localfleet.Fleet) (stop func()) {
	t.Helper()
	scheme := runtime.NewScheme()
	must(t, clientgoscheme.AddToScheme(scheme))
	must(t, fleetv1alpha1.AddToScheme(scheme))
	_, stop = fleettest.RunManager(t, f.Hub.Config, scheme, func(mgr ctrl.Manager) error {
		conns, err := clusters.Setup(mgr, clusters.SetupOptions{
			HubNamespace: fleetv1alpha1.DefaultHubNamespace,
			// Local fleet members listen on loopback.
			Policy: clusters.CredentialPolicy{AllowLoopback: true},
			Connections: clusters.Options{ProbeInterval: 500 * time.Millisecond, ProbeTimeout: time.Second, FailureThreshold: 2, MaxBackoff: time.Second,
				DynamicLabelSelector: labels.SelectorFromSet(labels.Set{fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue})},
			Heartbeat: time.Minute,
		})
		if err != nil {
			return err
		}
		return propagation.Setup(mgr, conns, propagation.SetupOptions{HubNamespace: fleetv1alpha1.DefaultHubNamespace, Resync: time.Minute})
	})
	return stop
}

var must = fleettest.Must
