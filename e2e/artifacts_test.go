package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRBACDenials(t *testing.T) {
	dir := t.TempDir()
	// Two lines as fleet-controller logs them (zap JSON), one denial twice, and a line that
	// merely mentions the word.
	log := `{"level":"error","msg":"Reconciler error","error":"update status of cluster \"member-1\": memberclusters.fleet.flotilla.dev \"member-1\" is forbidden: User \"system:serviceaccount:flotilla-system:flotilla-controller\" cannot patch resource \"memberclusters/status\" in API group \"fleet.flotilla.dev\" at the cluster scope"}
{"level":"error","msg":"Reconciler error","error":"update status of cluster \"member-2\": memberclusters.fleet.flotilla.dev \"member-2\" is forbidden: User \"system:serviceaccount:flotilla-system:flotilla-controller\" cannot patch resource \"memberclusters/status\" in API group \"fleet.flotilla.dev\" at the cluster scope"}
{"level":"error","msg":"error retrieving resource lock","error":"leases.coordination.k8s.io \"x\" is forbidden: User \"system:serviceaccount:flotilla-system:flotilla-controller\" cannot get resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"flotilla-system\""}
{"level":"info","msg":"cannot resource forbidden"}
`
	if err := os.WriteFile(filepath.Join(dir, "fleet-controller.log"), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`patch memberclusters/status (group "fleet.flotilla.dev") at the cluster scope`,
		`get leases (group "coordination.k8s.io") in the namespace "flotilla-system"`,
	}
	if got := RBACDenials(dir); !slices.Equal(got, want) {
		t.Errorf("RBACDenials:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
}

func TestSumCounter(t *testing.T) {
	metrics := `# HELP controller_runtime_reconcile_total Total number of reconciliations per controller
# TYPE controller_runtime_reconcile_total counter
controller_runtime_reconcile_total{controller="membercluster",result="error"} 2
controller_runtime_reconcile_total{controller="membercluster",result="success"} 5
controller_runtime_reconcile_total{controller="secretsource",result="success"} 7
controller_runtime_reconcile_errors_total{controller="membercluster"} 2
`
	for _, c := range []struct {
		name, controller string
		want             int
	}{
		{"every result of one controller", "membercluster", 7},
		{"another controller", "secretsource", 7},
		{"a controller that never started", "baseline", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := sumCounter(strings.NewReader(metrics), "controller_runtime_reconcile_total", `controller="`+c.controller+`"`)
			if err != nil || got != c.want {
				t.Errorf("got %d, %v; want %d", got, err, c.want)
			}
		})
	}
}
