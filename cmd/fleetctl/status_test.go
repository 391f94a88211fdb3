package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func TestStatus(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 2})
	hub := adminClient(t, f.Hub)
	status := []string{"status", "--kubeconfig", f.Hub.KubeconfigPath}

	t.Run("an empty fleet says how to register a cluster", func(t *testing.T) {
		out := clustersSection(mustFleetctl(t, status...))
		if want := "No member clusters registered. Register one with: fleetctl register NAME --member-kubeconfig FILE\n"; out != want {
			t.Errorf("status = %q, want %q", out, want)
		}
	})

	// Registered in reverse order: the table is sorted by name, not by creation.
	mustFleetctl(t, registerArgs(f, "m2", f.Members[1])...)
	mustFleetctl(t, registerArgs(f, "m1", f.Members[0])...)

	t.Run("clusters no controller has looked at yet", func(t *testing.T) {
		out := clustersSection(mustFleetctl(t, status...))
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 {
			t.Fatalf("want a summary, a header and two rows, got:\n%s", out)
		}
		if lines[0] != "Clusters: 2 (0 ready, 2 not ready)" {
			t.Errorf("summary = %q", lines[0])
		}
		assertFields(t, lines[1], "NAME", "READY", "CONNECTED", "VERSION", "NODES", "LAST", "PROBE", "REASON/MESSAGE")
		assertFields(t, lines[2], "m1", "Unknown", "Unknown", "-", "-", "-", "no", "status", "yet:")
		assertFields(t, lines[3], "m2", "Unknown", "Unknown", "-", "-", "-", "no", "status", "yet:")
	})

	t.Run("status reported by the controller", func(t *testing.T) {
		probed := metav1.NewTime(time.Now().Add(-12 * time.Second))
		setStatus(t, hub, "m1", fleetv1alpha1.MemberClusterStatus{
			Conditions: []metav1.Condition{
				condition(fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionTrue, fleetv1alpha1.ReasonValid, ""),
				condition(fleetv1alpha1.ConditionConnected, metav1.ConditionTrue, fleetv1alpha1.ReasonConnected, ""),
				condition(fleetv1alpha1.ConditionReady, metav1.ConditionTrue, fleetv1alpha1.ReasonHealthy, ""),
			},
			KubernetesVersion: "v1.37.2",
			NodeCount:         new(int32(3)),
			LastProbeTime:     &probed,
		})
		setStatus(t, hub, "m2", fleetv1alpha1.MemberClusterStatus{
			Conditions: []metav1.Condition{
				// Listed first, but Connected is the cause and is shown.
				condition(fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonNotConnected, "not connected"),
				condition(fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionTrue, fleetv1alpha1.ReasonValid, ""),
				condition(fleetv1alpha1.ConditionConnected, metav1.ConditionFalse, fleetv1alpha1.ReasonConnectionFailed, "dial tcp 127.0.0.1:1: connect: connection refused"),
			},
			LastProbeTime: &probed,
		})

		out := clustersSection(mustFleetctl(t, status...))
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 {
			t.Fatalf("want a summary, a header and two rows, got:\n%s", out)
		}
		if lines[0] != "Clusters: 2 (1 ready, 1 not ready)" {
			t.Errorf("summary = %q", lines[0])
		}
		assertFields(t, lines[2], "m1", "True", "True", "v1.37.2", "3")
		assertFields(t, lines[3], "m2", "False", "False", "-", "-")
		if !regexp.MustCompile(`^m1 .* 1[2-9]s ago$`).MatchString(lines[2]) {
			t.Errorf("m1 row %q: want LAST PROBE about 12s ago and no reason", lines[2])
		}
		if !strings.HasSuffix(lines[3], "ConnectionFailed: dial tcp 127.0.0.1:1: connect: connection refused") {
			t.Errorf("m2 row %q: want the Connected condition's reason and message", lines[3])
		}
		// The columns line up: every row's VERSION starts where the header's does.
		col := strings.Index(lines[1], "VERSION")
		for _, l := range lines[2:] {
			if got := l[col:]; !strings.HasPrefix(got, "v1.37.2") && !strings.HasPrefix(got, "-") {
				t.Errorf("row %q is not aligned with the header %q", l, lines[1])
			}
		}
	})
}

