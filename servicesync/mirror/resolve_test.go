package mirror

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

const (
	v4 = discoveryv1.AddressTypeIPv4
	v6 = discoveryv1.AddressTypeIPv6
)

// Expected endpoints, briefly.
func ready(addr string) Endpoint { return Endpoint{Address: addr, Ready: true, Serving: true} }

func notReadyEp(addr string) Endpoint { return Endpoint{Address: addr} }

func readyOn(addr, node string) Endpoint {
	return Endpoint{Address: addr, Ready: true, Serving: true, NodeName: node, Zone: "zone-" + node}
}

var (
	httpTo8080 = []Port{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: 8080}}
	httpTo80   = []Port{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: 80}}
	httpToNode = []Port{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: 30080}}
	twoNodes   = []corev1.Node{
		podCIDRs(node("n1", true, hostname("n1"), internal("192.168.0.1")), "10.244.1.0/24", "fd00::/16"),
		podCIDRs(node("n2", true, internal("192.168.0.2")), "10.244.2.0/24"),
	}
	readyOnN2   = slice(v4, httpSlicePort, ep("10.244.2.7", onNode("n2")), ep("10.244.1.9", onNode("n1"), notReady))
	lbIP        = corev1.LoadBalancerIngress{IP: "203.0.113.10"}
	lbHost      = corev1.LoadBalancerIngress{Hostname: "web-123.elb.example.com"}
	exportedSvc = service()
)

// resolveCase is one row of TestResolve's table; the rows seed FuzzResolve too.
type resolveCase struct {
	name    string
	src     Source
	mode    fleetv1alpha1.AddressMode
	wantErr string // substring; "" = no error

	wantMode         fleetv1alpha1.AddressMode
	wantPorts        []Port
	wantEndpoints    []Endpoint
	wantExternalName string
	wantRefused      []string
}

