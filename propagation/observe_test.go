package propagation

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/ssa"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/plan"
)

func TestDriftOf(t *testing.T) {
	taken := []plan.Foreign{{Manager: "kubectl-edit"}}
	for _, tc := range []struct {
		name  string
		facts writeFacts
		want  correction
	}{
		{name: "a first create is the Baseline's", facts: writeFacts{action: ssa.CreatedAction}, want: notDrift},
		{name: "a create of an object the inventory held restores it", facts: writeFacts{action: ssa.CreatedAction, inInventory: true}, want: restored},
		{name: "a create after a new revision of an object the inventory held restores it too",
			facts: writeFacts{action: ssa.CreatedAction, inInventory: true, sameDesired: false}, want: restored},
		{name: "an update of a new revision is the Baseline's", facts: writeFacts{action: ssa.ConfiguredAction, inInventory: true}, want: notDrift},
		{name: "an update while the Baseline did not change reverts someone's change",
			facts: writeFacts{action: ssa.ConfiguredAction, inInventory: true, sameDesired: true}, want: reverted},
		{name: "others' content removed is a correction whatever the revision",
			facts: writeFacts{action: ssa.ConfiguredAction, inInventory: true, taken: taken}, want: tookOver},
		{name: "nothing written is nothing", facts: writeFacts{action: ssa.UnchangedAction, inInventory: true, sameDesired: true}, want: notDrift},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := driftOf(tc.facts); got != tc.want {
				t.Errorf("driftOf(%+v) = %q, want %q", tc.facts, got, tc.want)
			}
		})
	}
}

// A platform team reads drift three ways: the binding's Drifted condition, an event, and
// flotilla_baseline_drift_corrections_total. All three must move when someone deletes what
// the Baseline enforces, and none when the Baseline itself changes.
func TestDriftIsOthersChangesOnly(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	b := baseline("audited", namespaceYAML+"---\n"+configMapYAML)
	must(t, e.hub.Create(ctx, b))
	e.waitBaseline(t, "audited", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	e.waitBinding(t, "audited", "member-1", fleetv1alpha1.ConditionDrifted, metav1.ConditionFalse, fleetv1alpha1.ReasonInSync)
	corrections := func() float64 { return testutil.ToFloat64(driftCorrections.WithLabelValues("audited", "member-1")) }
	driftEvents := func() ([]string, error) {
		return e.eventsAbout(ctx, "audited", fleetv1alpha1.ReasonDriftCorrected, fleetv1alpha1.ReasonDriftDetected)
	}

	t.Run("a new revision is not drift", func(t *testing.T) {
		before := e.waitBaseline(t, "audited", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "").Status.Revision
		update(t, e.hub, b, func() {
			b.Spec.Resources[0].Inline = strings.Replace(b.Spec.Resources[0].Inline, `level: "1"`, `level: "2"`, 1)
		})
		e.waitObject(t, "member-1", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "addons", Name: "settings"}}, "level 2", func(err error) error {
			if err != nil {
				return err
			}
			cm := &corev1.ConfigMap{}
			must(t, e.members["member-1"].Get(ctx, types.NamespacedName{Namespace: "addons", Name: "settings"}, cm))
			if cm.Data["level"] != "2" {
				return fmt.Errorf("level %q", cm.Data["level"])
			}
			return nil
		})
		// The binding's status is written after the apply that counted (or not): once it
		// holds the new revision, the counter and the condition say what that apply found.
		var bb *fleetv1alpha1.BaselineBinding
		eventually(t, 30*time.Second, "the binding at the new revision", func() error {
			bb = e.waitBinding(t, "audited", "member-1", fleetv1alpha1.ConditionApplied, metav1.ConditionTrue, fleetv1alpha1.ReasonApplySucceeded)
			if bb.Status.Revision == before {
				return fmt.Errorf("still at %s", before)
			}
			return nil
		})
		if c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionDrifted); c == nil || c.Reason != fleetv1alpha1.ReasonInSync {
			t.Errorf("Drifted after a new revision: %+v, want reason %s", c, fleetv1alpha1.ReasonInSync)
		}
		if n := corrections(); n != 0 {
			t.Errorf("drift corrections after a new revision: %v, want 0", n)
		}
		// Events are sent asynchronously: none may arrive for a while.
		consistently(t, 3*time.Second, "no drift event after a new revision", func() error {
			got, err := driftEvents()
			if err == nil && len(got) > 0 {
				return fmt.Errorf("drift events: %v", got)
			}
			return err
		})
	})

	t.Run("a deleted object is restored and reported", func(t *testing.T) {
		must(t, e.members["member-1"].Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "addons", Name: "settings"}}))
		e.waitObject(t, "member-1", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "addons", Name: "settings"}}, "ConfigMap restored", exists)
		const want = "ConfigMap addons/settings restored"
		eventually(t, 30*time.Second, "the binding's Drifted condition names the restored object", func() error {
			bb := e.waitBinding(t, "audited", "member-1", fleetv1alpha1.ConditionDrifted, metav1.ConditionFalse, "")
			if c := meta.FindStatusCondition(bb.Status.Conditions, fleetv1alpha1.ConditionDrifted); c.Reason != fleetv1alpha1.ReasonDriftCorrected || !strings.Contains(c.Message, want) {
				return fmt.Errorf("Drifted %+v", c)
			}
			return nil
		})
		if n := corrections(); n != 1 {
			t.Errorf("drift corrections after one deleted object: %v, want 1", n)
		}
		eventually(t, 30*time.Second, "a DriftCorrected event naming the member and the object", func() error {
			got, err := driftEvents()
			if err != nil {
				return err
			}
			for _, ev := range got {
				if strings.HasPrefix(ev, "Normal DriftCorrected") && strings.Contains(ev, `cluster "member-1"`) && strings.Contains(ev, want) {
					return nil
				}
			}
			return fmt.Errorf("events: %v", got)
		})
	})
}