func TestStatusSections(t *testing.T) {
	failing := statusSection{name: "baselines", render: func(context.Context, statusInput, io.Writer) error {
		return errors.New("boom")
	}}
	working := statusSection{name: "services", render: func(_ context.Context, _ statusInput, w io.Writer) error {
		_, err := io.WriteString(w, "Services: 0\n")
		return err
	}}
	var out bytes.Buffer
	err := runStatus(t.Context(), &out, statusInput{}, []statusSection{failing, working})
	if err == nil || !strings.Contains(err.Error(), "baselines") {
		t.Errorf("runStatus error = %v, want one naming the failed section", err)
	}
	if want := "baselines: error: boom\n\nServices: 0\n"; out.String() != want {
		t.Errorf("a failing section should not hide the next one: got %q, want %q", out.String(), want)
	}
}

func TestFirstProblem(t *testing.T) {
	long := strings.Repeat("x", 150)
	cases := []struct {
		name  string
		conds []metav1.Condition
		want  string
	}{
		{name: "all true", conds: []metav1.Condition{
			condition(fleetv1alpha1.ConditionConnected, metav1.ConditionTrue, "Connected", ""),
			condition(fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "Healthy", ""),
		}, want: ""},
		{name: "credentials before readiness", conds: []metav1.Condition{
			condition(fleetv1alpha1.ConditionReady, metav1.ConditionFalse, "NotConnected", "x"),
			condition(fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionFalse, "ExecNotAllowed", "users[a].user.exec:\n  not allowed"),
		}, want: "ExecNotAllowed: users[a].user.exec: not allowed"},
		{name: "unknown counts as a problem", conds: []metav1.Condition{
			condition(fleetv1alpha1.ConditionConnected, metav1.ConditionUnknown, "Connecting", ""),
		}, want: "Connecting"},
		{name: "long message cut", conds: []metav1.Condition{
			condition(fleetv1alpha1.ConditionReady, metav1.ConditionFalse, "R", long),
		}, want: ("R: " + long)[:maxProblemLen-1] + "…"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := firstProblem(tc.conds, false); got != tc.want {
				t.Errorf("firstProblem = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := map[time.Duration]string{12 * time.Second: "12s ago", 5 * time.Minute: "5m ago", 3 * time.Hour: "3h ago", -time.Minute: "0s ago"}
	for d, want := range cases {
		if got := ago(now, now.Add(-d)); got != want {
			t.Errorf("ago(%s) = %q, want %q", d, got, want)
		}
	}
}

// clustersSection is the first section of `fleetctl status`, up to the blank line before
// the next.
func clustersSection(out string) string {
	section, _, _ := strings.Cut(out, "\n\n")
	return strings.TrimSuffix(section, "\n") + "\n"
}

func condition(typ string, status metav1.ConditionStatus, reason, message string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message, LastTransitionTime: metav1.Now()}
}

// setStatus writes a MemberCluster's status through the status subresource, as
// fleet-controller would.
func setStatus(t *testing.T, hub client.Client, name string, st fleetv1alpha1.MemberClusterStatus) {
	t.Helper()
	mc := &fleetv1alpha1.MemberCluster{}
	if err := hub.Get(t.Context(), client.ObjectKey{Name: name}, mc); err != nil {
		t.Fatal(err)
	}
	mc.Status = st
	if err := hub.Status().Update(t.Context(), mc); err != nil {
		t.Fatal(err)
	}
}

// assertFields checks that line starts with the given whitespace-separated fields.
func assertFields(t *testing.T, line string, want ...string) {
	t.Helper()
	got := strings.Fields(line)
	if len(got) < len(want) || strings.Join(got[:len(want)], " ") != strings.Join(want, " ") {
		t.Errorf("line %q: want it to start with fields %q", line, want)
	}
}
