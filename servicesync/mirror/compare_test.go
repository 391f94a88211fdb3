//nolint:staticcheck // SA1019: these tests check the v1 Endpoints the design publishes.
package mirror

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// desiredMirror is the mirror of a dual-stack PodIP export: Service, Endpoints, two slices.
func desiredMirror(t *testing.T) (*corev1.Service, *corev1.Endpoints, []*discoveryv1.EndpointSlice) {
	t.Helper()
	withMetrics := []discoveryv1.EndpointPort{httpSlicePort[0], {Name: ptr.To("metrics"), Port: ptr.To[int32](9090)}}
	src := Source{Cluster: "east", Service: service(ports(
		corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http")},
		corev1.ServicePort{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9090)}, // protocol left to the default
	)), Slices: []discoveryv1.EndpointSlice{
		slice(v4, withMetrics, ep("10.244.1.5", inZone("a")), ep("10.244.1.6", notReady), ep("10.244.1.7", terminatingServing)),
		slice(v6, withMetrics, ep("fd00::5")),
	}, Nodes: twoNodes}
	res, err := Resolve(src, fleetv1alpha1.AddressModePodIP)
	if err != nil {
		t.Fatal(err)
	}
	return Objects(src, res)
}

// asServerReturns simulates what a read from the API server gives back for a written object:
// metadata filled in, defaults applied, fields other actors own, Endpoints reordered.
func asServerReturns(obj client.Object) client.Object {
	o := obj.DeepCopyObject().(client.Object)
	o.SetResourceVersion("4711")
	o.SetUID(types.UID("0b6f-uid"))
	o.SetGeneration(1)
	o.SetCreationTimestamp(metav1.Now())
	o.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: fleetv1alpha1.FieldManager, Operation: metav1.ManagedFieldsOperationUpdate}})
	o.SetLabels(withLabel(o.GetLabels(), "team", "shop")) // another actor's label
	o.SetAnnotations(withLabel(o.GetAnnotations(), "note", "kept"))
	switch o := o.(type) {
	case *corev1.Service:
		o.Spec.ClusterIP, o.Spec.ClusterIPs = "10.97.3.4", []string{"10.97.3.4", "fd00:97::4"}
		o.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
		o.Spec.SessionAffinity = corev1.ServiceAffinityNone
		o.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyCluster)
		for i := range o.Spec.Ports {
			if o.Spec.Ports[i].Protocol == "" {
				o.Spec.Ports[i].Protocol = corev1.ProtocolTCP
			}
		}
	case *corev1.Endpoints:
		for i := range o.Subsets {
			s := &o.Subsets[i]
			for j := range s.Ports {
				if s.Ports[j].Protocol == "" {
					s.Ports[j].Protocol = corev1.ProtocolTCP
				}
			}
			// Older servers repacked subsets: addresses and ports in their own order.
			s.NotReadyAddresses = append([]corev1.EndpointAddress(nil), s.NotReadyAddresses...)
			for a, b := 0, len(s.NotReadyAddresses)-1; a < b; a, b = a+1, b-1 {
				s.NotReadyAddresses[a], s.NotReadyAddresses[b] = s.NotReadyAddresses[b], s.NotReadyAddresses[a]
			}
			for a, b := 0, len(s.Ports)-1; a < b; a, b = a+1, b-1 {
				s.Ports[a], s.Ports[b] = s.Ports[b], s.Ports[a]
			}
		}
	case *discoveryv1.EndpointSlice:
		for i := range o.Ports {
			if o.Ports[i].Name == nil {
				o.Ports[i].Name = ptr.To("")
			}
			if o.Ports[i].Protocol == nil {
				o.Ports[i].Protocol = ptr.To(corev1.ProtocolTCP)
			}
		}
	}
	return o
}

