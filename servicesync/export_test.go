package servicesync

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

func TestPodIPMirrorFollowsEndpoints(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	src := e.members["member-1"]
	must(t, src.Create(ctx, exported("web", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
	slice := podSlice("web", map[string]bool{"10.1.0.1": true, "10.1.0.2": false})
	must(t, src.Create(ctx, slice))

	name := mirror.Name("web", "member-1")
	for _, target := range []string{"member-2", "member-3"} {
		e.waitEndpoints(t, target, name, []string{"10.1.0.1"}, []string{"10.1.0.2"})
		svc := &corev1.Service{}
		must(t, e.members[target].Get(ctx, types.NamespacedName{Namespace: "shop", Name: name}, svc))
		if svc.Spec.Selector != nil || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].NodePort != 0 {
			t.Errorf("%s: mirror Service spec %+v: want selectorless, port 80, no nodePort", target, svc.Spec)
		}
		if svc.Annotations[fleetv1alpha1.AnnotationExport] != "" {
			t.Errorf("%s: the mirror carries the export annotation", target)
		}
		slices := &discoveryv1.EndpointSliceList{}
		must(t, e.members[target].List(ctx, slices, client.InNamespace("shop"), client.MatchingLabels{discoveryv1.LabelServiceName: name}))
		if len(slices.Items) != 1 || slices.Items[0].Labels[discoveryv1.LabelManagedBy] != mirror.ManagedBy || len(slices.Items[0].Endpoints) != 2 {
			t.Errorf("%s: mirror EndpointSlices %+v: want one slice managed by %s with 2 endpoints", target, slices.Items, mirror.ManagedBy)
		}
	}
	es := e.exportedService(t, "member-1", "web", synced(metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, "mirrored into 2 members"))
	if es.Status.AddressMode != fleetv1alpha1.AddressModePodIP || es.Status.Endpoints != 2 || es.Status.ReadyEndpoints != 1 ||
		strings.Join(es.Status.MirroredInto, ",") != "member-2,member-3" {
		t.Errorf("catalog status %+v", es.Status)
	}

	t.Run("endpoints added, removed and turning ready follow", func(t *testing.T) {
		update(t, src, slice, func() { setEndpoints(slice, map[string]bool{"10.1.0.2": true, "10.1.0.3": true}) })
		e.waitEndpoints(t, "member-2", name, []string{"10.1.0.2", "10.1.0.3"}, nil)
		e.waitEndpoints(t, "member-3", name, []string{"10.1.0.2", "10.1.0.3"}, nil)
	})

	t.Run("a mirror is never exported again", func(t *testing.T) {
		// The controller writes this mirror too: update it conflict-safely.
		m := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}
		update(t, e.members["member-2"], m, func() { m.Annotations[fleetv1alpha1.AnnotationExport] = "true" })
		e.exportedService(t, "member-2", name, synced(metav1.ConditionFalse, fleetv1alpha1.ReasonInvalidExport, "mirror"))
		twice := mirror.Name(name, "member-2")
		for _, c := range []string{"member-1", "member-3"} {
			if err := e.members[c].Get(ctx, types.NamespacedName{Namespace: "shop", Name: twice}, &corev1.Service{}); err == nil {
				t.Errorf("a mirror of the mirror exists in %s", c)
			}
		}
	})

	t.Run("unexport removes every mirror and the catalog entry", func(t *testing.T) {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}
		update(t, src, svc, func() { delete(svc.Annotations, fleetv1alpha1.AnnotationExport) })
		for _, target := range []string{"member-2", "member-3"} {
			eventually(t, 30*time.Second, "mirror Service removed from "+target,
				gone(e.members[target], &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}))
			eventually(t, 30*time.Second, "mirror Endpoints removed from "+target,
				gone(e.members[target], &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}))
		}
		eventually(t, 30*time.Second, "ExportedService removed",
			gone(e.hub, &fleetv1alpha1.ExportedService{ObjectMeta: metav1.ObjectMeta{Name: fleetv1alpha1.ExportedServiceName("member-1", "shop", "web")}}))
	})
}

