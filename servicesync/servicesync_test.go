package servicesync

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/clusters"
	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

const hubNS = fleetv1alpha1.DefaultHubNamespace

// env is a local fleet with the hub controller's clusters and servicesync domains in
// process and every member registered and Ready; each member has namespace "shop".
type env struct {
	fleet   *localfleet.Fleet
	hub     client.Client
	members map[string]client.Client
	stop    func()
	// staleWindow is the controller's stale window (SetupOptions.StaleWindow).
	staleWindow time.Duration
	// conns is the running controller's connection manager (its member caches).
	conns *clusters.Connections
	// config is what the fleet's members and the controller were set up with.
	config envConfig
}

// envConfig varies a test fleet from the default.
type envConfig struct {
	// podCIDR is the pod CIDR of every member's Node "pod-network" (these control planes run
	// no node IPAM): PodIP addresses are published only from inside it. Default 10.0.0.0/8,
	// which holds every pod IP the tests use.
	podCIDR string
	// importMode is the controller's import mode (default opt-out).
	importMode ImportMode
	// mcs names the members that serve the MCS kinds (their CRDs installed before the
	// controller starts).
	mcs []string
}

func newEnv(t *testing.T, members int) *env {
	return newEnvTB(t, localfleet.Options{Members: members}, 2*time.Second)
}

// newEnvTB is newEnv for a fleet started with opts (AuditLog, to count writes) and a
// controller with the given stale window.
func newEnvTB(t testing.TB, opts localfleet.Options, staleWindow time.Duration) *env {
	t.Helper()
	return newEnvOn(t, localfleet.StartForTest(t, opts), staleWindow)
}

// newEnvOn runs the controller against a fleet the caller started (and stops): benchmarks
// start one per iteration and tear it down before the next. Members are registered as
// fleettest.HubUser, so that the controller's requests stand apart from the test's own in the
// members' audit logs.
func newEnvOn(t testing.TB, fleet *localfleet.Fleet, staleWindow time.Duration) *env {
	return newEnvConfigured(t, fleet, staleWindow, envConfig{})
}

// newEnvConfigured is newEnvOn with members and controller set up as cfg says.
func newEnvConfigured(t testing.TB, fleet *localfleet.Fleet, staleWindow time.Duration, cfg envConfig) *env {
	t.Helper()
	if cfg.podCIDR == "" {
		cfg.podCIDR = "10.0.0.0/8"
	}
	e := &env{fleet: fleet, members: map[string]client.Client{}, staleWindow: staleWindow, config: cfg}
	ctx := context.Background()
	for _, m := range fleet.Members {
		c, err := m.Client()
		must(t, err)
		e.members[m.Name] = c
		must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
		must(t, c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "pod-network"},
			Spec: corev1.NodeSpec{PodCIDR: cfg.podCIDR, PodCIDRs: []string{cfg.podCIDR}}}))
	}
	e.installMCS(t, cfg.mcs...)
	e.startController(t)
	must(t, client.IgnoreAlreadyExists(e.hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hubNS}})))
	for _, m := range fleet.Members {
		must(t, e.hub.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: hubNS,
				Labels:      map[string]string{fleetv1alpha1.LabelKubeconfig: "true"},
				Annotations: map[string]string{fleetv1alpha1.AnnotationClusterLabels: "name=" + m.Name}},
			Data: map[string][]byte{"value": fleettest.MemberKubeconfig(t, m)},
		}))
	}
	for _, m := range fleet.Members {
		eventually(t, 30*time.Second, "member "+m.Name+" Ready", func() error {
			mc := &fleetv1alpha1.MemberCluster{}
			if err := e.hub.Get(ctx, types.NamespacedName{Name: m.Name}, mc); err != nil {
				return err
			}
			if !meta.IsStatusConditionTrue(mc.Status.Conditions, fleetv1alpha1.ConditionReady) {
				return fmt.Errorf("not Ready")
			}
			return nil
		})
	}
	return e
}

func (e *env) startController(t testing.TB) {
	t.Helper()
	scheme := runtime.NewScheme()
	must(t, clientgoscheme.AddToScheme(scheme))
	must(t, fleetv1alpha1.AddToScheme(scheme))
	e.hub, e.stop = fleettest.RunManager(t, e.fleet.Hub.Config, scheme, func(mgr ctrl.Manager) error {
		conns, err := clusters.Setup(mgr, clusters.SetupOptions{
			HubNamespace: hubNS,
			// Local fleet members listen on loopback.
			Policy: clusters.CredentialPolicy{AllowLoopback: true},
			Connections: clusters.Options{ProbeInterval: 500 * time.Millisecond, ProbeTimeout: time.Second, FailureThreshold: 2, MaxBackoff: time.Second,
				DynamicLabelSelector: labels.SelectorFromSet(labels.Set{fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue})},
			Heartbeat: time.Minute,
		})
		if err != nil {
			return err
		}
		e.conns = conns
		return Setup(mgr, conns, SetupOptions{StaleWindow: e.staleWindow, ImportMode: e.config.importMode, MCSProbeInterval: 2 * time.Second})
	})
}

// Shared test helpers (package fleettest).
var (
	must         = fleettest.Must
	eventually   = fleettest.Eventually
	consistently = fleettest.Consistently
	update       = fleettest.Update
	updateStatus = fleettest.UpdateStatus
)

// exported is a selectorless Service in shop with the export annotations.
func exported(name string, annotations map[string]string) *corev1.Service {
	a := map[string]string{fleetv1alpha1.AnnotationExport: "true"}
	for k, v := range annotations {
		a[k] = v
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: a},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	}
}

