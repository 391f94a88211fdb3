package clusters

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

const hubNS = fleetv1alpha1.DefaultHubNamespace

// registry is a running cluster registry (the clusters domain of fleet-controller, in
// process) against a real local fleet.
type registry struct {
	fleet *localfleet.Fleet
	hub   client.Client
	conns *Connections
}

// fastProbes makes the failure windows of these tests a few seconds long.
var fastProbes = Options{ProbeInterval: 500 * time.Millisecond, ProbeTimeout: time.Second, FailureThreshold: 2, MaxBackoff: 2 * time.Second}

func startRegistry(t *testing.T, members int, opts Options) *registry {
	t.Helper()
	r, _ := runRegistry(t, startFleet(t, members), opts) // stopped at the end of the test
	return r
}

func startFleet(t *testing.T, members int) *localfleet.Fleet {
	t.Helper()
	return localfleet.StartForTest(t, localfleet.Options{Members: members})
}

// unstartedMember is the connection of one real member API server, built as the hub builds
// it (its transport, mapper and clients) but not started: no probe, no cache.
func unstartedMember(t *testing.T) *member {
	t.Helper()
	fleet := startFleet(t, 1)
	creds, err := LoadCredentials(fleet.Members[0].Kubeconfig(), CredentialPolicy{AllowLoopback: true})
	must(t, err)
	scheme := runtime.NewScheme()
	must(t, clientgoscheme.AddToScheme(scheme))
	m, err := newMember(NewConnections(scheme, fastProbes).memberConfig(), "member", creds)
	must(t, err)
	return m
}

// runRegistry runs the registry's controllers in process against fleet's hub until stop,
// with the settings a local fleet needs: loopback members allowed, and Clusters of the hub
// namespace and capiNS registering.
func runRegistry(tb testing.TB, fleet *localfleet.Fleet, opts Options) (r *registry, stop func()) {
	tb.Helper()
	return runRegistryWith(tb, fleet, SetupOptions{Connections: opts,
		Policy: CredentialPolicy{AllowLoopback: true}, ClusterAPINamespaces: registryCAPINamespaces})
}

// runRegistryWith is runRegistry with the hub settings given in setup.
func runRegistryWith(tb testing.TB, fleet *localfleet.Fleet, setup SetupOptions) (r *registry, stop func()) {
	tb.Helper()
	return runRegistryAs(tb, fleet, fleet.Hub.Config, setup)
}

// runRegistryAs is runRegistryWith under the hub identity of cfg.
func runRegistryAs(tb testing.TB, fleet *localfleet.Fleet, cfg *rest.Config, setup SetupOptions) (r *registry, stop func()) {
	tb.Helper()
	setup.HubNamespace, setup.Heartbeat, setup.ClusterAPIPollInterval = hubNS, time.Second, 500*time.Millisecond
	scheme := runtime.NewScheme()
	must(tb, clientgoscheme.AddToScheme(scheme))
	must(tb, fleetv1alpha1.AddToScheme(scheme))
	must(tb, clusterv1.AddToScheme(scheme))
	var conns *Connections
	hub, stop := fleettest.RunManager(tb, cfg, scheme, func(mgr ctrl.Manager) (err error) {
		conns, err = Setup(mgr, setup)
		return err
	})
	must(tb, client.IgnoreAlreadyExists(hub.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hubNS}})))
	return &registry{fleet: fleet, hub: hub, conns: conns}, stop
}

// Shared test helpers (package fleettest).
var (
	must       = fleettest.Must
	eventually = fleettest.Eventually
	update     = fleettest.Update
)

func kubeconfigSecret(name string, kubeconfig []byte, labels, annotations map[string]string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: hubNS, Labels: labels, Annotations: annotations},
		Data:       map[string][]byte{fleetv1alpha1.DefaultKubeconfigKey: kubeconfig},
	}
}

// memberCluster is a MemberCluster registered by hand (as fleetctl does) for a Secret.
func memberCluster(name, secret string) *fleetv1alpha1.MemberCluster {
	return &fleetv1alpha1.MemberCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: fleetv1alpha1.MemberClusterSpec{KubeconfigSecretRef: fleetv1alpha1.SecretKeyReference{
			Namespace: hubNS, Name: secret, Key: fleetv1alpha1.DefaultKubeconfigKey}},
	}
}

// condition returns the status, reason and message of a MemberCluster condition.
func (r *registry) condition(name, typ string) (*fleetv1alpha1.MemberCluster, *metav1.Condition, error) {
	mc := &fleetv1alpha1.MemberCluster{}
	if err := r.hub.Get(context.Background(), types.NamespacedName{Name: name}, mc); err != nil {
		return nil, nil, err
	}
	c := meta.FindStatusCondition(mc.Status.Conditions, typ)
	if c == nil {
		return mc, nil, fmt.Errorf("cluster %s has no %s condition yet", name, typ)
	}
	return mc, c, nil
}