func TestNameClashIsReportedAndUntouched(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	name := mirror.Name("api", "member-1")
	theirs := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"team": "payments"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 9999}}}}
	must(t, e.members["member-2"].Create(ctx, theirs))

	must(t, e.members["member-1"].Create(ctx, exported("api", map[string]string{fleetv1alpha1.AnnotationAddressMode: "ClusterIP"})))
	es := e.exportedService(t, "member-1", "api", synced(metav1.ConditionFalse, fleetv1alpha1.ReasonNameClash, "not a Flotilla mirror"))
	if len(es.Status.Conflicts) != 1 || es.Status.Conflicts[0].Cluster != "member-2" {
		t.Errorf("conflicts = %+v, want member-2", es.Status.Conflicts)
	}
	got := &corev1.Service{}
	must(t, e.members["member-2"].Get(ctx, client.ObjectKeyFromObject(theirs), got))
	if got.ResourceVersion != theirs.ResourceVersion || got.Spec.Ports[0].Port != 9999 {
		t.Errorf("the unowned Service was modified: %+v", got)
	}
}

func TestHostileExportsWriteNothing(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	src := e.members["member-1"]
	long := strings.Repeat("a", 63)

	must(t, src.Create(ctx, exported("bad-mode", map[string]string{fleetv1alpha1.AnnotationAddressMode: "Teleport"})))
	must(t, src.Create(ctx, exported("bad-to", map[string]string{fleetv1alpha1.AnnotationExportTo: "env in (prod"})))
	// The API server refuses loopback in EndpointSlices, but not in a LoadBalancer status.
	loop := exported("loop", map[string]string{fleetv1alpha1.AnnotationAddressMode: "LoadBalancer"})
	loop.Spec.Type = corev1.ServiceTypeLoadBalancer
	must(t, src.Create(ctx, loop))
	updateStatus(t, src, loop, func() {
		loop.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "127.0.0.1"}, {IP: "10.2.0.1"}}
	})
	edge := exported(long, map[string]string{fleetv1alpha1.AnnotationAddressMode: "ClusterIP"})
	must(t, src.Create(ctx, edge))
	sys := exported("dns", nil)
	sys.Namespace = "kube-system"
	must(t, src.Create(ctx, sys))

	e.exportedService(t, "member-1", "bad-mode", synced(metav1.ConditionFalse, fleetv1alpha1.ReasonInvalidExport, "Teleport"))
	e.exportedService(t, "member-1", "bad-to", synced(metav1.ConditionFalse, fleetv1alpha1.ReasonInvalidExport, fleetv1alpha1.AnnotationExportTo))
	loopES := e.exportedService(t, "member-1", "loop", synced(metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, "127.0.0.1"))
	if len(loopES.Status.Refused) != 1 || !strings.Contains(loopES.Status.Refused[0], "127.0.0.1") {
		t.Errorf("status.refused = %v, want the loopback address with its reason", loopES.Status.Refused)
	}
	e.waitEndpoints(t, "member-2", mirror.Name("loop", "member-1"), []string{"10.2.0.1"}, nil)
	// A 63-character name still gets a valid, shortened mirror.
	edgeName := mirror.Name(long, "member-1")
	if len(edgeName) > 63 {
		t.Fatalf("mirror name %q is longer than 63", edgeName)
	}
	eventually(t, 30*time.Second, "mirror of the 63-character Service", func() error {
		return e.members["member-2"].Get(ctx, types.NamespacedName{Namespace: "shop", Name: edgeName}, &corev1.Service{})
	})
	for _, n := range []string{"bad-mode", "bad-to"} {
		if err := e.members["member-2"].Get(ctx, types.NamespacedName{Namespace: "shop", Name: mirror.Name(n, "member-1")}, &corev1.Service{}); err == nil {
			t.Errorf("an invalid export %s was mirrored", n)
		}
	}
	// kube-system: refused (the namespace exists in every member, so a mirror would be possible).
	eventually(t, 30*time.Second, "kube-system export refused", func() error {
		es := &fleetv1alpha1.ExportedService{}
		if err := e.hub.Get(ctx, types.NamespacedName{Name: fleetv1alpha1.ExportedServiceName("member-1", "kube-system", "dns")}, es); err != nil {
			return err
		}
		if !strings.Contains(fmt.Sprint(es.Status.Conditions), "kube-system") {
			return fmt.Errorf("conditions %v", es.Status.Conditions)
		}
		return nil
	})
	if err := e.members["member-2"].Get(ctx, types.NamespacedName{Namespace: "kube-system", Name: mirror.Name("dns", "member-1")}, &corev1.Service{}); err == nil {
		t.Error("a kube-system Service was mirrored")
	}
}

