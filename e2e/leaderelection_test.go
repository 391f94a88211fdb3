//go:build e2e

package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

const (
	leaseName     = "fleet-controller.fleet.flotilla.dev"
	leaseDuration = 4 * time.Second
	// failoverSlack covers the standby's retry period, a lease it saw renewed just before the
	// kill, and a busy 2-core machine.
	failoverSlack = 3 * time.Second
	// acquiredLog is what client-go's leader election logs when a process becomes leader.
	acquiredLog = `"Successfully acquired lease"`
)

// TestLeaderElectionFailover runs two fleet-controller processes against one hub: only the
// leader reconciles and writes; when it is killed (SIGKILL: its lease is not released) the
// other takes the lease within the lease duration and carries on.
func TestLeaderElectionFailover(t *testing.T) {
	if backendName() != "local" {
		t.Skip("two controller processes against one hub run on the local backend; on kind the Deployment's two replicas do")
	}
	ctx := t.Context()
	fleet := localfleet.StartForTest(t, localfleet.Options{Members: 2, NoCRDs: true, NoControllerManager: true})
	hubKubeconfig := fleet.Hub.KubeconfigPath
	if err := e2e.InstallHub(ctx, suite.bins.Kubectl, suite.root, hubKubeconfig); err != nil {
		t.Fatal(err)
	}
	saKubeconfig := filepath.Join(t.TempDir(), "controller.kubeconfig")
	if err := e2e.WriteServiceAccountKubeconfig(ctx, fleet.Hub.Config, saKubeconfig, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The specs count reconciles from the metrics, which only a reader may scrape.
	metricsToken, err := e2e.NewServiceAccount(ctx, fleet.Hub.Config, "prometheus",
		e2e.Grant{ClusterRoles: []string{e2e.MetricsReaderRole}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var members []e2e.Member
	for _, m := range fleet.Members {
		members = append(members, e2e.Member{Name: m.Name, Kubeconfig: m.KubeconfigPath})
	}
	logDir := filepath.Join(suite.artifacts, t.Name())
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	keepArtifactsOnFailure(t, hubKubeconfig, members, logDir)
	hub := hubClient(t, fleet.Hub)
	start := func(name string) *e2e.Controller {
		c, err := e2e.StartController(ctx, e2e.ControllerOptions{
			Bin: suite.bins.Controller, Kubeconfig: saKubeconfig, LogPath: filepath.Join(logDir, "fleet-controller-"+name+".log"),
			MetricsToken: metricsToken,
			Args: []string{"--leader-elect", "--allow-loopback-members", "--leader-elect-lease-duration=" + leaseDuration.String(),
				"--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms"},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Kill)
		return c
	}
	controllers := []*e2e.Controller{start("a"), start("b")}

	var leader, standby *e2e.Controller
	eventually(t, 30*time.Second, "exactly one controller to acquire the Lease", func() error {
		var leaders []*e2e.Controller
		for _, c := range controllers {
			if strings.Contains(c.Log(), acquiredLog) {
				leaders = append(leaders, c)
			}
		}
		if len(leaders) != 1 {
			return fmt.Errorf("%d processes logged %q", len(leaders), acquiredLog)
		}
		leader = leaders[0]
		standby = controllers[0]
		if standby == leader {
			standby = controllers[1]
		}
		return nil
	})
	firstHolder := leaseHolder(t, hub)
	t.Logf("leader: %s (Lease holder %s)", leader.LogPath, firstHolder)

	registerBySecret(t, hub, fleet.Members[0])
	eventually(t, readyTimeout, "member-1 Ready, written by the leader", memberReady(ctx, hub, fleet.Members[0].Name))
	leaderN, standbyN := reconciles(t, leader), reconciles(t, standby)
	t.Logf("MemberCluster reconciles before the failover: leader %d, standby %d", leaderN, standbyN)
	if leaderN == 0 {
		t.Errorf("the leader reconciled no MemberCluster")
	}
	if standbyN != 0 {
		t.Errorf("the standby reconciled MemberClusters %d times: it must not write while it does not lead", standbyN)
	}
	if strings.Contains(standby.Log(), acquiredLog) || strings.Contains(standby.Log(), "Starting workers") {
		t.Errorf("the standby started its controllers without leading:\n%s", standby.Log())
	}

	killed := time.Now()
	leader.Kill()
	var failover time.Duration
	for {
		if h := leaseHolderOrEmpty(ctx, hub); h != "" && h != firstHolder {
			failover = time.Since(killed)
			break
		}
		if time.Since(killed) > 3*leaseDuration {
			t.Fatalf("no new Lease holder %s after killing the leader (lease duration %s)", time.Since(killed).Round(time.Millisecond), leaseDuration)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("TIMING: failover (SIGKILL of the leader to a new Lease holder) took %s; lease duration %s", failover.Round(time.Millisecond), leaseDuration)
	if failover > leaseDuration+failoverSlack {
		t.Errorf("failover took %s, want within the lease duration %s (+%s slack)", failover, leaseDuration, failoverSlack)
	}
	eventually(t, 10*time.Second, "the standby to log that it leads", func() error {
		if !strings.Contains(standby.Log(), acquiredLog) {
			return errors.New("not yet")
		}
		return nil
	})

	registerBySecret(t, hub, fleet.Members[1])
	eventually(t, readyTimeout, "member-2, registered after the failover, Ready", memberReady(ctx, hub, fleet.Members[1].Name))
	eventually(t, readyTimeout, "member-1 still Ready under the new leader", memberReady(ctx, hub, fleet.Members[0].Name))
	if n := reconciles(t, standby); n == 0 {
		t.Errorf("the new leader reconciled no MemberCluster")
	}
}

func hubClient(t *testing.T, hub *localfleet.ControlPlane) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(fleetv1alpha1.AddToScheme(scheme))
	c, err := client.New(hub.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// registerBySecret registers a member the simplest way: its admin kubeconfig in a labelled
// hub Secret named after it.
func registerBySecret(t *testing.T, hub client.Client, m *localfleet.ControlPlane) {
	t.Helper()
	err := hub.Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: e2e.HubNamespace,
			Labels: map[string]string{fleetv1alpha1.LabelKubeconfig: "true"}},
		Data: map[string][]byte{fleetv1alpha1.DefaultKubeconfigKey: m.Kubeconfig()},
	})
	if err != nil {
		t.Fatalf("create kubeconfig Secret of %s: %v", m.Name, err)
	}
}

func memberReady(ctx context.Context, hub client.Client, name string) func() error {
	return func() error {
		mc := &fleetv1alpha1.MemberCluster{}
		if err := hub.Get(ctx, client.ObjectKey{Name: name}, mc); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(mc.Status.Conditions, fleetv1alpha1.ConditionReady) {
			return fmt.Errorf("conditions %+v", mc.Status.Conditions)
		}
		return nil
	}
}

func leaseHolder(t *testing.T, hub client.Client) string {
	t.Helper()
	h := leaseHolderOrEmpty(t.Context(), hub)
	if h == "" {
		t.Fatalf("Lease %s/%s has no holder", e2e.HubNamespace, leaseName)
	}
	return h
}

func leaseHolderOrEmpty(ctx context.Context, hub client.Client) string {
	lease := &coordinationv1.Lease{}
	if err := hub.Get(ctx, client.ObjectKey{Namespace: e2e.HubNamespace, Name: leaseName}, lease); err != nil {
		return ""
	}
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

func reconciles(t *testing.T, c *e2e.Controller) int {
	t.Helper()
	n, err := c.ReconcileCount(t.Context(), "membercluster")
	if err != nil {
		t.Fatalf("read metrics of %s: %v", c.LogPath, err)
	}
	return n
}