func resolveCases() []resolveCase {
	return []resolveCase{
		// Auto resolution order.
		{
			name:     "Auto: LoadBalancer ingress IP first",
			src:      Source{Service: service(nodePortType(corev1.ServiceTypeLoadBalancer), ingress(lbIP)), Nodes: twoNodes},
			mode:     fleetv1alpha1.AddressModeAuto,
			wantMode: fleetv1alpha1.AddressModeLoadBalancer, wantPorts: httpTo80,
			wantEndpoints: []Endpoint{ready("203.0.113.10")},
		},
		{
			name:     "Auto: LoadBalancer hostname becomes an ExternalName",
			src:      Source{Service: service(nodePortType(corev1.ServiceTypeLoadBalancer), ingress(lbHost))},
			mode:     fleetv1alpha1.AddressModeAuto,
			wantMode: fleetv1alpha1.AddressModeLoadBalancer, wantPorts: httpTo80, wantExternalName: "web-123.elb.example.com",
		},
		{
			name:     "Auto: LoadBalancer without ingress yet uses node ports",
			src:      Source{Service: service(nodePortType(corev1.ServiceTypeLoadBalancer)), Nodes: twoNodes},
			mode:     fleetv1alpha1.AddressModeAuto,
			wantMode: fleetv1alpha1.AddressModeNodePort, wantPorts: httpToNode,
			wantEndpoints: []Endpoint{readyOn("192.168.0.1", "n1"), readyOn("192.168.0.2", "n2")},
		},
		{
			name:     "Auto: NodePort Service uses node ports",
			src:      Source{Service: service(nodePortType(corev1.ServiceTypeNodePort)), Nodes: twoNodes},
			mode:     "",
			wantMode: fleetv1alpha1.AddressModeNodePort, wantPorts: httpToNode,
			wantEndpoints: []Endpoint{readyOn("192.168.0.1", "n1"), readyOn("192.168.0.2", "n2")},
		},
		{
			name: "Auto: LoadBalancer without node ports and without ingress uses pod IPs",
			src: Source{
				Service: func() *corev1.Service { s := service(); s.Spec.Type = corev1.ServiceTypeLoadBalancer; return s }(),
				Slices:  []discoveryv1.EndpointSlice{slice(v4, httpSlicePort, ep("10.244.1.5"))},
				Nodes:   twoNodes,
			},
			mode:     fleetv1alpha1.AddressModeAuto,
			wantMode: fleetv1alpha1.AddressModePodIP, wantPorts: httpTo8080,
			wantEndpoints: []Endpoint{ready("10.244.1.5")},
		},
		{
			name:     "Auto: ClusterIP Service uses pod IPs",
			src:      Source{Service: service(), Slices: []discoveryv1.EndpointSlice{slice(v4, httpSlicePort, ep("10.244.1.5"))}, Nodes: twoNodes},
			mode:     fleetv1alpha1.AddressModeAuto,
			wantMode: fleetv1alpha1.AddressModePodIP, wantPorts: httpTo8080,
			wantEndpoints: []Endpoint{ready("10.244.1.5")},
		},

		// PodIP.
		{
			name: "PodIP: conditions carried, nil ready means ready, sorted by address",
			src: Source{Service: service(), Slices: []discoveryv1.EndpointSlice{slice(v4, httpSlicePort,
				ep("10.244.1.10", onNode("n1"), inZone("a")),
				ep("10.244.1.9", notReady),
				ep("10.244.1.8", terminatingServing),
				ep("10.244.1.7", nilConditions),
			)}, Nodes: twoNodes},
			mode:     fleetv1alpha1.AddressModePodIP,
			wantMode: fleetv1alpha1.AddressModePodIP, wantPorts: httpTo8080,
			wantEndpoints: []Endpoint{
				ready("10.244.1.7"),
				{Address: "10.244.1.8", Serving: true, Terminating: true},
				notReadyEp("10.244.1.9"),
				{Address: "10.244.1.10", Ready: true, Serving: true, NodeName: "n1", Zone: "a"},
			},
		},
		{
			name:      "PodIP: no slices is zero endpoints, target port from the Service",
			src:       Source{Service: service(ports(corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(9090)}))},
			mode:      fleetv1alpha1.AddressModePodIP,
			wantMode:  fleetv1alpha1.AddressModePodIP,
			wantPorts: []Port{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: 9090}},
		},
		{
			name: "PodIP: several ports matched by name and protocol",
			src: Source{
				Service: service(ports(
					corev1.ServicePort{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromString("dns")},
					corev1.ServicePort{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromString("dns-tcp"), AppProtocol: ptr.To("dns")},
				)),
				Slices: []discoveryv1.EndpointSlice{slice(v4, []discoveryv1.EndpointPort{
					{Name: ptr.To("dns-tcp"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](1053)},
					{Name: ptr.To("dns"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To[int32](1054)},
				}, ep("10.244.1.5"))},
				Nodes: twoNodes,
			},
			mode:     fleetv1alpha1.AddressModePodIP,
			wantMode: fleetv1alpha1.AddressModePodIP,
			wantPorts: []Port{
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: 1054},
				{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, AppProtocol: ptr.To("dns"), Port: 53, TargetPort: 1053},
			},
			wantEndpoints: []Endpoint{ready("10.244.1.5")},
		},
		{
			name: "PodIP: dual-stack slices, FQDN slice ignored, wrong family refused",
			src: Source{Service: service(), Slices: []discoveryv1.EndpointSlice{
				slice(v6, httpSlicePort, ep("FD00:10:244::5"), ep("10.244.1.6")),
				slice(v4, httpSlicePort, ep("10.244.1.5"), ep("fd00:10:244::6")),
				slice(discoveryv1.AddressTypeFQDN, httpSlicePort, ep("db.example.com")),
			}, Nodes: twoNodes},
			mode:     fleetv1alpha1.AddressModePodIP,
			wantMode: fleetv1alpha1.AddressModePodIP, wantPorts: httpTo8080,
			wantEndpoints: []Endpoint{ready("10.244.1.5"), ready("fd00:10:244::5")},
			wantRefused:   []string{"10.244.1.6: not an IPv6 address", "fd00:10:244::6: not an IPv4 address"},
		},
		{
			name: "PodIP: an address in two slices is published once, the ready one",
			src: Source{Service: service(), Slices: []discoveryv1.EndpointSlice{
				slice(v4, httpSlicePort, ep("10.244.1.5", notReady)),
				slice(v4, httpSlicePort, ep("10.244.1.5")),
			}, Nodes: twoNodes},
			mode:     fleetv1alpha1.AddressModePodIP,
			wantMode: fleetv1alpha1.AddressModePodIP, wantPorts: httpTo8080,
			wantEndpoints: []Endpoint{ready("10.244.1.5")},
		},
		{
			name: "PodIP: endpoints whose named port resolves differently are refused",
			src: Source{Service: service(), Slices: []discoveryv1.EndpointSlice{
				slice(v4, []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8081)}}, ep("10.244.2.9")),
				slice(v4, httpSlicePort, ep("10.244.1.5"), ep("10.244.1.6")),
			}, Nodes: twoNodes},
			mode:     fleetv1alpha1.AddressModePodIP,
			wantMode: fleetv1alpha1.AddressModePodIP, wantPorts: httpTo8080,
			wantEndpoints: []Endpoint{ready("10.244.1.5"), ready("10.244.1.6")},
			wantRefused:   []string{"10.244.2.9: target ports differ from the other endpoints'"},
		},
		{
			name: "PodIP: hostile addresses refused, IPv4 and IPv6",
			src: Source{Service: service(), Slices: []discoveryv1.EndpointSlice{
				slice(v4, httpSlicePort, ep("127.0.0.1"), ep("127.9.9.9"), ep("169.254.169.254"), ep("0.0.0.0"), ep("224.0.0.251"),
					ep("10.0.0.300"), ep("010.0.0.1"), ep("not-an-ip"), ep(""), ep("10.244.1.5")),
				slice(v6, httpSlicePort, ep("::1"), ep("fe80::1"), ep("::"), ep("ff02::1"), ep("fe80::1%eth0"), ep("::ffff:127.0.0.1"),
					ep("fd00::5")),
			}, Nodes: twoNodes},
			mode:     fleetv1alpha1.AddressModePodIP,
			wantMode: fleetv1alpha1.AddressModePodIP, wantPorts: httpTo8080,
			wantEndpoints: []Endpoint{ready("10.244.1.5"), ready("fd00::5")},
			wantRefused: []string{
				`"": invalid IP address`,
				"0.0.0.0: unspecified",
				"010.0.0.1: invalid IP address",
				"10.0.0.300: invalid IP address",
				"127.0.0.1: loopback",
				"127.9.9.9: loopback",
				"169.254.169.254: link-local",
				"224.0.0.251: multicast",
				"::1: loopback",
				"::: unspecified",
				"::ffff:127.0.0.1: IPv4-mapped IPv6 address",
				"fe80::1%eth0: invalid IP address",
				"fe80::1: link-local",
				"ff02::1: multicast",
				"not-an-ip: invalid IP address",
			},
		},

		{
			name: "PodIP: addresses outside the source's pod CIDRs are refused; its nodes' own addresses are host-network pods",
			src: Source{Service: service(), Slices: []discoveryv1.EndpointSlice{
				slice(v4, httpSlicePort, ep("10.244.1.5"), ep("10.244.2.5"), ep("192.168.0.2"),
					ep("10.96.0.1"), ep("10.244.3.1"), ep("192.0.2.1")),
				slice(v6, httpSlicePort, ep("fd00::5"), ep("fd01::5")),
			}, Nodes: twoNodes},
			mode:     fleetv1alpha1.AddressModePodIP,
			wantMode: fleetv1alpha1.AddressModePodIP, wantPorts: httpTo8080,
			wantEndpoints: []Endpoint{ready("10.244.1.5"), ready("10.244.2.5"), ready("192.168.0.2"), ready("fd00::5")},
			wantRefused: []string{
				"10.244.3.1: " + ReasonOutsidePodCIDRs,
				"10.96.0.1: " + ReasonOutsidePodCIDRs,
				"192.0.2.1: " + ReasonOutsidePodCIDRs,
				"fd01::5: " + ReasonOutsidePodCIDRs,
			},
		},
		{
			name: "PodIP: spec.podCIDR alone (clusters from before dual-stack) is a pod CIDR",
			src: Source{Service: service(), Slices: []discoveryv1.EndpointSlice{slice(v4, httpSlicePort, ep("10.244.7.5"), ep("10.244.8.5"))},
				Nodes: []corev1.Node{func() corev1.Node { n := node("n1", true); n.Spec.PodCIDR = "10.244.7.0/24"; return n }()}},
			mode:     fleetv1alpha1.AddressModePodIP,
			wantMode: fleetv1alpha1.AddressModePodIP, wantPorts: httpTo8080,
			wantEndpoints: []Endpoint{ready("10.244.7.5")},
			wantRefused:   []string{"10.244.8.5: " + ReasonOutsidePodCIDRs},
		},
		{
			name: "PodIP: a source whose Nodes carry no pod CIDRs publishes only its nodes' own addresses",
			src: Source{Service: service(), Slices: []discoveryv1.EndpointSlice{slice(v4, httpSlicePort, ep("10.244.1.5"), ep("192.168.0.1"))},
				Nodes: []corev1.Node{node("n1", true, internal("192.168.0.1"))}},
			mode:     fleetv1alpha1.AddressModePodIP,
			wantMode: fleetv1alpha1.AddressModePodIP, wantPorts: httpTo8080,
			wantEndpoints: []Endpoint{ready("192.168.0.1")},
			wantRefused:   []string{"10.244.1.5: " + ReasonNoPodCIDRs},
		},
		{
			name:     "PodIP: a source without Nodes publishes no pod IP",
			src:      Source{Service: service(), Slices: []discoveryv1.EndpointSlice{slice(v4, httpSlicePort, ep("10.244.1.5"))}},
			mode:     fleetv1alpha1.AddressModePodIP,
			wantMode: fleetv1alpha1.AddressModePodIP, wantPorts: httpTo8080,
			wantRefused: []string{"10.244.1.5: " + ReasonNoPodCIDRs},
		},

		// NodePort.
		{
			name: "NodePort: InternalIP, else ExternalIP; node readiness carried; unusable node refused",
			src: Source{Service: service(nodePortType(corev1.ServiceTypeNodePort)), Nodes: []corev1.Node{
				node("n1", true, external("198.51.100.1"), internal("192.168.0.1")),
				node("n2", false, internal("192.168.0.2")),
				node("n3", true, external("198.51.100.3")),
				node("n4", true, internal("127.0.0.1"), hostname("n4")),
			}},
			mode:     fleetv1alpha1.AddressModeNodePort,
			wantMode: fleetv1alpha1.AddressModeNodePort, wantPorts: httpToNode,
			wantEndpoints: []Endpoint{
				readyOn("192.168.0.1", "n1"),
				{Address: "192.168.0.2", NodeName: "n2", Zone: "zone-n2"},
				readyOn("198.51.100.3", "n3"),
			},
			wantRefused: []string{"127.0.0.1: loopback", "node n4: no usable InternalIP or ExternalIP"},
		},
		{
			name: "NodePort: one address per family of the Service",
			src: Source{Service: service(nodePortType(corev1.ServiceTypeNodePort), families(corev1.IPv6Protocol, corev1.IPv4Protocol)), Nodes: []corev1.Node{
				node("n1", true, internal("192.168.0.1"), internal("192.168.0.11"), internal("fd00::1")),
			}},
			mode:     fleetv1alpha1.AddressModeNodePort,
			wantMode: fleetv1alpha1.AddressModeNodePort, wantPorts: httpToNode,
			wantEndpoints: []Endpoint{readyOn("192.168.0.1", "n1"), readyOn("fd00::1", "n1")},
		},
		{
			name: "NodePort: a single-stack Service skips the other family",
			src: Source{Service: service(nodePortType(corev1.ServiceTypeNodePort), families(corev1.IPv4Protocol)), Nodes: []corev1.Node{
				node("n1", true, internal("fd00::1"), internal("192.168.0.1")),
			}},
			mode:     fleetv1alpha1.AddressModeNodePort,
			wantMode: fleetv1alpha1.AddressModeNodePort, wantPorts: httpToNode,
			wantEndpoints: []Endpoint{readyOn("192.168.0.1", "n1")},
		},
		{
			name: "NodePort: externalTrafficPolicy=Local keeps only nodes with a ready endpoint",
			src: Source{
				Service: service(nodePortType(corev1.ServiceTypeLoadBalancer), etpLocal),
				Slices:  []discoveryv1.EndpointSlice{readyOnN2},
				Nodes:   append(twoNodes, node("n3", true, internal("192.168.0.3"))),
			},
			mode:     fleetv1alpha1.AddressModeNodePort,
			wantMode: fleetv1alpha1.AddressModeNodePort, wantPorts: httpToNode,
			wantEndpoints: []Endpoint{readyOn("192.168.0.2", "n2")},
		},
		{
			name:     "NodePort: externalTrafficPolicy=Local without ready endpoints publishes nothing",
			src:      Source{Service: service(nodePortType(corev1.ServiceTypeNodePort), etpLocal), Nodes: twoNodes},
			mode:     fleetv1alpha1.AddressModeNodePort,
			wantMode: fleetv1alpha1.AddressModeNodePort, wantPorts: httpToNode,
		},
		{
			name:    "NodePort: a ClusterIP Service is refused",
			src:     Source{Cluster: "east", Service: service(), Nodes: twoNodes},
			mode:    fleetv1alpha1.AddressModeNodePort,
			wantErr: `Service shop/web in cluster "east": address mode NodePort needs a Service of type NodePort or LoadBalancer, not ClusterIP`,
		},
		{
			name: "NodePort: a LoadBalancer without node ports is refused",
			src: Source{Service: func() *corev1.Service { s := service(); s.Spec.Type = corev1.ServiceTypeLoadBalancer; return s }(),
				Nodes: twoNodes},
			mode:    fleetv1alpha1.AddressModeNodePort,
			wantErr: `port "http" (80) has no nodePort`,
		},

		// LoadBalancer.
		{
			name: "LoadBalancer: every ingress IP; a later hostname is refused",
			src: Source{Service: service(nodePortType(corev1.ServiceTypeLoadBalancer), ingress(
				lbIP, corev1.LoadBalancerIngress{IP: "2001:db8::10"}, corev1.LoadBalancerIngress{IP: "127.0.0.1"}, lbHost))},
			mode:     fleetv1alpha1.AddressModeLoadBalancer,
			wantMode: fleetv1alpha1.AddressModeLoadBalancer, wantPorts: httpTo80,
			wantEndpoints: []Endpoint{ready("203.0.113.10"), ready("2001:db8::10")},
			wantRefused:   []string{"127.0.0.1: loopback", "web-123.elb.example.com: hostname ingress ignored: the first ingress is an IP"},
		},
		{
			name:     "LoadBalancer: hostname, normalized, becomes an ExternalName",
			src:      Source{Service: service(ingress(corev1.LoadBalancerIngress{Hostname: "Web-123.ELB.example.com."}))},
			mode:     fleetv1alpha1.AddressModeLoadBalancer,
			wantMode: fleetv1alpha1.AddressModeLoadBalancer, wantPorts: httpTo80, wantExternalName: "web-123.elb.example.com",
		},
		{
			name:     "LoadBalancer: localhost hostname refused",
			src:      Source{Service: service(ingress(corev1.LoadBalancerIngress{Hostname: "localhost"}))},
			mode:     fleetv1alpha1.AddressModeLoadBalancer,
			wantMode: fleetv1alpha1.AddressModeLoadBalancer, wantPorts: httpTo80,
			wantRefused: []string{"localhost: loopback"},
		},
		{
			name:     "LoadBalancer: invalid hostname refused",
			src:      Source{Service: service(ingress(corev1.LoadBalancerIngress{Hostname: "bad_host!"}))},
			mode:     fleetv1alpha1.AddressModeLoadBalancer,
			wantMode: fleetv1alpha1.AddressModeLoadBalancer, wantPorts: httpTo80,
			wantRefused: []string{"bad_host!: not a valid DNS name"},
		},
		{
			name:     "LoadBalancer: no ingress yet is zero endpoints, not an error",
			src:      Source{Service: service(nodePortType(corev1.ServiceTypeLoadBalancer))},
			mode:     fleetv1alpha1.AddressModeLoadBalancer,
			wantMode: fleetv1alpha1.AddressModeLoadBalancer, wantPorts: httpTo80,
		},
		{
			name:    "LoadBalancer: a ClusterIP Service is refused",
			src:     Source{Service: service()},
			mode:    fleetv1alpha1.AddressModeLoadBalancer,
			wantErr: "address mode LoadBalancer needs a Service of type LoadBalancer, not ClusterIP",
		},

		// ClusterIP.
		{
			name:     "ClusterIP: every cluster IP with the Service ports",
			src:      Source{Service: service(clusterIPs("10.96.0.10", "fd00:96::10"))},
			mode:     fleetv1alpha1.AddressModeClusterIP,
			wantMode: fleetv1alpha1.AddressModeClusterIP, wantPorts: httpTo80,
			wantEndpoints: []Endpoint{ready("10.96.0.10"), ready("fd00:96::10")},
		},
		{
			name:     "ClusterIP: only the singular field set",
			src:      Source{Service: func() *corev1.Service { s := service(); s.Spec.ClusterIPs = nil; return s }()},
			mode:     fleetv1alpha1.AddressModeClusterIP,
			wantMode: fleetv1alpha1.AddressModeClusterIP, wantPorts: httpTo80,
			wantEndpoints: []Endpoint{ready("10.96.0.10")},
		},
		{
			name:    "ClusterIP: headless is an error",
			src:     Source{Service: service(clusterIPs(corev1.ClusterIPNone))},
			mode:    fleetv1alpha1.AddressModeClusterIP,
			wantErr: "headless (clusterIP: None); use PodIP",
		},

		// Services that cannot be mirrored at all.
		{
			name:    "ExternalName source",
			src:     Source{Service: func() *corev1.Service { s := service(); s.Spec.Type = corev1.ServiceTypeExternalName; return s }()},
			mode:    fleetv1alpha1.AddressModeAuto,
			wantErr: "type ExternalName has no addresses to export",
		},
		{
			name:    "no ports",
			src:     Source{Service: service(ports())},
			mode:    fleetv1alpha1.AddressModePodIP,
			wantErr: "has no ports to export",
		},
		{
			name:    "unknown mode",
			src:     Source{Service: exportedSvc},
			mode:    "Teleport",
			wantErr: `unknown address mode "Teleport"; valid modes: Auto, LoadBalancer, NodePort, PodIP, ClusterIP`,
		},
	}
}

