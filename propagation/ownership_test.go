package propagation

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

const denyAllYAML = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: default
spec:
  podSelector: {}
  policyTypes: [Ingress]
`

// A namespace editor strips fleet.flotilla.dev/baseline from an enforced NetworkPolicy
// and opens it up in the same edit: the object is in the binding's inventory (by UID), so
// it stays the Baseline's — the label and the spec are restored, and no Conflict is
// reported.
func TestStrippedLabelDoesNotSwitchEnforcementOff(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	must(t, e.hub.Create(ctx, baseline("netpol", denyAllYAML)))
	e.waitBaseline(t, "netpol", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	m1 := e.members["member-1"]
	key := types.NamespacedName{Namespace: "default", Name: "deny-all"}
	np := &networkingv1.NetworkPolicy{}
	must(t, m1.Get(ctx, key, np))
	bb := e.waitBinding(t, "netpol", "member-1", fleetv1alpha1.ConditionApplied, metav1.ConditionTrue, fleetv1alpha1.ReasonApplySucceeded)
	if i := slices.IndexFunc(bb.Status.Inventory, func(en fleetv1alpha1.InventoryEntry) bool { return en.Name == "deny-all" }); i < 0 || bb.Status.Inventory[i].UID != np.UID {
		t.Fatalf("inventory %+v does not record NetworkPolicy default/deny-all by its UID %s", bb.Status.Inventory, np.UID)
	}

	edit := func(what string, change func(*networkingv1.NetworkPolicy)) time.Time {
		t.Helper()
		must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			np := &networkingv1.NetworkPolicy{}
			if err := m1.Get(ctx, key, np); err != nil {
				return err
			}
			change(np)
			return m1.Update(ctx, np)
		}))
		t.Logf("namespace editor: %s", what)
		return time.Now()
	}
	enforced := func(np *networkingv1.NetworkPolicy) error {
		switch {
		case np.Labels[fleetv1alpha1.LabelBaseline] != "netpol":
			return fmt.Errorf("labels %v lack %s=netpol", np.Labels, fleetv1alpha1.LabelBaseline)
		case !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}):
			return fmt.Errorf("policyTypes %v, want [Ingress] (deny all ingress)", np.Spec.PolicyTypes)
		}
		return nil
	}
	waitEnforced := func(what string, since time.Time) {
		t.Helper()
		eventually(t, 30*time.Second, what, func() error {
			got := &networkingv1.NetworkPolicy{}
			if err := m1.Get(ctx, key, got); err != nil {
				return err
			}
			if got.UID != np.UID {
				return fmt.Errorf("UID %s, want the original %s: the controller must correct the object, not replace it", got.UID, np.UID)
			}
			return enforced(got)
		})
		t.Logf("%s after %v", what, time.Since(since).Round(10*time.Millisecond))
	}

	// Switching policyTypes to Egress stops isolating the pods' ingress: the policy no
	// longer denies anything it was written to deny.
	start := edit("strip the baseline label and stop isolating ingress", func(np *networkingv1.NetworkPolicy) {
		delete(np.Labels, fleetv1alpha1.LabelBaseline)
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	})
	waitEnforced("label and deny-all restored", start)

	start = edit("strip the baseline label", func(np *networkingv1.NetworkPolicy) {
		delete(np.Labels, fleetv1alpha1.LabelBaseline)
	})
	waitEnforced("label restored", start)
	start = edit("stop isolating ingress", func(np *networkingv1.NetworkPolicy) {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	})
	waitEnforced("deny-all restored", start)

	start = edit("strip both ownership labels", func(np *networkingv1.NetworkPolicy) {
		delete(np.Labels, fleetv1alpha1.LabelBaseline)
		delete(np.Labels, fleetv1alpha1.LabelManagedBy)
	})
	waitEnforced("ownership labels restored", start)

	bb = &fleetv1alpha1.BaselineBinding{}
	must(t, e.hub.Get(ctx, types.NamespacedName{Name: fleetv1alpha1.BindingName("netpol", "member-1")}, bb))
	if c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionConflict); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("Conflict condition %+v, want False: the object is the Baseline's by its inventory UID", c)
	}
	b := &fleetv1alpha1.Baseline{}
	must(t, e.hub.Get(ctx, types.NamespacedName{Name: "netpol"}, b))
	if b.Status.Conflicted != 0 {
		t.Errorf("Baseline reports %d conflicted members, want 0", b.Status.Conflicted)
	}
}