func TestNeedsUpdate(t *testing.T) {
	svc, eps, slices := desiredMirror(t)
	if len(slices) != 2 {
		t.Fatalf("want 2 slices, got %d", len(slices))
	}
	edit := func(obj client.Object, f func(client.Object)) client.Object {
		o := asServerReturns(obj)
		f(o)
		return o
	}
	tests := []struct {
		name       string
		existing   client.Object
		desired    client.Object
		wantUpdate bool
	}{
		{name: "Service as the server returns it", existing: asServerReturns(svc), desired: svc},
		{name: "Endpoints as the server returns them", existing: asServerReturns(eps), desired: eps},
		{name: "IPv4 slice as the server returns it", existing: asServerReturns(slices[0]), desired: slices[0]},
		{name: "IPv6 slice as the server returns it", existing: asServerReturns(slices[1]), desired: slices[1]},
		{
			name:     "slice without port name and protocol vs server defaults",
			existing: asServerReturns(slices[1]),
			desired: func() client.Object {
				s := slices[1].DeepCopy()
				s.Ports[0].Protocol = nil
				return s
			}(),
		},
		{
			name: "Endpoints split differently into subsets",
			existing: edit(eps, func(o client.Object) {
				e := o.(*corev1.Endpoints)
				s := e.Subsets[0]
				e.Subsets = []corev1.EndpointSubset{
					{NotReadyAddresses: s.NotReadyAddresses, Ports: s.Ports},
					{Addresses: s.Addresses, Ports: s.Ports},
				}
			}),
			desired: eps,
		},
		{
			name: "Service target port left to the default",
			existing: edit(svc, func(o client.Object) {
				o.(*corev1.Service).Spec.Ports[1].TargetPort = intstr.IntOrString{}
			}),
			desired: svc,
		},

		{name: "ownership label removed", existing: edit(svc, func(o client.Object) { o.SetLabels(map[string]string{"team": "shop"}) }), desired: svc, wantUpdate: true},
		{name: "source annotation changed", existing: edit(svc, func(o client.Object) { o.SetAnnotations(map[string]string{AnnotationSource: "x"}) }), desired: svc, wantUpdate: true},
		{name: "skip-mirror label removed", existing: edit(eps, func(o client.Object) {
			l := o.GetLabels()
			delete(l, discoveryv1.LabelSkipMirror)
			o.SetLabels(l)
		}), desired: eps, wantUpdate: true},
		{name: "selector added by someone", existing: edit(svc, func(o client.Object) { o.(*corev1.Service).Spec.Selector = map[string]string{"app": "web"} }), desired: svc, wantUpdate: true},
		{name: "Service port changed", existing: edit(svc, func(o client.Object) { o.(*corev1.Service).Spec.Ports[0].Port = 8000 }), desired: svc, wantUpdate: true},
		{name: "Service target port changed", existing: edit(svc, func(o client.Object) { o.(*corev1.Service).Spec.Ports[0].TargetPort = intstr.FromInt32(8081) }), desired: svc, wantUpdate: true},
		{name: "Service type changed", existing: edit(svc, func(o client.Object) { o.(*corev1.Service).Spec.Type = corev1.ServiceTypeNodePort }), desired: svc, wantUpdate: true},
		{name: "ipFamilyPolicy changed", existing: edit(svc, func(o client.Object) {
			o.(*corev1.Service).Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
		}), desired: svc, wantUpdate: true},
		{name: "Endpoints address changed", existing: edit(eps, func(o client.Object) { o.(*corev1.Endpoints).Subsets[0].Addresses[0].IP = "10.244.9.9" }), desired: eps, wantUpdate: true},
		{name: "Endpoints address became ready", existing: edit(eps, func(o client.Object) {
			s := &o.(*corev1.Endpoints).Subsets[0]
			s.Addresses = append(s.Addresses, s.NotReadyAddresses[0])
			s.NotReadyAddresses = s.NotReadyAddresses[1:]
		}), desired: eps, wantUpdate: true},
		{name: "Endpoints port changed", existing: edit(eps, func(o client.Object) { o.(*corev1.Endpoints).Subsets[0].Ports[0].Port = 1 }), desired: eps, wantUpdate: true},
		{name: "Endpoints emptied", existing: edit(eps, func(o client.Object) { o.(*corev1.Endpoints).Subsets = nil }), desired: eps, wantUpdate: true},
		{name: "slice endpoint address changed", existing: edit(slices[0], func(o client.Object) {
			o.(*discoveryv1.EndpointSlice).Endpoints[1].Addresses = []string{"10.244.9.9"}
		}), desired: slices[0], wantUpdate: true},
		{name: "slice endpoint no longer ready", existing: edit(slices[0], func(o client.Object) {
			o.(*discoveryv1.EndpointSlice).Endpoints[0].Conditions.Ready = ptr.To(false)
		}), desired: slices[0], wantUpdate: true},
		{name: "slice endpoint terminating", existing: edit(slices[0], func(o client.Object) {
			o.(*discoveryv1.EndpointSlice).Endpoints[0].Conditions.Terminating = ptr.To(true)
		}), desired: slices[0], wantUpdate: true},
		{name: "slice endpoint removed", existing: edit(slices[0], func(o client.Object) {
			s := o.(*discoveryv1.EndpointSlice)
			s.Endpoints = s.Endpoints[1:]
		}), desired: slices[0], wantUpdate: true},
		{name: "slice endpoint got a nodeName", existing: edit(slices[0], func(o client.Object) {
			o.(*discoveryv1.EndpointSlice).Endpoints[0].NodeName = ptr.To("n1")
		}), desired: slices[0], wantUpdate: true},
		{name: "slice port changed", existing: edit(slices[0], func(o client.Object) {
			o.(*discoveryv1.EndpointSlice).Ports[0].Port = ptr.To[int32](1)
		}), desired: slices[0], wantUpdate: true},
		{name: "slice managed-by changed", existing: edit(slices[0], func(o client.Object) {
			o.SetLabels(withLabel(o.GetLabels(), discoveryv1.LabelManagedBy, "endpointslicemirroring-controller.k8s.io"))
		}), desired: slices[0], wantUpdate: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeedsUpdate(tt.existing, tt.desired); got != tt.wantUpdate {
				t.Fatalf("NeedsUpdate = %v, want %v", got, tt.wantUpdate)
			}
			// Apply then brings existing to desired, keeping what is not the mirror's.
			updated := tt.existing.DeepCopyObject().(client.Object)
			Apply(updated, tt.desired)
			if NeedsUpdate(asServerReturns(updated), tt.desired) {
				t.Errorf("NeedsUpdate after Apply = true, want false")
			}
			if updated.GetResourceVersion() != "4711" || updated.GetLabels()["team"] != "shop" {
				t.Errorf("Apply dropped resourceVersion or another actor's label: rv %q labels %v", updated.GetResourceVersion(), updated.GetLabels())
			}
		})
	}
}