// eventsAbout lists, as "<type> <reason>: <note>", the hub's events regarding the
// cluster-scoped object name (a Baseline, a MemberCluster) with one of reasons.
func (e *env) eventsAbout(ctx context.Context, name string, reasons ...string) ([]string, error) {
	list := &corev1.EventList{}
	if err := e.hub.List(ctx, list); err != nil {
		return nil, err
	}
	var out []string
	for _, ev := range list.Items {
		if ev.InvolvedObject.Name == name && slices.Contains(reasons, ev.Reason) {
			out = append(out, fmt.Sprintf("%s %s: %s", ev.Type, ev.Reason, ev.Message))
		}
	}
	return out, nil
}

// seriesSum sums the values of c's series whose labels include match.
func seriesSum(c prometheus.Collector, match prometheus.Labels) float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	total := 0.0
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil || !labelsMatch(d.GetLabel(), match) {
			continue
		}
		switch {
		case d.Counter != nil:
			total += d.Counter.GetValue()
		case d.Gauge != nil:
			total += d.Gauge.GetValue()
		}
	}
	return total
}

func labelsMatch(pairs []*dto.LabelPair, match prometheus.Labels) bool {
	found := 0
	for _, p := range pairs {
		if v, ok := match[p.GetName()]; ok {
			if v != p.GetValue() {
				return false
			}
			found++
		}
	}
	return found == len(match)
}

// scraped lists the controller's series (from the registry its metrics endpoint serves) of
// flotilla_ families whose labels include match, as "family{labels}". Series of Baselines
// other than this file's are left out: the registry is the test binary's, and the fleets of
// earlier tests, stopped without deleting anything, leave theirs behind.
func scraped(t *testing.T, match prometheus.Labels) []string {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	must(t, err)
	var out []string
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "flotilla_") {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelsMatch(m.GetLabel(), match) && ours(m.GetLabel()) {
				out = append(out, fmt.Sprintf("%s%v", f.GetName(), m.GetLabel()))
			}
		}
	}
	return out
}

// Metrics must not report on what is gone: a deleted Baseline's series and an unregistered
// member's series leave the controller's endpoint, and those of what stays do not.
func TestMetricSeriesGoWithBaselineAndMember(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	must(t, e.hub.Create(ctx, baseline("short-lived", configMapDoc("short-lived", "x"))))
	must(t, e.hub.Create(ctx, baseline("long-lived", configMapDoc("long-lived", "x"))))
	for _, name := range []string{"short-lived", "long-lived"} {
		e.waitBaseline(t, name, fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	}
	has := func(what string, match prometheus.Labels, want ...string) {
		t.Helper()
		eventually(t, 30*time.Second, what, func() error {
			got := strings.Join(scraped(t, match), "\n")
			for _, w := range want {
				if !strings.Contains(got, w) {
					return fmt.Errorf("no %s among:\n%s", w, got)
				}
			}
			return nil
		})
	}
	none := func(what string, match prometheus.Labels) {
		t.Helper()
		eventually(t, 30*time.Second, what, func() error {
			if got := scraped(t, match); len(got) > 0 {
				return fmt.Errorf("still served:\n%s", strings.Join(got, "\n"))
			}
			return nil
		})
	}
	has("the Baseline's series", prometheus.Labels{"baseline": "short-lived"},
		"flotilla_baseline_ready", "flotilla_baseline_members", "flotilla_baseline_applies_total", "flotilla_baseline_apply_duration_seconds")
	has("member-2's series", prometheus.Labels{"cluster": "member-2"}, "flotilla_member_ready", "flotilla_baseline_applies_total")

	must(t, e.hub.Delete(ctx, &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: "short-lived"}}))
	none("no series of the deleted Baseline", prometheus.Labels{"baseline": "short-lived"})

	must(t, e.hub.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: "member-2"}}))
	eventually(t, 30*time.Second, "MemberCluster member-2 gone after its clean-up", func() error {
		return gone(e.hub.Get(ctx, types.NamespacedName{Name: "member-2"}, &fleetv1alpha1.MemberCluster{}))
	})
	none("no series of the unregistered member", prometheus.Labels{"cluster": "member-2"})
	has("what stays is still served", prometheus.Labels{"baseline": "long-lived", "cluster": "member-1"},
		"flotilla_baseline_applies_total")
	has("the remaining member's readiness", prometheus.Labels{"cluster": "member-1"}, "flotilla_member_ready")
}