func TestAddressModes(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	src := e.members["member-1"]
	// Nodes by hand: these control planes run no kubelet. node-0 and node-2 are ready.
	for i, ready := range []corev1.ConditionStatus{corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionTrue} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)}}
		must(t, src.Create(ctx, n))
		// kube-controller-manager's node controllers update new Nodes too: retry on conflict.
		updateStatus(t, src, n, func() {
			n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("192.0.2.%d", 10+i)}}
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		})
	}

	np := exported("np", nil)
	np.Spec.Type = corev1.ServiceTypeNodePort
	must(t, src.Create(ctx, np))
	must(t, src.Get(ctx, client.ObjectKeyFromObject(np), np))
	e.waitEndpoints(t, "member-2", mirror.Name("np", "member-1"), []string{"192.0.2.10", "192.0.2.12"}, []string{"192.0.2.11"})
	eps := &corev1.Endpoints{}
	must(t, e.members["member-2"].Get(ctx, types.NamespacedName{Namespace: "shop", Name: mirror.Name("np", "member-1")}, eps))
	if eps.Subsets[0].Ports[0].Port != np.Spec.Ports[0].NodePort {
		t.Errorf("NodePort mirror port = %d, want the nodePort %d", eps.Subsets[0].Ports[0].Port, np.Spec.Ports[0].NodePort)
	}
	e.exportedService(t, "member-1", "np", func(es *fleetv1alpha1.ExportedService) error {
		if es.Status.AddressMode != fleetv1alpha1.AddressModeNodePort {
			return fmt.Errorf("Auto resolved to %s, want NodePort", es.Status.AddressMode)
		}
		return nil
	})

	t.Run("externalTrafficPolicy Local publishes only nodes with a ready endpoint", func(t *testing.T) {
		// Such a node forwards only to its own pods: a node without one drops the traffic.
		local := exported("np-local", nil)
		local.Spec.Type = corev1.ServiceTypeNodePort
		local.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		must(t, src.Create(ctx, local))
		slice := podSlice("np-local", nil)
		slice.Endpoints = []discoveryv1.Endpoint{
			{Addresses: []string{"10.4.0.1"}, NodeName: ptr.To("node-2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.4.0.2"}, NodeName: ptr.To("node-0"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		}
		must(t, src.Create(ctx, slice))
		name := mirror.Name("np-local", "member-1")
		e.waitEndpoints(t, "member-2", name, []string{"192.0.2.12"}, nil)

		// node-0's pod turns ready: node-0 is published too (the slice drives the mirror).
		update(t, src, slice, func() { slice.Endpoints[1].Conditions.Ready = ptr.To(true) })
		e.waitEndpoints(t, "member-2", name, []string{"192.0.2.10", "192.0.2.12"}, nil)
	})

	lb := exported("lb", nil)
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	must(t, src.Create(ctx, lb))
	updateStatus(t, src, lb, func() { lb.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}} })
	e.waitEndpoints(t, "member-2", mirror.Name("lb", "member-1"), []string{"203.0.113.7"}, nil)

	host := exported("lb-host", map[string]string{fleetv1alpha1.AnnotationAddressMode: "LoadBalancer"})
	host.Spec.Type = corev1.ServiceTypeLoadBalancer
	must(t, src.Create(ctx, host))
	updateStatus(t, src, host, func() { host.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "api.example.com"}} })
	eventually(t, 30*time.Second, "ExternalName mirror", func() error {
		m := &corev1.Service{}
		if err := e.members["member-2"].Get(ctx, types.NamespacedName{Namespace: "shop", Name: mirror.Name("lb-host", "member-1")}, m); err != nil {
			return err
		}
		if m.Spec.Type != corev1.ServiceTypeExternalName || m.Spec.ExternalName != "api.example.com" {
			return fmt.Errorf("spec %+v", m.Spec)
		}
		return nil
	})

	cip := exported("cip", map[string]string{fleetv1alpha1.AnnotationAddressMode: "ClusterIP"})
	must(t, src.Create(ctx, cip))
	must(t, src.Get(ctx, client.ObjectKeyFromObject(cip), cip))
	e.waitEndpoints(t, "member-2", mirror.Name("cip", "member-1"), []string{cip.Spec.ClusterIP}, nil)
}

