//go:build e2e

package e2e_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e"
	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// faultsNamespace holds the Baseline's ConfigMap and the exported Service in every member.
const faultsNamespace = "e2e-faults"

// faultsSamples is how many changes are timed with and without the frozen members.
const faultsSamples = 3

// TestFrozenMembersDelayNeitherBaselinesNorMirrors runs the real fleet-controller binary
// against four members and freezes two of them (SIGSTOP of their kube-apiserver: connections
// stay open, nothing answers) while a Baseline changes and an exported Service's endpoints
// change. The two healthy members — the export's source and a target — must see both changes
// within a second of the time the same changes took before anything was frozen; the frozen
// ones must be reported NotReady and catch up on both once thawed.
func TestFrozenMembersDelayNeitherBaselinesNorMirrors(t *testing.T) {
	if backendName() != "local" {
		t.Skip("members are frozen as processes on the local backend")
	}
	ctx := t.Context()
	fleet, saKubeconfig, logDir := processFleet(t, localfleet.Options{Members: 4, NoCRDs: true, NoControllerManager: true})

	// Probes every 500 ms, two failures to disconnect: how README's Failure behaviour says
	// to tune detection.
	controller, err := e2e.StartController(ctx, e2e.ControllerOptions{
		Bin: suite.bins.Controller, Kubeconfig: saKubeconfig, LogPath: filepath.Join(logDir, "fleet-controller.log"),
		Args: []string{"--allow-loopback-members", "--probe-interval=500ms", "--probe-timeout=400ms", "--probe-failure-threshold=2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(controller.Stop)

	hub := hubClient(t, fleet.Hub)
	members := map[string]client.Client{}
	for _, m := range fleet.Members {
		c, err := client.New(m.Config, client.Options{})
		fleettest.Must(t, err)
		members[m.Name] = c
		fleettest.Must(t, hub.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: e2e.HubNamespace,
				Labels: map[string]string{fleetv1alpha1.LabelKubeconfig: "true"}},
			Data: map[string][]byte{fleetv1alpha1.DefaultKubeconfigKey: fleettest.MemberKubeconfig(t, m)},
		}))
		fleettest.Must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: faultsNamespace}}))
	}
	source := fleet.Members[0]
	frozen := fleet.Members[2:]
	healthy := fleet.Members[:2]

	// The export: a Service of the source with its pod IPs, a Node holding their pod CIDR
	// (no kubelet or node IPAM runs here) and the slice a controller would write.
	src := members[source.Name]
	fleettest.Must(t, src.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "e2e-faults-pods"},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"}}}))
	fleettest.Must(t, src.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: faultsNamespace, Annotations: map[string]string{
			"fleet.flotilla.dev/export": "true", "fleet.flotilla.dev/address-mode": "PodIP"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}))
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "web-e2e", Namespace: faultsNamespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "e2e.flotilla.dev"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80)}},
	}
	setEndpoint := func(i int) {
		slice.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{endpointIP(i)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}}
	}
	setEndpoint(0)
	fleettest.Must(t, src.Create(ctx, slice))

	// The Baseline: one ConfigMap whose data says the revision.
	b := &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: "faults"}, Spec: fleetv1alpha1.BaselineSpec{
		ClusterSelector: metav1.LabelSelector{}}}
	setBaseline := func(i int) {
		b.Spec.Resources = []fleetv1alpha1.ResourceSource{{Inline: fmt.Sprintf(
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: faults\n  namespace: %s\ndata:\n  step: %q\n", faultsNamespace, fmt.Sprint(i))}}
	}
	setBaseline(0)
	fleettest.Must(t, hub.Create(ctx, b))

	mirror := "web-" + source.Name
	// holds says whether member m holds step i of both the Baseline and (in targets) the mirror.
	holds := func(m *localfleet.ControlPlane, i int) error {
		c := members[m.Name]
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: faultsNamespace, Name: "faults"}, cm); err != nil {
			return err
		}
		if cm.Data["step"] != fmt.Sprint(i) {
			return fmt.Errorf("%s: ConfigMap step %q, want %d", m.Name, cm.Data["step"], i)
		}
		if m == source {
			return nil
		}
		ep := &corev1.Endpoints{} //nolint:staticcheck // the mirror writes Endpoints for older consumers
		if err := c.Get(ctx, client.ObjectKey{Namespace: faultsNamespace, Name: mirror}, ep); err != nil {
			return err
		}
		for _, s := range ep.Subsets {
			for _, a := range s.Addresses {
				if a.IP == endpointIP(i) {
					return nil
				}
			}
		}
		return fmt.Errorf("%s: mirror %s endpoints %+v, want %s", m.Name, mirror, ep.Subsets, endpointIP(i))
	}
	fleettest.EventuallyEvery(t, 200*time.Millisecond, 3*time.Minute, "step 0 in every member", func() error {
		for _, m := range fleet.Members {
			if err := holds(m, 0); err != nil {
				return err
			}
		}
		return nil
	})

	// change makes step i and returns how long until both healthy members hold it.
	change := func(i int) time.Duration {
		start := time.Now()
		fleettest.Update(t, hub, b, func() { setBaseline(i) })
		fleettest.Update(t, src, slice, func() { setEndpoint(i) })
		fleettest.EventuallyEvery(t, 20*time.Millisecond, 2*time.Minute, fmt.Sprintf("step %d in the healthy members", i), func() error {
			for _, m := range healthy {
				if err := holds(m, i); err != nil {
					return err
				}
			}
			return nil
		})
		return time.Since(start)
	}

	step := 0
	var calm, disturbed []float64
	for range faultsSamples {
		step++
		calm = append(calm, change(step).Seconds())
		fleettest.EventuallyEvery(t, 200*time.Millisecond, time.Minute, fmt.Sprintf("step %d in the members to be frozen", step), func() error {
			for _, m := range frozen {
				if err := holds(m, step); err != nil {
					return err
				}
			}
			return nil
		})
	}

	for _, m := range frozen {
		fleettest.Must(t, m.FreezeAPIServer())
	}
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			for _, m := range frozen {
				_ = m.ThawAPIServer()
			}
		}
	})
	for range faultsSamples {
		step++
		disturbed = append(disturbed, change(step).Seconds())
	}
	t.Logf("healthy members caught up on a Baseline change and an endpoint change in %v s undisturbed, %v s with two of four members frozen",
		calm, disturbed)
	if c, d := fleettest.Median(calm), fleettest.Median(disturbed); d > c+1 {
		t.Errorf("with two members frozen the healthy ones took %.2f s (median), more than a second over the undisturbed %.2f s", d, c)
	}

	fleettest.EventuallyEvery(t, 200*time.Millisecond, time.Minute, "the frozen members reported NotReady", func() error {
		for _, m := range frozen {
			if err := memberReadyIs(t, hub, m.Name, metav1.ConditionFalse); err != nil {
				return err
			}
		}
		return nil
	})
	for _, m := range frozen {
		fleettest.Must(t, m.ThawAPIServer())
	}
	thawed = true
	fleettest.EventuallyEvery(t, 200*time.Millisecond, time.Minute, fmt.Sprintf("the thawed members Ready and holding step %d", step), func() error {
		for _, m := range frozen {
			if err := memberReadyIs(t, hub, m.Name, metav1.ConditionTrue); err != nil {
				return err
			}
			if err := holds(m, step); err != nil {
				return err
			}
		}
		return nil
	})
}

// endpointIP is the one endpoint of the exported Service at step i.
func endpointIP(i int) string { return fmt.Sprintf("10.244.1.%d", 10+i) }

// memberReadyIs checks MemberCluster name's Ready condition.
func memberReadyIs(t *testing.T, hub client.Client, name string, want metav1.ConditionStatus) error {
	mc := &fleetv1alpha1.MemberCluster{}
	if err := hub.Get(t.Context(), client.ObjectKey{Name: name}, mc); err != nil {
		return err
	}
	c := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionReady)
	if c == nil || c.Status != want {
		return fmt.Errorf("MemberCluster %s: Ready %+v, want %s", name, c, want)
	}
	return nil
}