func (r *registry) waitCondition(t testing.TB, name, typ string, status metav1.ConditionStatus, reason string, timeout time.Duration) *fleetv1alpha1.MemberCluster {
	t.Helper()
	var got *fleetv1alpha1.MemberCluster
	eventually(t, timeout, fmt.Sprintf("cluster %s %s=%s reason %s", name, typ, status, reason), func() error {
		mc, c, err := r.condition(name, typ)
		if err != nil {
			return err
		}
		if c.Status != status || (reason != "" && c.Reason != reason) {
			return fmt.Errorf("%s=%s reason %s: %s", typ, c.Status, c.Reason, c.Message)
		}
		got = mc
		return nil
	})
	return got
}

func TestSecretRegistersReadyMember(t *testing.T) {
	r := startRegistry(t, 2, fastProbes)
	ctx := context.Background()
	m1, m2 := r.fleet.Members[0], r.fleet.Members[1]

	secret := kubeconfigSecret("kc-east", m1.Kubeconfig(),
		map[string]string{fleetv1alpha1.LabelKubeconfig: "true"},
		map[string]string{fleetv1alpha1.AnnotationClusterName: "east", fleetv1alpha1.AnnotationClusterLabels: "env=prod,region=eu"})
	must(t, r.hub.Create(ctx, secret))

	mc := r.waitCondition(t, "east", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
	if mc.Labels["env"] != "prod" || mc.Labels["region"] != "eu" || mc.Labels[fleetv1alpha1.LabelRegistration] != fleetv1alpha1.RegistrationSecret {
		t.Errorf("labels = %v, want env=prod, region=eu and the registration label", mc.Labels)
	}
	if mc.Status.KubernetesVersion != "v1.37.2" {
		t.Errorf("kubernetesVersion = %q, want v1.37.2", mc.Status.KubernetesVersion)
	}
	if mc.Status.NodeCount == nil || *mc.Status.NodeCount != 0 || mc.Status.LastProbeTime == nil {
		t.Errorf("nodeCount = %v lastProbeTime = %v, want 0 nodes (control plane only) and a probe time", mc.Status.NodeCount, mc.Status.LastProbeTime)
	}
	firstHash := mc.Status.ObservedCredentialHash

	t.Run("rotated kubeconfig reconnects with the new credentials", func(t *testing.T) {
		// Point the Secret at the other member: only a rebuilt connection can see it.
		update(t, r.hub, secret, func() { secret.Data[fleetv1alpha1.DefaultKubeconfigKey] = m2.Kubeconfig() })
		eventually(t, 20*time.Second, "status.observedCredentialHash to change and the connection to reach member-2", func() error {
			mc, c, err := r.condition("east", fleetv1alpha1.ConditionConnected)
			if err != nil {
				return err
			}
			if mc.Status.ObservedCredentialHash == firstHash || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("hash %s connected %s", mc.Status.ObservedCredentialHash, c.Status)
			}
			if !strings.Contains(c.Message, m2.Host()) {
				return fmt.Errorf("connected to %q, want %s", c.Message, m2.Host())
			}
			return nil
		})
	})

	t.Run("removing the label unregisters the cluster", func(t *testing.T) {
		update(t, r.hub, secret, func() { delete(secret.Labels, fleetv1alpha1.LabelKubeconfig) })
		eventually(t, 20*time.Second, "MemberCluster east deleted", func() error {
			err := r.hub.Get(ctx, types.NamespacedName{Name: "east"}, &fleetv1alpha1.MemberCluster{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still there (%w)", err)
		})
		eventually(t, 10*time.Second, "connection closed", func() error {
			if _, ok := r.conns.Health("east"); ok {
				return fmt.Errorf("connection manager still has east")
			}
			return nil
		})
	})
}

func TestDeletedSecretDisconnectsWithReason(t *testing.T) {
	r := startRegistry(t, 1, fastProbes)
	ctx := context.Background()
	secret := kubeconfigSecret("west-kubeconfig", r.fleet.Members[0].Kubeconfig(), nil, nil)
	must(t, r.hub.Create(ctx, secret))
	must(t, r.hub.Create(ctx, memberCluster("west", "west-kubeconfig")))
	r.waitCondition(t, "west", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)

	must(t, r.hub.Delete(ctx, secret))
	mc := r.waitCondition(t, "west", fleetv1alpha1.ConditionConnected, metav1.ConditionFalse, fleetv1alpha1.ReasonSecretNotFound, 20*time.Second)
	c := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionConnected)
	if !strings.Contains(c.Message, "flotilla-system/west-kubeconfig not found") {
		t.Errorf("message %q does not name the missing Secret", c.Message)
	}
	if _, ok := r.conns.Health("west"); ok {
		t.Error("connection kept after its Secret was deleted")
	}
}

func TestStoppedMemberGoesNotReadyAndComesBack(t *testing.T) {
	r := startRegistry(t, 2, fastProbes)
	ctx := context.Background()
	for _, m := range r.fleet.Members {
		must(t, r.hub.Create(ctx, kubeconfigSecret(m.Name+"-kubeconfig", m.Kubeconfig(), nil, nil)))
		must(t, r.hub.Create(ctx, memberCluster(m.Name, m.Name+"-kubeconfig")))
	}
	for _, m := range r.fleet.Members {
		r.waitCondition(t, m.Name, fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
	}
	down, up := r.fleet.Members[0], r.fleet.Members[1]

	must(t, down.StopAPIServer())
	// Window: FailureThreshold probes at ProbeInterval, each up to ProbeTimeout, plus slack.
	r.waitCondition(t, down.Name, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonNotConnected, 15*time.Second)
	if _, c, err := r.condition(up.Name, fleetv1alpha1.ConditionReady); err != nil || c.Status != metav1.ConditionTrue {
		t.Errorf("%s should stay Ready while %s is down: %v %v", up.Name, down.Name, c, err)
	}
	if _, err := r.conns.Client(down.Name); err == nil {
		t.Errorf("Client(%s) of a disconnected member should fail", down.Name)
	}

	must(t, down.StartAPIServer(ctx))
	r.waitCondition(t, down.Name, fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
}

// blackhole accepts TCP connections and never answers, like a member behind a broken
// load balancer.
func blackhole(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	return l.Addr().String()
}

func TestHangingMemberDoesNotDelayOthers(t *testing.T) {
	r := startRegistry(t, 1, fastProbes)
	ctx := context.Background()
	healthy := r.fleet.Members[0]
	must(t, r.hub.Create(ctx, kubeconfigSecret("ok-kubeconfig", healthy.Kubeconfig(), nil, nil)))
	must(t, r.hub.Create(ctx, memberCluster("ok", "ok-kubeconfig")))

	hanging := strings.Replace(string(healthy.Kubeconfig()), strings.TrimPrefix(healthy.Host(), "https://"), blackhole(t), 1)
	must(t, r.hub.Create(ctx, kubeconfigSecret("hang-kubeconfig", []byte(hanging), nil, nil)))
	must(t, r.hub.Create(ctx, memberCluster("hang", "hang-kubeconfig")))

	r.waitCondition(t, "ok", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
	r.waitCondition(t, "hang", fleetv1alpha1.ConditionConnected, metav1.ConditionFalse, fleetv1alpha1.ReasonProbeTimeout, 20*time.Second)

	// While the hanging member's probes time out, the healthy member is still probed at
	// its own interval: count its probes over a few seconds.
	h0, _ := r.conns.Health("ok")
	time.Sleep(3 * time.Second)
	h1, _ := r.conns.Health("ok")
	gap := h1.LastProbe.Sub(h0.LastProbe)
	if gap < 2*time.Second || !h1.Connected {
		t.Errorf("healthy member probed %s apart over 3s (connected=%v); the hanging member is slowing it down", gap, h1.Connected)
	}
}

func TestRejectedCredentials(t *testing.T) {
	r := startRegistry(t, 1, fastProbes)
	ctx := context.Background()
	good := string(r.fleet.Members[0].Kubeconfig())
	marker := filepath.Join(t.TempDir(), "exec-ran")

	withExec := insertIntoUser(t, good, "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: [\"-c\", \"touch "+marker+"\"]\n")
	withAuthProvider := insertIntoUser(t, good, "    auth-provider:\n      name: oidc\n")
	insecure := strings.Replace(good, "    server:", "    insecure-skip-tls-verify: true\n    server:", 1)

	cases := []struct {
		name, kubeconfig, wantReason, wantInMessage string
	}{
		{"exec", withExec, fleetv1alpha1.ReasonExecNotAllowed, ".user.exec"},
		{"auth-provider", withAuthProvider, fleetv1alpha1.ReasonAuthProviderNotAllowed, ".user.auth-provider"},
		{"insecure", insecure, fleetv1alpha1.ReasonInsecureNotAllowed, ".cluster.insecure-skip-tls-verify"},
		{"garbage", "\x00\xffnot a kubeconfig: [", fleetv1alpha1.ReasonInvalidKubeconfig, "does not parse"},
	}
	for _, tc := range cases {
		must(t, r.hub.Create(ctx, kubeconfigSecret(tc.name+"-kubeconfig", []byte(tc.kubeconfig), nil, nil)))
		must(t, r.hub.Create(ctx, memberCluster(tc.name, tc.name+"-kubeconfig")))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mc := r.waitCondition(t, tc.name, fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionFalse, tc.wantReason, 20*time.Second)
			c := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionCredentialsValid)
			if !strings.Contains(c.Message, tc.wantInMessage) {
				t.Errorf("message %q does not name %q", c.Message, tc.wantInMessage)
			}
			if ready := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionReady); ready == nil || ready.Status != metav1.ConditionFalse {
				t.Errorf("Ready = %v, want False", ready)
			}
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the hub ran the exec plugin of a rejected kubeconfig")
	}
}

// insertIntoUser adds lines to the first user stanza of a kubeconfig written by localfleet.
func insertIntoUser(t *testing.T, kubeconfig, lines string) string {
	t.Helper()
	i := strings.Index(kubeconfig, "  user:\n")
	if i < 0 {
		t.Fatalf("no user stanza in kubeconfig")
	}
	i += len("  user:\n")
	return kubeconfig[:i] + lines + kubeconfig[i:]
}
