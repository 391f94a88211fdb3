package main

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func TestBindingState(t *testing.T) {
	applied := func(status metav1.ConditionStatus, reason string) metav1.Condition {
		return condition(fleetv1alpha1.ConditionApplied, status, reason, "")
	}
	cases := []struct {
		name         string
		specRevision string
		status       fleetv1alpha1.BaselineBindingStatus
		want         string
	}{
		{name: "applied and healthy at the revision", specRevision: "r2", status: done("r2"), want: stateOK},
		{name: "released, still on the old revision", specRevision: "r2", status: done("r1"), want: stateApplying},
		{name: "released, applied, not healthy yet", specRevision: "r2",
			status: withCondition(done("r2"), condition(fleetv1alpha1.ConditionHealthy, metav1.ConditionFalse, fleetv1alpha1.ReasonUnhealthy, "")), want: stateApplying},
		{name: "not released", specRevision: "r1", status: done("r1"), want: stateWaiting},
		{name: "no revision released at all", specRevision: "",
			status: fleetv1alpha1.BaselineBindingStatus{Conditions: []metav1.Condition{applied(metav1.ConditionFalse, fleetv1alpha1.ReasonWaitingForRollout)}}, want: stateWaiting},
		{name: "apply failed", specRevision: "r2", status: withCondition(done("r1"), applied(metav1.ConditionFalse, fleetv1alpha1.ReasonApplyFailed)), want: stateFailed},
		{name: "unknown kind", specRevision: "r2", status: withCondition(done("r1"), applied(metav1.ConditionFalse, fleetv1alpha1.ReasonUnknownKind)), want: stateFailed},
		{name: "unreachable explains everything else", specRevision: "r2",
			status: withCondition(withCondition(done("r1"), applied(metav1.ConditionFalse, fleetv1alpha1.ReasonClusterUnreachable)),
				condition(fleetv1alpha1.ConditionConflict, metav1.ConditionTrue, fleetv1alpha1.ReasonOwnedByOther, "")), want: stateUnreachable},
		{name: "conflict", specRevision: "r2",
			status: withCondition(done("r2"), condition(fleetv1alpha1.ConditionConflict, metav1.ConditionTrue, fleetv1alpha1.ReasonOwnedByOther, "")), want: stateConflict},
		{name: "drift reported (Inform)", specRevision: "r2",
			status: withCondition(done("r2"), condition(fleetv1alpha1.ConditionDrifted, metav1.ConditionTrue, fleetv1alpha1.ReasonDriftDetected, "")), want: stateDrifted},
		{name: "drift corrected is fine", specRevision: "r2",
			status: withCondition(done("r2"), condition(fleetv1alpha1.ConditionDrifted, metav1.ConditionFalse, fleetv1alpha1.ReasonDriftCorrected, "")), want: stateOK},
		{name: "paused", specRevision: "r2", status: withCondition(done("r1"), applied(metav1.ConditionTrue, fleetv1alpha1.ReasonPaused)), want: statePaused},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bb := bindingObj("b", "c", tc.specRevision)
			bb.Status = tc.status
			if got := bindingState("r2", bb); got != tc.want {
				t.Errorf("bindingState = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStatusBaselines(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{NoControllerManager: true})
	hub := adminClient(t, f.Hub)
	status := []string{"status", "--kubeconfig", f.Hub.KubeconfigPath}

	t.Run("no baselines", func(t *testing.T) {
		out := mustFleetctl(t, status...)
		assertContains(t, out, "\n\nNo baselines. A Baseline puts manifests into every selected member: kubectl explain baseline.spec\n")
	})

	// Three members (no real clusters are needed: nothing connects to them here).
	mustCreate(t, hub, memberClusterObj("m1", map[string]string{"env": "prod"}))
	mustCreate(t, hub, memberClusterObj("m2", map[string]string{"env": "prod"}))
	mustCreate(t, hub, memberClusterObj("m3", map[string]string{"env": "dev"}))
	const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: default\n"

	// security: every member; ok in m1, a failed apply in m2, a conflict in m3.
	mustCreate(t, hub, baselineObj("security", nil, cm))
	setBaselineStatus(t, hub, "security", fleetv1alpha1.BaselineStatus{Revision: "aaaa111111", Selected: 3, Applied: 2, Healthy: 2, Failed: 1, Conflicted: 1,
		Conditions: []metav1.Condition{condition(fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonOwnedByOther, "")}})
	bind(t, hub, bindingObj("security", "m1", "aaaa111111"), done("aaaa111111"))
	bind(t, hub, bindingObj("security", "m2", "aaaa111111"), withCondition(done("0000000000"),
		condition(fleetv1alpha1.ConditionApplied, metav1.ConditionFalse, fleetv1alpha1.ReasonApplyFailed,
			`apply to cluster "m2": NetworkPolicy default/deny dry-run failed (Invalid):`+"\n  spec.podSelector: Required value")))
	bind(t, hub, bindingObj("security", "m3", "aaaa111111"), withCondition(done("aaaa111111"),
		condition(fleetv1alpha1.ConditionConflict, metav1.ConditionTrue, fleetv1alpha1.ReasonOwnedByOther, `left untouched: ConfigMap default/x is owned by Baseline "other"`)))

	// addons: env=prod only; m1 applying, m2 waiting for the rollout, m3 not selected.
	mustCreate(t, hub, baselineObj("addons", map[string]string{"env": "prod"}, cm))
	setBaselineStatus(t, hub, "addons", fleetv1alpha1.BaselineStatus{Revision: "bbbb222222", Selected: 2,
		Conditions: []metav1.Condition{condition(fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonProgressing, "")}})
	bind(t, hub, bindingObj("addons", "m1", "bbbb222222"), done("0000000000"))
	bind(t, hub, bindingObj("addons", "m2", ""), fleetv1alpha1.BaselineBindingStatus{Conditions: []metav1.Condition{
		condition(fleetv1alpha1.ConditionApplied, metav1.ConditionFalse, fleetv1alpha1.ReasonWaitingForRollout, "waiting for the rollout to release a revision to this member"),
	}})

	// audit: env=dev, policy Inform, drifted in m3.
	audit := baselineObj("audit", map[string]string{"env": "dev"}, cm)
	audit.Spec.Policy = fleetv1alpha1.PolicyInform
	mustCreate(t, hub, audit)
	setBaselineStatus(t, hub, "audit", fleetv1alpha1.BaselineStatus{Revision: "cccc333333", Selected: 1, Applied: 1, Healthy: 1, Drifted: 1,
		Conditions: []metav1.Condition{condition(fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonDriftDetected, "")}})
	bind(t, hub, bindingObj("audit", "m3", "cccc333333"), withCondition(done("cccc333333"),
		condition(fleetv1alpha1.ConditionDrifted, metav1.ConditionTrue, fleetv1alpha1.ReasonDriftDetected, "ConfigMap default/x differs")))

	// broken: sources that do not parse stop it before any binding exists.
	mustCreate(t, hub, baselineObj("broken", nil, cm))
	setBaselineStatus(t, hub, "broken", fleetv1alpha1.BaselineStatus{Conditions: []metav1.Condition{
		condition(fleetv1alpha1.ConditionStalled, metav1.ConditionTrue, fleetv1alpha1.ReasonInvalidSource, "resources[0] (inline) document 2: no kind"),
		condition(fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonInvalidSource, "resources[0] (inline) document 2: no kind"),
	}})

	// ready: every member ok.
	mustCreate(t, hub, baselineObj("ready", nil, cm))
	setBaselineStatus(t, hub, "ready", fleetv1alpha1.BaselineStatus{Revision: "dddd444444", Selected: 3, Applied: 3, Healthy: 3,
		Conditions: []metav1.Condition{condition(fleetv1alpha1.ConditionReady, metav1.ConditionTrue, fleetv1alpha1.ReasonRolloutComplete, "")}})
	for _, m := range []string{"m1", "m2", "m3"} {
		bind(t, hub, bindingObj("ready", m, "dddd444444"), done("dddd444444"))
	}

	out := mustFleetctl(t, status...)
	sections := strings.Split(out, "\n\n")
	if len(sections) < 3 {
		t.Fatalf("want the clusters section, then baselines, matrix and problems; got:\n%s", out)
	}
	if !strings.HasPrefix(sections[0], "Clusters: 3") {
		t.Errorf("the clusters section should come first; got:\n%s", out)
	}

	t.Run("one row per baseline with the controller's counts", func(t *testing.T) {
		lines := strings.Split(sections[1], "\n")
		if lines[0] != "Baselines: 5 (1 ready, 4 not ready)" {
			t.Errorf("summary = %q", lines[0])
		}
		assertFields(t, lines[1], "NAME", "READY", "REVISION", "SELECTED", "APPLIED", "HEALTHY", "FAILED", "DRIFTED", "CONFLICTED")
		assertFields(t, lines[2], "addons", "False", "bbbb222222", "2", "0", "0", "0", "0", "0")
		assertFields(t, lines[3], "audit", "False", "cccc333333", "1", "1", "1", "0", "1", "0")
		assertFields(t, lines[4], "broken", "False", "-", "0", "0", "0", "0", "0", "0")
		assertFields(t, lines[5], "ready", "True", "dddd444444", "3", "3", "3", "0", "0", "0")
		assertFields(t, lines[6], "security", "False", "aaaa111111", "3", "2", "2", "1", "0", "1")
	})

	t.Run("baselines × clusters matrix", func(t *testing.T) {
		want := strings.Join([]string{
			"BASELINE  m1        m2       m3",
			"addons    applying  waiting  -",
			"audit     -         -        DRIFTED",
			"broken    waiting   waiting  waiting",
			"ready     ok        ok       ok",
			"security  ok        FAILED   CONFLICT",
		}, "\n")
		if sections[2] != want {
			t.Errorf("matrix:\n%s\nwant:\n%s", sections[2], want)
		}
	})

	t.Run("problems name the baseline, the cluster, the reason and the message", func(t *testing.T) {
		want := strings.Join([]string{
			"Problems:",
			"  audit/m3: DriftDetected: ConfigMap default/x differs",
			"  broken: InvalidSource: resources[0] (inline) document 2: no kind",
			`  security/m2: ApplyFailed: apply to cluster "m2": NetworkPolicy default/deny dry-run failed (Invalid): spec.podSelector: Required value`,
			`  security/m3: OwnedByOther: left untouched: ConfigMap default/x is owned by Baseline "other"`,
		}, "\n")
		// The services section follows the baselines' problems.
		if len(sections) != 5 || sections[3] != want || !strings.HasPrefix(sections[4], "No Services exported.") {
			t.Errorf("problems, then the services section:\n%s\nwant:\n%s\n\nNo Services exported. ...", strings.Join(sections[3:], "\n\n"), want)
		}
	})
}