// ours tells whether a series is of no Baseline, or of one of TestMetricSeriesGoWithBaselineAndMember's.
func ours(pairs []*dto.LabelPair) bool {
	for _, p := range pairs {
		if p.GetName() == "baseline" {
			return p.GetValue() == "short-lived" || p.GetValue() == "long-lived"
		}
	}
	return true
}

// Events tell changes: a fleet where nothing changes sends none, however often its objects
// are reconciled — here every MemberCluster, Baseline and binding is reconciled again (an
// annotation written on each) while member probes run every 500ms, one Baseline holding a
// conflict that an event reported once.
func TestSteadyFleetSendsNoEvents(t *testing.T) {
	e := newEnvWith(t, localfleet.Options{Members: 2, AuditLog: true}) // waitSettled counts writes
	ctx := context.Background()
	// Someone else's ConfigMap in member-1, where Baseline "clashing" wants its own.
	must(t, e.members["member-1"].Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "clash"}}))
	must(t, e.hub.Create(ctx, baseline("steady-events", clusterRoleYAML)))
	must(t, e.hub.Create(ctx, baseline("clashing", configMapDoc("clash", "x"))))
	e.waitBaseline(t, "steady-events", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	e.waitBinding(t, "clashing", "member-1", fleetv1alpha1.ConditionConflict, metav1.ConditionTrue, fleetv1alpha1.ReasonOwnedByOther)
	e.waitSettled(t)
	var before []string
	eventually(t, 30*time.Second, "the fleet's events: members connected, rollouts complete, the conflict", func() error {
		var err error
		if before, err = e.allEvents(ctx); err != nil {
			return err
		}
		got := strings.Join(before, "\n")
		for _, want := range []string{"MemberCluster/member-1 Normal Connected", "MemberCluster/member-2 Normal Connected",
			"Baseline/steady-events Normal RolloutComplete", "Baseline/clashing Warning OwnedByOther"} {
			if !strings.Contains(got, want) {
				return fmt.Errorf("no %q among:\n%s", want, got)
			}
		}
		return nil
	})

	poke := func(obj client.Object) {
		update(t, e.hub, obj, func() {
			a := obj.GetAnnotations()
			if a == nil {
				a = map[string]string{}
			}
			a["test.flotilla.dev/poke"] = time.Now().Format(time.RFC3339Nano)
			obj.SetAnnotations(a)
		})
	}
	for _, name := range []string{"member-1", "member-2"} {
		poke(&fleetv1alpha1.MemberCluster{ObjectMeta: metav1.ObjectMeta{Name: name}})
	}
	for _, name := range []string{"steady-events", "clashing"} {
		poke(&fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: name}})
		for _, cluster := range []string{"member-1", "member-2"} {
			poke(&fleetv1alpha1.BaselineBinding{ObjectMeta: metav1.ObjectMeta{Name: fleetv1alpha1.BindingName(name, cluster)}})
		}
	}
	consistently(t, 5*time.Second, "no new event, no repeat of an old one", func() error {
		after, err := e.allEvents(ctx)
		if err == nil && !slices.Equal(after, before) {
			return fmt.Errorf("events now:\n%s\nwere:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
		}
		return err
	})
}

// allEvents lists the hub's events as "<kind>/<name> <type> <reason> ×<series count>", sorted.
func (e *env) allEvents(ctx context.Context) ([]string, error) {
	list := &corev1.EventList{}
	if err := e.hub.List(ctx, list); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(list.Items))
	for _, ev := range list.Items {
		n := int32(1)
		if ev.Series != nil {
			n = ev.Series.Count
		}
		out = append(out, fmt.Sprintf("%s/%s %s %s ×%d", ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Type, ev.Reason, n))
	}
	slices.Sort(out)
	return out, nil
}
