package localfleet_test

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

// TestAuditLogCountsWrites checks what "zero writes" tests rely on: every mutating request of
// a user is counted at the API server, including a server-side apply that changes nothing
// (resourceVersion stays put), while reads, other users and the cluster's own components are
// not counted.
func TestAuditLogCountsWrites(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 1, NoCRDs: true, AuditLog: true})
	m := f.Members[0]
	ctx := t.Context()
	admin := kubernetes.NewForConfigOrDie(m.Config)
	hubKubeconfig, err := m.UserKubeconfig("flotilla-hub", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	hubConfig, err := clientcmd.RESTConfigFromKubeConfig(hubKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	hub := kubernetes.NewForConfigOrDie(hubConfig)

	mark := auditMark(t, m)
	// The namespace makes kube-controller-manager write too (its ServiceAccount and root CA
	// ConfigMap), as itself: those must not count as anyone's but its own.
	createNamespace(t, admin, "audited")
	apply := func() string {
		t.Helper()
		cm, err := hub.CoreV1().ConfigMaps("audited").Apply(ctx,
			corev1ac.ConfigMap("settings", "audited").WithData(map[string]string{"mode": "strict"}),
			metav1.ApplyOptions{FieldManager: "flotilla", Force: true})
		if err != nil {
			t.Fatalf("server-side apply ConfigMap audited/settings as flotilla-hub: %v", err)
		}
		return cm.ResourceVersion
	}
	firstRV := apply()

	wantWrites(t, m, mark, []string{"flotilla-hub"}, 1, "the hub's apply of ConfigMap audited/settings")
	wantWrites(t, m, mark, []string{"flotilla-admin"}, 1, "the admin's create of namespace audited")
	wantWrites(t, m, mark, nil, 2, "the admin's and the hub's writes, none of kube-controller-manager's")
	eventually(t, time.Minute, "kube-controller-manager's writes for namespace audited in the log, under its own name", func() error {
		w, err := m.Writes(mark, "system:kube-controller-manager")
		if err != nil || len(w) == 0 {
			return fmt.Errorf("writes=%v err=%w", w, err)
		}
		return nil
	})

	mark = auditMark(t, m)
	if _, err := hub.CoreV1().ConfigMaps("audited").Get(ctx, "settings", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.CoreV1().ConfigMaps("audited").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	wantWrites(t, m, mark, nil, 0, "reads only")

	if rv := apply(); rv != firstRV {
		t.Fatalf("the same apply again changed resourceVersion %s -> %s; this test needs a no-op apply", firstRV, rv)
	}
	wantWrites(t, m, mark, []string{"flotilla-hub"}, 1, "a no-op server-side apply (resourceVersion unchanged) is still a write")

}

func auditMark(t *testing.T, c *localfleet.ControlPlane) localfleet.AuditMark {
	t.Helper()
	mark, err := c.AuditMark()
	if err != nil {
		t.Fatal(err)
	}
	return mark
}

func wantWrites(t *testing.T, c *localfleet.ControlPlane, mark localfleet.AuditMark, users []string, want int, what string) {
	t.Helper()
	got, err := c.Writes(mark, users...)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != want {
		t.Errorf("writes by %v since the mark = %d %v, want %d (%s)", users, len(got), got, want, what)
	}
}
