//nolint:staticcheck // SA1019: these tests check the v1 Endpoints the design publishes.
package mirror

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

var (
	ownLabels = map[string]string{
		fleetv1alpha1.LabelSourceCluster:   "east",
		fleetv1alpha1.LabelSourceNamespace: "shop",
		fleetv1alpha1.LabelSourceName:      "web",
		fleetv1alpha1.LabelManagedBy:       fleetv1alpha1.ManagedByValue,
	}
	epsLabels       = withLabel(ownLabels, discoveryv1.LabelSkipMirror, "true")
	wantSliceLabels = withLabel(withLabel(ownLabels, discoveryv1.LabelServiceName, "web-east"), discoveryv1.LabelManagedBy, ManagedBy)
)

func withLabel(l map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for lk, lv := range l {
		out[lk] = lv
	}
	out[k] = v
	return out
}

func sliceEp(addr string, ready, serving, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(serving), Terminating: ptr.To(terminating)}}
}

func mirrorSlice(name string, t discoveryv1.AddressType, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: wantSliceLabels},
		AddressType: t,
		Endpoints:   eps,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
	}
}

func wantMirrorService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web-east", Namespace: "shop", Labels: ownLabels,
			Annotations: map[string]string{AnnotationSource: "east/shop/web"}},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeClusterIP,
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyPreferDualStack),
			Ports:          []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

func TestObjects(t *testing.T) {
	exported := service(
		annotated(fleetv1alpha1.AnnotationExport, "true", fleetv1alpha1.AnnotationAddressMode, "PodIP", fleetv1alpha1.AnnotationExportTo, "env=prod"),
		labelled("app", "web"),
		func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "web"} },
		nodePortType(corev1.ServiceTypeNodePort),
	)
	tests := []struct {
		name       string
		src        Source
		mode       fleetv1alpha1.AddressMode
		wantSvc    *corev1.Service
		wantEps    *corev1.Endpoints
		wantSlices []*discoveryv1.EndpointSlice
	}{
		{
			name: "pod IPs, dual-stack: selectorless ClusterIP, one subset, one slice per family",
			src: Source{Cluster: "east", Service: exported, Slices: []discoveryv1.EndpointSlice{
				slice(v4, httpSlicePort, ep("10.244.1.6", notReady, onNode("n1")), ep("10.244.1.5", inZone("a"), onNode("n1"))),
				slice(v6, httpSlicePort, ep("fd00::5", terminatingServing)),
			}, Nodes: twoNodes},
			mode:    fleetv1alpha1.AddressModePodIP,
			wantSvc: wantMirrorService(),
			wantEps: &corev1.Endpoints{
				ObjectMeta: metav1.ObjectMeta{Name: "web-east", Namespace: "shop", Labels: epsLabels},
				Subsets: []corev1.EndpointSubset{{
					Addresses:         []corev1.EndpointAddress{{IP: "10.244.1.5"}},
					NotReadyAddresses: []corev1.EndpointAddress{{IP: "10.244.1.6"}, {IP: "fd00::5"}},
					Ports:             []corev1.EndpointPort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8080}},
				}},
			},
			wantSlices: []*discoveryv1.EndpointSlice{
				mirrorSlice("web-east-ipv4-0", v4,
					func() discoveryv1.Endpoint {
						e := sliceEp("10.244.1.5", true, true, false)
						e.Zone = ptr.To("a")
						return e
					}(),
					sliceEp("10.244.1.6", false, false, false)),
				mirrorSlice("web-east-ipv6-0", v6, sliceEp("fd00::5", false, true, true)),
			},
		},
		{
			name: "zero endpoints: Endpoints without subsets, no slices",
			src:  Source{Cluster: "east", Service: exported},
			mode: fleetv1alpha1.AddressModePodIP,
			wantSvc: func() *corev1.Service {
				s := wantMirrorService()
				s.Spec.Ports[0].TargetPort = intstr.FromInt32(80) // named targetPort, no slice to resolve it
				return s
			}(),
			wantEps: &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "web-east", Namespace: "shop", Labels: epsLabels}},
		},
		{
			name: "load-balancer hostname: an ExternalName Service only",
			src:  Source{Cluster: "east", Service: service(ingress(lbHost))},
			mode: fleetv1alpha1.AddressModeAuto,
			wantSvc: func() *corev1.Service {
				s := wantMirrorService()
				s.Spec.Type, s.Spec.ExternalName, s.Spec.IPFamilyPolicy = corev1.ServiceTypeExternalName, "web-123.elb.example.com", nil
				s.Spec.Ports[0].TargetPort = intstr.FromInt32(80)
				return s
			}(),
		},
		{
			name: "node ports: ports without nodePort, endpoints on the node ports",
			src:  Source{Cluster: "east", Service: exported, Nodes: twoNodes[:1]},
			mode: fleetv1alpha1.AddressModeNodePort,
			wantSvc: func() *corev1.Service {
				s := wantMirrorService()
				s.Spec.Ports[0].TargetPort = intstr.FromInt32(30080)
				return s
			}(),
			wantEps: &corev1.Endpoints{
				ObjectMeta: metav1.ObjectMeta{Name: "web-east", Namespace: "shop", Labels: epsLabels},
				Subsets: []corev1.EndpointSubset{{
					Addresses: []corev1.EndpointAddress{{IP: "192.168.0.1"}},
					Ports:     []corev1.EndpointPort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 30080}},
				}},
			},
			wantSlices: []*discoveryv1.EndpointSlice{func() *discoveryv1.EndpointSlice {
				e := sliceEp("192.168.0.1", true, true, false)
				e.Zone = ptr.To("zone-n1")
				s := mirrorSlice("web-east-ipv4-0", v4, e)
				s.Ports[0].Port = ptr.To[int32](30080)
				return s
			}()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Resolve(tt.src, tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			svc, eps, slices := Objects(tt.src, res)
			if diff := cmp.Diff(tt.wantSvc, svc); diff != "" {
				t.Errorf("Service (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantEps, eps); diff != "" {
				t.Errorf("Endpoints (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSlices, slices); diff != "" {
				t.Errorf("EndpointSlices (-want +got):\n%s", diff)
			}
		})
	}
}

