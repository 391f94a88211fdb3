package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// unregister prints what leaving removed — per Baseline and deletionPolicy, mirrors in the
// member and of its Services elsewhere — or, when fleet-controller gave up on an unreachable
// member, its warning. The test plays fleet-controller: it reports and lets the
// MemberCluster go.

func TestUnregisterPrintsWhatWasRemoved(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 1})
	hub, m := adminClient(t, f.Hub), f.Members[0]
	ctx := t.Context()

	leave := func(t *testing.T, reason, message string) string {
		t.Helper()
		mustFleetctl(t, registerArgs(f, "m1", m)...)
		setFinalizers(t, hub, "m1", []string{fleetv1alpha1.FinalizerMemberCleanup})
		mc := &fleetv1alpha1.MemberCluster{}
		must(t, hub.Get(ctx, client.ObjectKey{Name: "m1"}, mc))
		var out syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- fleetctlTo(ctx, &out, "unregister", "m1", "--kubeconfig", f.Hub.KubeconfigPath)
		}()
		eventually(t, 20*time.Second, "MemberCluster m1 being deleted", func() error {
			if err := hub.Get(ctx, client.ObjectKey{Name: "m1"}, mc); err != nil || mc.DeletionTimestamp == nil {
				return fmt.Errorf("not deleting yet (get: %w)", err)
			}
			return nil
		})
		must(t, hub.Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{GenerateName: "m1.", Namespace: metav1.NamespaceDefault},
			InvolvedObject: corev1.ObjectReference{APIVersion: fleetv1alpha1.GroupVersion.String(), Kind: "MemberCluster", Name: "m1", UID: mc.UID},
			Reason:         reason, Message: message, Type: corev1.EventTypeNormal,
			FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(),
		}))
		release(t, hub, "m1")
		if err := <-done; err != nil {
			t.Fatalf("unregister: %v\n%s", err, out.String())
		}
		t.Logf("fleetctl unregister m1\n%s", out.String())
		return out.String()
	}

	configMap := func(name string) []fleetv1alpha1.ResourceSource {
		return []fleetv1alpha1.ResourceSource{{Inline: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: default\n"}}
	}
	must(t, hub.Create(ctx, &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: "addons"},
		Spec: fleetv1alpha1.BaselineSpec{Resources: configMap("addons-cm")}}))
	orphan := &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: "policies"},
		Spec: fleetv1alpha1.BaselineSpec{Resources: configMap("policies-cm")}}
	orphan.Spec.DeletionPolicy = fleetv1alpha1.DeletionOrphan
	must(t, hub.Create(ctx, orphan))
	for _, b := range []string{"addons", "policies"} {
		bb := &fleetv1alpha1.BaselineBinding{
			ObjectMeta: metav1.ObjectMeta{Name: fleetv1alpha1.BindingName(b, "m1"), Labels: map[string]string{fleetv1alpha1.LabelCluster: "m1"}},
			Spec:       fleetv1alpha1.BaselineBindingSpec{BaselineName: b, ClusterName: "m1"},
		}
		must(t, hub.Create(ctx, bb))
		bb.Status.Inventory = []fleetv1alpha1.InventoryEntry{{Version: "v1", Kind: "ConfigMap", Namespace: "default", Name: b + "-cm"}}
		must(t, hub.Status().Update(ctx, bb))
	}
	mirrored := &fleetv1alpha1.ExportedService{
		ObjectMeta: metav1.ObjectMeta{Name: fleetv1alpha1.ExportedServiceName("m2", "shop", "web")},
		Spec:       fleetv1alpha1.ExportedServiceSpec{Source: fleetv1alpha1.ServiceReference{Cluster: "m2", Namespace: "shop", Name: "web"}},
	}
	must(t, hub.Create(ctx, mirrored))
	mirrored.Status.MirroredInto = []string{"m1", "m3"}
	must(t, hub.Status().Update(ctx, mirrored))

	t.Run("a clean leave lists what was removed", func(t *testing.T) {
		out := leave(t, fleetv1alpha1.ReasonLeft, "left the fleet")
		assertContains(t, out,
			`member "m1": baseline addons: removed ConfigMap default/addons-cm`,
			`member "m1": baseline policies: left in place, no longer managed (deletionPolicy Orphan): ConfigMap default/policies-cm`,
			`member "m1": removed the mirror of m2/shop/web`,
			"hub: membercluster m1 deleted",
		)
	})

	t.Run("an incomplete clean-up is a warning with what was left behind", func(t *testing.T) {
		out := leave(t, fleetv1alpha1.ReasonCleanupIncomplete, "left the fleet with clean-up incomplete: left behind: Baseline objects of addons (1 objects)")
		assertContains(t, out, "hub: WARNING: left the fleet with clean-up incomplete: left behind: Baseline objects of addons (1 objects)")
		if strings.Contains(out, "baseline addons: removed") {
			t.Errorf("claims a removal that did not happen:\n%s", out)
		}
	})
}