// TestApplyService checks the type switches a mirror Service goes through as its source's
// load balancer changes from IPs to a hostname and back.
func TestApplyService(t *testing.T) {
	ipSrc := Source{Cluster: "east", Service: service(nodePortType(corev1.ServiceTypeLoadBalancer), ingress(lbIP))}
	hostSrc := Source{Cluster: "east", Service: service(nodePortType(corev1.ServiceTypeLoadBalancer), ingress(lbHost))}
	objects := func(src Source) *corev1.Service {
		res, err := Resolve(src, fleetv1alpha1.AddressModeAuto)
		if err != nil {
			t.Fatal(err)
		}
		svc, _, _ := Objects(src, res)
		return svc
	}
	clusterIPMirror := asServerReturns(objects(ipSrc)).(*corev1.Service)
	externalName := objects(hostSrc)

	if !NeedsUpdate(clusterIPMirror, externalName) {
		t.Fatal("NeedsUpdate(ClusterIP mirror, ExternalName mirror) = false")
	}
	updated := clusterIPMirror.DeepCopy()
	Apply(updated, externalName)
	want := clusterIPMirror.Spec.DeepCopy()
	want.Type, want.ExternalName = corev1.ServiceTypeExternalName, "web-123.elb.example.com"
	want.ClusterIP, want.ClusterIPs, want.IPFamilies, want.IPFamilyPolicy, want.InternalTrafficPolicy = "", nil, nil, nil, nil
	if diff := cmp.Diff(want, &updated.Spec); diff != "" {
		t.Errorf("ClusterIP → ExternalName spec (-want +got):\n%s", diff)
	}

	back := objects(ipSrc)
	if !NeedsUpdate(updated, back) {
		t.Fatal("NeedsUpdate(ExternalName mirror, ClusterIP mirror) = false")
	}
	Apply(updated, back)
	if updated.Spec.Type != corev1.ServiceTypeClusterIP || updated.Spec.ExternalName != "" || ptr.Deref(updated.Spec.IPFamilyPolicy, "") != corev1.IPFamilyPolicyPreferDualStack {
		t.Errorf("ExternalName → ClusterIP spec = %+v", updated.Spec)
	}
}
