package fleettest

import (
	"fmt"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

// HubUser is the identity the hub controller uses in members when a test registers them with
// MemberKubeconfig: its requests are told apart from the test's own (the admin's) in the
// members' audit logs.
const HubUser = "flotilla-hub"

// MemberKubeconfig is a kubeconfig for m with every right, as the identity HubUser.
func MemberKubeconfig(tb testing.TB, m *localfleet.ControlPlane) []byte {
	tb.Helper()
	kc, err := m.UserKubeconfig(HubUser, "system:masters")
	Must(tb, err)
	return kc
}

// Audited is a cluster whose mutating requests a WriteCounter counts, and which of them.
type Audited struct {
	Cluster *localfleet.ControlPlane
	// Count says which requests count; nil counts every write of a user other than the
	// cluster's own components.
	Count func(localfleet.AuditedRequest) bool
}

// WriteCounter counts writes where they happen: in the API servers' audit logs (the fleet
// must have been started with localfleet.Options.AuditLog). A server-side apply that changes
// nothing leaves resourceVersion alone but is a request all the same; this sees it.
type WriteCounter struct {
	audited []Audited
	marks   []localfleet.AuditMark
}

// MarkWrites starts counting now.
func MarkWrites(tb testing.TB, audited ...Audited) *WriteCounter {
	tb.Helper()
	w := &WriteCounter{audited: audited}
	for _, a := range audited {
		m, err := a.Cluster.AuditMark()
		Must(tb, err)
		w.marks = append(w.marks, m)
	}
	return w
}

// Writes lists the counted writes since the mark, each as "cluster: user verb resource name";
// dry runs are not writes.
func (w *WriteCounter) Writes() ([]string, error) {
	var out []string
	for i, a := range w.audited {
		reqs, err := a.Cluster.Writes(w.marks[i])
		if err != nil {
			return nil, err
		}
		for _, r := range reqs {
			// A dry run (the diff before a server-side apply) is served but never persisted.
			if !r.DryRun && (a.Count == nil || a.Count(r)) {
				out = append(out, fmt.Sprintf("%s: %s", a.Cluster.Name, r))
			}
		}
	}
	return out, nil
}

// None is a check (for Eventually or Consistently) that fails once anything counted wrote.
func (w *WriteCounter) None() error {
	writes, err := w.Writes()
	if err != nil {
		return err
	}
	if len(writes) > 0 {
		return fmt.Errorf("%d writes: %v", len(writes), writes)
	}
	return nil
}

// ByUser counts the writes of user.
func ByUser(user string) func(localfleet.AuditedRequest) bool {
	return func(r localfleet.AuditedRequest) bool { return r.User == user }
}

// ToResources counts the writes to the given resources (plural names, any group), by anyone
// but the cluster's own components.
func ToResources(resources ...string) func(localfleet.AuditedRequest) bool {
	return func(r localfleet.AuditedRequest) bool {
		for _, res := range resources {
			if r.Resource == res {
				return true
			}
		}
		return false
	}
}

// Reconciles is how many reconciles the named controller has finished in this process (all
// managers together), from controller-runtime's reconcile counter: a test that restarts a
// controller waits for the new one's first reconciles before it judges what they did.
func Reconciles(tb testing.TB, controller string) float64 {
	tb.Helper()
	families, err := metrics.Registry.Gather()
	Must(tb, err)
	total := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == controller {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}