// TestObjectsManyEndpoints: 250 endpoints make three slices of at most 100, named stably and
// identical whatever order the source listed them in.
func TestObjectsManyEndpoints(t *testing.T) {
	var eps []discoveryv1.Endpoint
	for i := range 250 {
		eps = append(eps, ep(fmt.Sprintf("10.244.%d.%d", i/200, i%200+1)))
	}
	build := func(eps []discoveryv1.Endpoint) []*discoveryv1.EndpointSlice {
		src := Source{Cluster: "east", Service: service(), Slices: []discoveryv1.EndpointSlice{
			slice(v4, httpSlicePort, eps[:120]...), slice(v4, httpSlicePort, eps[120:]...),
		}, Nodes: []corev1.Node{podCIDRs(node("n0", true), "10.244.0.0/16")}}
		res, err := Resolve(src, fleetv1alpha1.AddressModePodIP)
		if err != nil {
			t.Fatal(err)
		}
		_, _, slices := Objects(src, res)
		return slices
	}
	slices := build(eps)

	var gotNames []string
	var gotSizes []int
	for _, s := range slices {
		gotNames = append(gotNames, s.Name)
		gotSizes = append(gotSizes, len(s.Endpoints))
	}
	if diff := cmp.Diff([]string{"web-east-ipv4-0", "web-east-ipv4-1", "web-east-ipv4-2"}, gotNames); diff != "" {
		t.Errorf("slice names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{100, 100, 50}, gotSizes); diff != "" {
		t.Errorf("slice sizes (-want +got):\n%s", diff)
	}
	// Sorted numerically: 10.244.0.2 before 10.244.0.10, 10.244.0.200 before 10.244.1.1.
	if first, last := slices[0].Endpoints[0].Addresses[0], slices[2].Endpoints[49].Addresses[0]; first != "10.244.0.1" || last != "10.244.1.50" {
		t.Errorf("first/last address = %s/%s, want 10.244.0.1/10.244.1.50", first, last)
	}
	if a, b := slices[0].Endpoints[9].Addresses[0], slices[0].Endpoints[10].Addresses[0]; a != "10.244.0.10" || b != "10.244.0.11" {
		t.Errorf("endpoints 9,10 = %s,%s, want numeric order", a, b)
	}

	shuffled := append([]discoveryv1.Endpoint(nil), eps...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if diff := cmp.Diff(slices, build(shuffled)); diff != "" {
		t.Errorf("slices depend on the source's order (-first +shuffled):\n%s", diff)
	}
	for _, s := range slices {
		if !Owned(s, "east", "shop", "web") {
			t.Errorf("slice %s is not Owned by its source", s.Name)
		}
	}
}

// TestMirrorIsNeverExported: a mirror Service carries no export annotation, and one a person
// adds does not make it exportable.
func TestMirrorIsNeverExported(t *testing.T) {
	src := Source{Cluster: "east", Service: service(annotated(fleetv1alpha1.AnnotationExport, "true", fleetv1alpha1.AnnotationAddressMode, "PodIP"))}
	res, err := Resolve(src, fleetv1alpha1.AddressModePodIP)
	if err != nil {
		t.Fatal(err)
	}
	svc, _, _ := Objects(src, res)
	for _, k := range []string{fleetv1alpha1.AnnotationExport, fleetv1alpha1.AnnotationExportTo, fleetv1alpha1.AnnotationAddressMode} {
		if _, ok := svc.Annotations[k]; ok {
			t.Errorf("mirror Service carries annotation %s", k)
		}
	}
	if _, exported, err := ParseExport(svc, true); exported || err != nil {
		t.Errorf("ParseExport(mirror) = exported %v, err %v; want not exported", exported, err)
	}
	svc.Annotations[fleetv1alpha1.AnnotationExport] = "true"
	if _, _, err := ParseExport(svc, true); err == nil {
		t.Error("ParseExport(mirror annotated export=true) = nil error, want the mirror refused")
	}
}