func TestSourceLifecycle(t *testing.T) {
	// A stale window long enough to watch endpoints stay ready inside it.
	e := newEnvTB(t, localfleet.Options{Members: 2, AuditLog: true}, 12*time.Second)
	ctx := context.Background()
	src := e.members["member-1"]
	must(t, src.Create(ctx, exported("web", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
	must(t, src.Create(ctx, podSlice("web", map[string]bool{"10.3.0.1": true})))
	name := mirror.Name("web", "member-1")
	e.waitEndpoints(t, "member-2", name, []string{"10.3.0.1"}, nil)

	parent := t
	t.Run("a restarted hub controller writes nothing into members", func(t *testing.T) {
		// The catalog entry as the first controller left it, once it reports the mirror.
		es := &fleetv1alpha1.ExportedService{}
		eventually(t, 30*time.Second, "the catalog entry to report the mirror in member-2", func() error {
			if err := e.hub.Get(ctx, types.NamespacedName{Name: fleetv1alpha1.ExportedServiceName("member-1", "shop", "web")}, es); err != nil {
				return err
			}
			if !slices.Equal(es.Status.MirroredInto, []string{"member-2"}) || es.Status.ObservedGeneration != es.Generation {
				return fmt.Errorf("status %+v", es.Status)
			}
			return nil
		})
		e.stop()
		reconciled := fleettest.Reconciles(t, "exportedservice")
		writes := e.markControllerWrites(t)
		hubWrites := fleettest.MarkWrites(t, fleettest.Audited{Cluster: e.fleet.Hub, Count: fleettest.ToResources("exportedservices")})
		e.startController(parent) // it must outlive this subtest
		// The new controller's first reconciles of the export: each would write a mirror or
		// the catalog entry that differed from what it computes.
		eventually(t, 30*time.Second, "the restarted controller to reconcile the export", func() error {
			if n := fleettest.Reconciles(t, "exportedservice"); n <= reconciled {
				return fmt.Errorf("%v reconciles, none since the restart", n)
			}
			return nil
		})
		// Counted at the members' API servers: no write in either member, over several probe
		// and reconcile rounds, and the catalog entry ends as it was.
		consistently(t, 3*time.Second, "no write into a member by the restarted controller", writes.None)
		after := &fleetv1alpha1.ExportedService{}
		must(t, e.hub.Get(ctx, client.ObjectKeyFromObject(es), after))
		if diff := cmp.Diff(es.Status, after.Status); diff != "" {
			t.Errorf("ExportedService status changed after a restart (-before +after):\n%s", diff)
		}
		// Known (see the report of this change): the restarted controller may patch the catalog
		// status while it has not connected every target yet. Shown, not yet asserted.
		if catalog, err := hubWrites.Writes(); err == nil && len(catalog) > 0 {
			t.Logf("catalog writes after the restart: %v", catalog)
		}
	})

	t.Run("a stopped source stays ready inside the stale window, goes not ready after it and comes back", func(t *testing.T) {
		connected := func(want metav1.ConditionStatus) func() error {
			return func() error {
				mc := &fleetv1alpha1.MemberCluster{}
				must(t, e.hub.Get(ctx, types.NamespacedName{Name: "member-1"}, mc))
				if c := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionConnected); c == nil || c.Status != want {
					return fmt.Errorf("conditions %v", mc.Status.Conditions)
				}
				return nil
			}
		}
		// The window is counted from the disconnect this test causes, not an earlier one.
		eventually(t, 30*time.Second, "member-1 connected before its API server stops", connected(metav1.ConditionTrue))
		down := e.fleet.Member("member-1")
		must(t, down.StopAPIServer()) // returns once the process exited, seconds after it stopped serving
		eventually(t, 30*time.Second, "member-1 disconnected", connected(metav1.ConditionFalse))
		mc := &fleetv1alpha1.MemberCluster{}
		must(t, e.hub.Get(ctx, types.NamespacedName{Name: "member-1"}, mc))
		since := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionConnected).LastTransitionTime.Time
		// Until the window ends (less a margin for polling), the endpoint stays ready in both the
		// Endpoints and the EndpointSlices: a blip must not cut traffic.
		inside := time.Until(since.Add(e.staleWindow - 500*time.Millisecond))
		if inside < time.Second {
			t.Fatalf("only %s of the %s stale window left after the disconnect was seen: too little to observe", inside, e.staleWindow)
		}
		consistently(t, inside, "the mirror's endpoint to stay ready inside the stale window", func() error {
			return e.mirrorState("member-2", name, []string{"10.3.0.1"}, nil)
		})
		e.waitEndpoints(t, "member-2", name, nil, []string{"10.3.0.1"})
		must(t, down.StartAPIServer(ctx))
		e.waitEndpoints(t, "member-2", name, []string{"10.3.0.1"}, nil)
	})

	t.Run("unregistering the source removes its mirrors everywhere", func(t *testing.T) {
		must(t, e.hub.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: "member-1"}}))
		eventually(t, 30*time.Second, "mirror removed after unregistering member-1",
			gone(e.members["member-2"], &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}))
		eventually(t, 30*time.Second, "ExportedService removed",
			gone(e.hub, &fleetv1alpha1.ExportedService{ObjectMeta: metav1.ObjectMeta{Name: fleetv1alpha1.ExportedServiceName("member-1", "shop", "web")}}))
	})
}