func TestResolve(t *testing.T) {
	for _, tt := range resolveCases() {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.src, tt.mode)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			want := &Resolved{Mode: tt.wantMode, Ports: tt.wantPorts, Endpoints: tt.wantEndpoints, ExternalName: tt.wantExternalName, Refused: tt.wantRefused}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Resolve (-want +got):\n%s", diff)
			}
		})
	}
}

// TestResolveOrderIndependent: the same slices and nodes in another order give the same
// result, so a cache listing them differently does not rewrite mirrors.
func TestResolveOrderIndependent(t *testing.T) {
	a := slice(v4, httpSlicePort, ep("10.244.1.5"), ep("127.0.0.1"), ep("10.244.1.9", notReady))
	b := slice(v6, httpSlicePort, ep("fd00::5"), ep("::1"))
	c := slice(v4, httpSlicePort, ep("10.244.1.5", notReady), ep("10.244.1.1"))
	first, err := Resolve(Source{Service: service(), Slices: []discoveryv1.EndpointSlice{a, b, c}, Nodes: twoNodes}, fleetv1alpha1.AddressModePodIP)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Resolve(Source{Service: service(), Slices: []discoveryv1.EndpointSlice{c, b, a}, Nodes: twoNodes}, fleetv1alpha1.AddressModePodIP)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("result depends on slice order (-first +second):\n%s", diff)
	}
}
