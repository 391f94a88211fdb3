package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func TestRolloutStatus(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{NoControllerManager: true})
	hub := adminClient(t, f.Hub)
	for _, m := range []string{"m1", "m2", "m3"} {
		mustCreate(t, hub, memberClusterObj(m, map[string]string{"env": "prod"}))
	}
	mustCreate(t, hub, memberClusterObj("dev", map[string]string{"env": "dev"}))
	const rev = "abc1234567"
	args := func(baseline string, extra ...string) []string {
		return append([]string{"rollout", "status", baseline, "--kubeconfig", f.Hub.KubeconfigPath}, extra...)
	}
	failedApply := condition(fleetv1alpha1.ConditionApplied, metav1.ConditionFalse, fleetv1alpha1.ReasonApplyFailed,
		`apply to cluster "m2": NetworkPolicy default/deny dry-run failed (Invalid)`)

	// A rollout in progress: m1 done, m2 released and applying, m3 not released yet.
	mustCreate(t, hub, baselineObj("web", map[string]string{"env": "prod"}, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"))
	setBaselineStatus(t, hub, "web", fleetv1alpha1.BaselineStatus{Revision: rev, Selected: 3, Applied: 1, Healthy: 1})
	bind(t, hub, bindingObj("web", "m1", rev), done(rev))
	bind(t, hub, bindingObj("web", "m2", rev), done("0000000000"))
	bind(t, hub, bindingObj("web", "m3", "0000000000"), withCondition(done("0000000000"),
		condition(fleetv1alpha1.ConditionApplied, metav1.ConditionTrue, fleetv1alpha1.ReasonWaitingForRollout,
			"the Baseline is at revision "+rev+"; this member holds 0000000000 until the rollout reaches it")))

	t.Run("each selected member and a summary line", func(t *testing.T) {
		out := mustFleetctl(t, args("web")...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 6 {
			t.Fatalf("want a header, a table of three members and a summary; got:\n%s", out)
		}
		if want := "Baseline web, revision " + rev + ": 1 of 3 members updated"; lines[0] != want {
			t.Errorf("header = %q, want %q", lines[0], want)
		}
		assertFields(t, lines[1], "CLUSTER", "RELEASED", "HOLDS", "APPLIED", "HEALTHY", "STATE", "REASON/MESSAGE")
		assertFields(t, lines[2], "m1", "yes", rev, "True", "True", "ok")
		assertFields(t, lines[3], "m2", "yes", "0000000000", "True", "True", "applying", "released;", "not", "applied", "yet")
		assertFields(t, lines[4], "m3", "no", "0000000000", "True", "True", "waiting", "WaitingForRollout:")
		if want := "Waiting for rollout: 1 of 3 members updated..."; lines[5] != want {
			t.Errorf("summary = %q, want %q", lines[5], want)
		}
	})

	t.Run("--watch prints each change and exits 0 when the rollout completes", func(t *testing.T) {
		var out syncBuffer
		result := make(chan error, 1)
		go func() { result <- fleetctlTo(t.Context(), &out, args("web", "--watch", "--timeout", "1m")...) }()
		eventually(t, 10*time.Second, "the first state printed", func() error {
			if !strings.Contains(out.String(), "1 of 3 members updated...") {
				return errors.New(out.String())
			}
			return nil
		})
		setBindingStatus(t, hub, fleetv1alpha1.BindingName("web", "m2"), done(rev))
		eventually(t, 10*time.Second, "the second state printed", func() error {
			if !strings.Contains(out.String(), "Waiting for rollout: 2 of 3 members updated...") {
				return errors.New(out.String())
			}
			return nil
		})
		released := &fleetv1alpha1.BaselineBinding{}
		if err := hub.Get(t.Context(), client.ObjectKey{Name: fleetv1alpha1.BindingName("web", "m3")}, released); err != nil {
			t.Fatal(err)
		}
		released.Spec.Revision = rev
		if err := hub.Update(t.Context(), released); err != nil {
			t.Fatal(err)
		}
		setBindingStatus(t, hub, released.Name, done(rev))
		select {
		case err := <-result:
			t.Logf("$ fleetctl rollout status web --watch\n%s", out.String())
			if err != nil {
				t.Fatalf("rollout status --watch of a completed rollout: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("rollout status --watch did not return after the rollout completed; it printed:\n%s", out.String())
		}
		if got := strings.Count(out.String(), "Baseline web, revision"); got != 3 {
			t.Errorf("want three states printed (1, 2 and 3 of 3 updated), got %d:\n%s", got, out.String())
		}
		assertContains(t, out.String(), "rollout of revision "+rev+" complete: 3 members\n")
	})

	t.Run("a stalled rollout fails with the Stalled message", func(t *testing.T) {
		mustCreate(t, hub, baselineObj("stalls", map[string]string{"env": "prod"}, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n"))
		bind(t, hub, bindingObj("stalls", "m1", rev), done(rev))
		bind(t, hub, bindingObj("stalls", "m2", rev), withCondition(done(""), failedApply))
		bind(t, hub, bindingObj("stalls", "m3", ""), fleetv1alpha1.BaselineBindingStatus{})
		const stalled = "rollout of revision " + rev + " stopped: 1 members failed (maxFailures 0); fix the failing objects"
		setBaselineStatus(t, hub, "stalls", fleetv1alpha1.BaselineStatus{Revision: rev, Selected: 3, Applied: 1, Healthy: 1, Failed: 1,
			Conditions: []metav1.Condition{condition(fleetv1alpha1.ConditionStalled, metav1.ConditionTrue, fleetv1alpha1.ReasonTooManyFailures, stalled)}})

		for _, extra := range [][]string{nil, {"--watch"}} {
			out, err := fleetctl(t, args("stalls", extra...)...)
			if code, _ := exitCode(err); code != 1 || !strings.Contains(err.Error(), "TooManyFailures: "+stalled) {
				t.Errorf("rollout status %v: error %v (exit %d), want exit 1 with the Stalled reason and message", extra, err, code)
			}
			assertContains(t, out, "rollout of revision "+rev+" stalled: TooManyFailures: "+stalled)
			assertFields(t, lineStarting(t, out, "m2 "), "m2", "yes", "-", "False", "True", "FAILED", "ApplyFailed:", "apply")
			// m3: no revision released, no conditions yet.
			assertFields(t, lineStarting(t, out, "m3 "), "m3", "no", "-", "Unknown", "Unknown", "waiting")
		}
	})

	t.Run("--watch gives up after --timeout with exit 1", func(t *testing.T) {
		mustCreate(t, hub, baselineObj("slow", map[string]string{"env": "dev"}, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: z\n"))
		setBaselineStatus(t, hub, "slow", fleetv1alpha1.BaselineStatus{Revision: rev, Selected: 1})
		start := time.Now()
		out, err := fleetctl(t, args("slow", "--watch", "--timeout", "2s")...)
		if code, _ := exitCode(err); code != 1 || !strings.Contains(err.Error(), `timed out after 2s waiting for the rollout of baseline "slow": 0 of 1 member updated`) {
			t.Errorf("error %v (exit %d), want a timeout naming the progress, exit 1", err, code)
		}
		if d := time.Since(start); d < 2*time.Second || d > 10*time.Second {
			t.Errorf("returned after %s, want about 2s", d)
		}
		// A selected member the controller has not bound yet is waiting too.
		assertFields(t, lineStarting(t, out, "dev "), "dev", "no", "-", "-", "-", "waiting", "no", "BaselineBinding", "yet")
	})

	t.Run("a spec the controller has not observed yet is not complete", func(t *testing.T) {
		b := &fleetv1alpha1.Baseline{}
		if err := hub.Get(t.Context(), client.ObjectKey{Name: "web"}, b); err != nil {
			t.Fatal(err)
		}
		b.Spec.Paused = true // a new generation
		if err := hub.Update(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		out := mustFleetctl(t, args("web")...)
		assertContains(t, out, `Waiting for fleet-controller to observe generation 2 of baseline "web"...`)
	})

	t.Run("an unknown baseline", func(t *testing.T) {
		_, err := fleetctl(t, args("nope")...)
		if err == nil || !strings.Contains(err.Error(), `baseline "nope" not found on the hub`) {
			t.Errorf("error = %v, want one saying the baseline is not found", err)
		}
	})
}

// lineStarting returns the first line of out that starts with prefix.
func lineStarting(t *testing.T, out, prefix string) string {
	t.Helper()
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSuffix(line, "\n")
		}
	}
	t.Errorf("no line starts with %q in:\n%s", prefix, out)
	return ""
}