// podSlice is a hand-made EndpointSlice for a selectorless Service (kube-controller-manager
// leaves slices of other managers alone).
func podSlice(service string, endpoints map[string]bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: service + "-pods", Labels: map[string]string{
			discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "test.flotilla.dev"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	setEndpoints(s, endpoints)
	return s
}

func setEndpoints(s *discoveryv1.EndpointSlice, endpoints map[string]bool) {
	s.Endpoints = nil
	addrs := make([]string, 0, len(endpoints))
	for a := range endpoints {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(endpoints[a])}})
	}
}

// mirrorEndpoints returns "ready" and "notready" address lists of a mirror's Endpoints.
func (e *env) mirrorEndpoints(cluster, name string) (ready, notReady []string, err error) {
	eps := &corev1.Endpoints{}
	if err := e.members[cluster].Get(context.Background(), types.NamespacedName{Namespace: "shop", Name: name}, eps); err != nil {
		return nil, nil, err
	}
	for _, s := range eps.Subsets {
		for _, a := range s.Addresses {
			ready = append(ready, a.IP)
		}
		for _, a := range s.NotReadyAddresses {
			notReady = append(notReady, a.IP)
		}
	}
	sort.Strings(ready)
	sort.Strings(notReady)
	return ready, notReady, nil
}

// mirrorSliceEndpoints returns "ready" and "notready" address lists of a mirror's
// EndpointSlices (what kube-proxy and cluster DNS read; an absent ready condition is ready).
func (e *env) mirrorSliceEndpoints(cluster, name string) (ready, notReady []string, err error) {
	slices := &discoveryv1.EndpointSliceList{}
	if err := e.members[cluster].List(context.Background(), slices, client.InNamespace("shop"),
		client.MatchingLabels{discoveryv1.LabelServiceName: name}); err != nil {
		return nil, nil, err
	}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ptr.Deref(ep.Conditions.Ready, true) {
				ready = append(ready, ep.Addresses...)
			} else {
				notReady = append(notReady, ep.Addresses...)
			}
		}
	}
	sort.Strings(ready)
	sort.Strings(notReady)
	return ready, notReady, nil
}

// mirrorState checks that a mirror's Endpoints and its EndpointSlices both publish exactly
// wantReady as ready and wantNotReady as not ready.
func (e *env) mirrorState(cluster, name string, wantReady, wantNotReady []string) error {
	ready, notReady, err := e.mirrorEndpoints(cluster, name)
	if err != nil {
		return err
	}
	if fmt.Sprint(ready) != fmt.Sprint(wantReady) || fmt.Sprint(notReady) != fmt.Sprint(wantNotReady) {
		return fmt.Errorf("Endpoints: ready %v not ready %v", ready, notReady)
	}
	if ready, notReady, err = e.mirrorSliceEndpoints(cluster, name); err != nil {
		return err
	}
	if fmt.Sprint(ready) != fmt.Sprint(wantReady) || fmt.Sprint(notReady) != fmt.Sprint(wantNotReady) {
		return fmt.Errorf("EndpointSlices: ready %v not ready %v", ready, notReady)
	}
	return nil
}

// waitEndpoints waits until the mirror's Endpoints and EndpointSlices both publish wantReady
// as ready and wantNotReady as not ready.
func (e *env) waitEndpoints(t *testing.T, cluster, name string, wantReady, wantNotReady []string) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("mirror %s in %s with ready %v not ready %v (Endpoints and EndpointSlices)", name, cluster, wantReady, wantNotReady),
		func() error { return e.mirrorState(cluster, name, wantReady, wantNotReady) })
}

func (e *env) exportedService(t *testing.T, cluster, name string, check func(*fleetv1alpha1.ExportedService) error) *fleetv1alpha1.ExportedService {
	t.Helper()
	var got *fleetv1alpha1.ExportedService
	eventually(t, 30*time.Second, "ExportedService "+cluster+"/shop/"+name, func() error {
		es := &fleetv1alpha1.ExportedService{}
		if err := e.hub.Get(context.Background(), types.NamespacedName{Name: fleetv1alpha1.ExportedServiceName(cluster, "shop", name)}, es); err != nil {
			return err
		}
		if err := check(es); err != nil {
			return fmt.Errorf("%w (status %+v)", err, es.Status)
		}
		got = es
		return nil
	})
	return got
}

func synced(status metav1.ConditionStatus, reason, msg string) func(*fleetv1alpha1.ExportedService) error {
	return func(es *fleetv1alpha1.ExportedService) error {
		c := meta.FindStatusCondition(es.Status.Conditions, fleetv1alpha1.ConditionSynced)
		if c == nil || c.Status != status || c.Reason != reason || !strings.Contains(c.Message, msg) {
			return fmt.Errorf("Synced = %v", c)
		}
		return nil
	}
}

func gone(c client.Client, obj client.Object) func() error {
	return func() error {
		err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%w)", err)
	}
}

// markControllerWrites starts counting what the controller writes into members: every write
// of the hub's identity.
func (e *env) markControllerWrites(t *testing.T) *fleettest.WriteCounter {
	t.Helper()
	var audited []fleettest.Audited
	for _, m := range e.fleet.Members {
		audited = append(audited, fleettest.Audited{Cluster: m, Count: fleettest.ByUser(fleettest.HubUser)})
	}
	return fleettest.MarkWrites(t, audited...)
}
