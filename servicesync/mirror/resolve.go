package mirror

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Source is everything the mirrors of one exported Service depend on.
type Source struct {
	// Cluster is the source MemberCluster name (a DNS label).
	Cluster string
	// Service is the exported Service as read from the source cluster.
	Service *corev1.Service
	// Slices are the Service's EndpointSlices (label kubernetes.io/service-name) in the source cluster.
	Slices []discoveryv1.EndpointSlice
	// Nodes are the source cluster's Nodes: NodePort addresses are theirs, and PodIP
	// addresses must lie in their pod CIDRs (or be their addresses: host-network pods).
	Nodes []corev1.Node
}

// Endpoint is one reachable address of an exported Service.
type Endpoint struct {
	// Address is an IP address in canonical form.
	Address string
	// Ready, Serving and Terminating are the EndpointSlice conditions (nil already resolved).
	Ready, Serving, Terminating bool
	// NodeName is the source node behind the address (informational: it names a node of the
	// source cluster, so mirrors do not carry it).
	NodeName string
	// Zone is the source endpoint's or node's zone.
	Zone string
}

// Port is one port of a mirror.
type Port struct {
	Name        string
	Protocol    corev1.Protocol
	AppProtocol *string
	// Port is the Service port, the port clients of the mirror use.
	Port int32
	// TargetPort is the port the endpoints listen on in the resolved mode (pod port, node
	// port or the Service port itself).
	TargetPort int32
}

// Resolved is what an address mode yields for one exported Service.
type Resolved struct {
	// Mode is the mode in effect (Auto resolved).
	Mode fleetv1alpha1.AddressMode
	// Ports are the mirror's ports, in the Service's order.
	Ports []Port
	// Endpoints are the published addresses, sorted by address, one entry per address.
	Endpoints []Endpoint
	// ExternalName is set when the mode is LoadBalancer and the ingress is a hostname: the
	// mirror is then an ExternalName Service without endpoints.
	ExternalName string
	// Refused lists the addresses left out, each with the reason ("127.0.0.1: loopback"), sorted.
	Refused []string
}

// Resolve turns mode into the reachable endpoints of src.Service. Auto picks LoadBalancer when
// the Service has load-balancer ingress, NodePort for NodePort and LoadBalancer Services whose
// ports all have node ports, and PodIP otherwise. An error is a user error: the export cannot
// be mirrored as asked (wrong Service type for the mode, headless ClusterIP, no ports).
// Waiting is not an error: no ingress yet, or no slices yet, yields zero endpoints.
func Resolve(src Source, mode fleetv1alpha1.AddressMode) (*Resolved, error) {
	svc := src.Service
	if svc == nil {
		return nil, errors.New("resolve addresses: no source Service")
	}
	ref := fmt.Sprintf("Service %s/%s in cluster %q", svc.Namespace, svc.Name, src.Cluster)
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, fmt.Errorf("%s: type ExternalName has no addresses to export", ref)
	}
	if len(svc.Spec.Ports) == 0 {
		return nil, fmt.Errorf("%s has no ports to export", ref)
	}
	for _, p := range svc.Spec.Ports {
		if !validPort(p.Port) {
			return nil, fmt.Errorf("%s: port %s is out of range", ref, portName(p))
		}
	}
	if mode == "" || mode == fleetv1alpha1.AddressModeAuto {
		mode = autoMode(svc)
	}

	r := &resolver{res: &Resolved{Mode: mode}}
	var err error
	switch mode {
	case fleetv1alpha1.AddressModePodIP:
		r.podIPs(src)
	case fleetv1alpha1.AddressModeNodePort:
		err = r.nodePorts(src)
	case fleetv1alpha1.AddressModeLoadBalancer:
		err = r.loadBalancer(svc)
	case fleetv1alpha1.AddressModeClusterIP:
		err = r.clusterIP(svc)
	default:
		err = fmt.Errorf("unknown address mode %q; valid modes: %s", mode, modeList())
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	return r.finish(), nil
}

// NeedsNodes reports whether the mirrors of svc exported in mode depend on the source
// cluster's Nodes (also when Auto picks the mode): NodePort publishes their addresses, and
// PodIP publishes only addresses inside their pod CIDRs. Only then does the hub need that
// member's Nodes.
func NeedsNodes(svc *corev1.Service, mode fleetv1alpha1.AddressMode) bool {
	if mode == "" || mode == fleetv1alpha1.AddressModeAuto {
		mode = autoMode(svc)
	}
	return mode == fleetv1alpha1.AddressModeNodePort || mode == fleetv1alpha1.AddressModePodIP
}

// autoMode resolves Auto for svc.
func autoMode(svc *corev1.Service) fleetv1alpha1.AddressMode {
	if len(svc.Status.LoadBalancer.Ingress) > 0 {
		return fleetv1alpha1.AddressModeLoadBalancer
	}
	if t := svc.Spec.Type; (t == corev1.ServiceTypeNodePort || t == corev1.ServiceTypeLoadBalancer) && allNodePorts(svc) {
		return fleetv1alpha1.AddressModeNodePort
	}
	// Includes a LoadBalancer with allocateLoadBalancerNodePorts=false and no ingress yet:
	// such load balancers usually target pods directly, on a routable pod network.
	return fleetv1alpha1.AddressModePodIP
}

func allNodePorts(svc *corev1.Service) bool {
	for _, p := range svc.Spec.Ports {
		if p.NodePort == 0 {
			return false
		}
	}
	return true
}

type resolver struct {
	res *Resolved
	eps []Endpoint
}

func (r *resolver) refuse(addr, reason string) {
	if addr == "" {
		addr = `""`
	}
	r.res.Refused = append(r.res.Refused, addr+": "+reason)
}

// add publishes addr if it is acceptable, and records why not otherwise.
func (r *resolver) add(addr string, e Endpoint) {
	a, reason := checkIP(addr)
	if reason != "" {
		r.refuse(addr, reason)
		return
	}
	e.Address = a.String()
	r.eps = append(r.eps, e)
}

// servicePorts are the Service's ports with target = f(port).
func (r *resolver) servicePorts(svc *corev1.Service, target func(i int, p corev1.ServicePort) int32) {
	r.res.Ports = make([]Port, len(svc.Spec.Ports))
	for i, p := range svc.Spec.Ports {
		r.res.Ports[i] = Port{Name: p.Name, Protocol: protocol(p.Protocol), AppProtocol: p.AppProtocol, Port: p.Port, TargetPort: target(i, p)}
	}
}

// podIPs publishes the endpoints of the source's EndpointSlices (the pod IPs). Endpoints whose
// target ports differ from the majority's are refused: a mirror has one port set.
func (r *resolver) podIPs(src Source) {
	svc := src.Service
	type group struct {
		targets []int32
		eps     []Endpoint
	}
	groups := map[string]*group{}
	network := podNetworkOf(src.Nodes)
	for _, sl := range src.Slices {
		want, ok := family(sl.AddressType)
		if !ok {
			continue // FQDN slices carry no addresses a mirror can use.
		}
		targets := make([]int32, len(svc.Spec.Ports))
		for i, sp := range svc.Spec.Ports {
			targets[i] = slicePort(sl.Ports, sp)
		}
		key := fmt.Sprint(targets)
		g := groups[key]
		if g == nil {
			g = &group{targets: targets}
			groups[key] = g
		}
		for _, e := range sl.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			// The API makes the addresses of one endpoint fungible; like kube-proxy, use the first.
			addr := e.Addresses[0]
			a, reason := checkIP(addr)
			if reason == "" && !want(a) {
				reason = "not an " + string(sl.AddressType) + " address"
			}
			if reason == "" {
				reason = network.check(a)
			}
			if reason != "" {
				r.refuse(addr, reason)
				continue
			}
			ready := deref(e.Conditions.Ready, true)
			g.eps = append(g.eps, Endpoint{
				Address:     a.String(),
				Ready:       ready,
				Serving:     deref(e.Conditions.Serving, true),
				Terminating: deref(e.Conditions.Terminating, false),
				NodeName:    deref(e.NodeName, ""),
				Zone:        deref(e.Zone, ""),
			})
		}
	}

	var best *group
	var bestKey string
	for k, g := range groups {
		if best == nil || len(g.eps) > len(best.eps) || (len(g.eps) == len(best.eps) && k < bestKey) {
			best, bestKey = g, k
		}
	}
	r.servicePorts(svc, func(i int, p corev1.ServicePort) int32 {
		if best != nil && best.targets[i] != 0 {
			return best.targets[i]
		}
		return fallbackTarget(p)
	})
	if best == nil {
		return
	}
	r.eps = best.eps
	published := map[string]bool{}
	for _, e := range best.eps {
		published[e.Address] = true
	}
	for k, g := range groups {
		if k == bestKey {
			continue
		}
		for _, e := range g.eps {
			if !published[e.Address] {
				r.refuse(e.Address, "target ports differ from the other endpoints'")
			}
		}
	}
}

// podNetwork is where a source cluster's pods may be: the pod CIDRs its Nodes were given
// (spec.podCIDRs, by kube-controller-manager's node IPAM or the installer) and the Nodes'
// own addresses (host-network pods). A pod IP anywhere else, such as a Service IP, the API
// server or a cloud metadata address, is not a pod of the source: an EndpointSlice a tenant
// wrote by hand must not make other clusters send traffic there.
type podNetwork struct {
	cidrs []netip.Prefix
	nodes map[netip.Addr]bool
}

func podNetworkOf(nodes []corev1.Node) podNetwork {
	n := podNetwork{nodes: map[netip.Addr]bool{}}
	for i := range nodes {
		cidrs := nodes[i].Spec.PodCIDRs
		if len(cidrs) == 0 && nodes[i].Spec.PodCIDR != "" {
			cidrs = []string{nodes[i].Spec.PodCIDR}
		}
		for _, c := range cidrs {
			if p, err := netip.ParsePrefix(c); err == nil {
				n.cidrs = append(n.cidrs, p.Masked())
			}
		}
		for _, a := range nodes[i].Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				n.nodes[ip] = true
			}
		}
	}
	return n
}

// check says why a may not be published as a pod IP of the source, or "". Without any pod
// CIDR there is nothing to tell a pod from anything else, so nothing but the Nodes' own
// addresses is published (the safe side: see README, "Address checks").
func (n podNetwork) check(a netip.Addr) string {
	if n.nodes[a] {
		return ""
	}
	if len(n.cidrs) == 0 {
		return ReasonNoPodCIDRs
	}
	for _, p := range n.cidrs {
		if p.Contains(a) {
			return ""
		}
	}
	return ReasonOutsidePodCIDRs
}

// Reasons a pod IP is refused (the text after "<address>: " in Resolved.Refused).
const (
	ReasonOutsidePodCIDRs = "outside the source cluster's pod CIDRs"
	ReasonNoPodCIDRs      = "no pod CIDRs on the source cluster's Nodes (NoPodCIDRs)"
)

// slicePort is the port number the slice gives for the Service port sp, or 0 (none, or
// none a mirror could carry).
func slicePort(ports []discoveryv1.EndpointPort, sp corev1.ServicePort) int32 {
	for _, p := range ports {
		if deref(p.Name, "") == sp.Name && deref(p.Protocol, corev1.ProtocolTCP) == protocol(sp.Protocol) && p.Port != nil && validPort(*p.Port) {
			return *p.Port
		}
	}
	return 0
}

// fallbackTarget is the target port when no slice says: a numeric targetPort, else the port.
func fallbackTarget(p corev1.ServicePort) int32 {
	if p.TargetPort.Type == intstr.Int && validPort(p.TargetPort.IntVal) {
		return p.TargetPort.IntVal
	}
	return p.Port
}

// validPort: a port number a Service or EndpointSlice may carry.
func validPort(p int32) bool { return p >= 1 && p <= 65535 }

// nodePorts publishes the source's nodes with the Service's node ports.
func (r *resolver) nodePorts(src Source) error {
	svc := src.Service
	if t := svc.Spec.Type; t != corev1.ServiceTypeNodePort && t != corev1.ServiceTypeLoadBalancer {
		return fmt.Errorf("address mode NodePort needs a Service of type NodePort or LoadBalancer, not %s", typeName(t))
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort == 0 {
			return fmt.Errorf("address mode NodePort: port %s has no nodePort (allocateLoadBalancerNodePorts is false?)", portName(p))
		}
		if !validPort(p.NodePort) {
			return fmt.Errorf("address mode NodePort: port %s has nodePort %d, out of range", portName(p), p.NodePort)
		}
	}
	r.servicePorts(svc, func(_ int, p corev1.ServicePort) int32 { return p.NodePort })

	// With externalTrafficPolicy=Local a node forwards only to its own ready endpoints.
	var hosts map[string]bool
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		hosts = map[string]bool{}
		for _, sl := range src.Slices {
			for _, e := range sl.Endpoints {
				if e.NodeName != nil && deref(e.Conditions.Ready, true) {
					hosts[*e.NodeName] = true
				}
			}
		}
	}
	families := svc.Spec.IPFamilies
	if len(families) == 0 {
		families = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
	for i := range src.Nodes {
		n := &src.Nodes[i]
		if hosts != nil && !hosts[n.Name] {
			continue
		}
		ready := nodeReady(n)
		found := false
		for _, fam := range families {
			a, ok := r.nodeAddress(n, fam)
			if !ok {
				continue
			}
			found = true
			r.eps = append(r.eps, Endpoint{Address: a.String(), Ready: ready, Serving: ready, NodeName: n.Name, Zone: n.Labels[corev1.LabelTopologyZone]})
		}
		if !found {
			r.refuse("node "+n.Name, "no usable InternalIP or ExternalIP")
		}
	}
	return nil
}

// nodeAddress is the node's first acceptable InternalIP of the family, else its first
// acceptable ExternalIP; unacceptable ones are recorded as refused.
func (r *resolver) nodeAddress(n *corev1.Node, fam corev1.IPFamily) (netip.Addr, bool) {
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, na := range n.Status.Addresses {
			if na.Type != t {
				continue
			}
			a, reason := checkIP(na.Address)
			if reason == "invalid IP address" || (a.IsValid() && ipFamily(a) == fam) {
				if reason != "" {
					r.refuse(na.Address, reason)
					continue
				}
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// loadBalancer publishes the load-balancer ingress IPs, or an ExternalName for a hostname.
func (r *resolver) loadBalancer(svc *corev1.Service) error {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer && len(svc.Status.LoadBalancer.Ingress) == 0 {
		return fmt.Errorf("address mode LoadBalancer needs a Service of type LoadBalancer, not %s", typeName(svc.Spec.Type))
	}
	r.servicePorts(svc, func(_ int, p corev1.ServicePort) int32 { return p.Port })
	ing := svc.Status.LoadBalancer.Ingress
	if len(ing) == 0 {
		return nil // The load balancer is not provisioned yet: mirrors wait with no endpoints.
	}
	if ing[0].IP == "" && ing[0].Hostname != "" {
		host := strings.ToLower(strings.TrimSuffix(ing[0].Hostname, "."))
		switch {
		case host == "localhost" || strings.HasSuffix(host, ".localhost"):
			r.refuse(ing[0].Hostname, "loopback")
		case len(validation.IsDNS1123Subdomain(host)) > 0:
			r.refuse(ing[0].Hostname, "not a valid DNS name")
		default:
			r.res.ExternalName = host
		}
		return nil
	}
	for _, in := range ing {
		switch {
		case in.IP != "":
			r.add(in.IP, Endpoint{Ready: true, Serving: true})
		case in.Hostname != "":
			r.refuse(in.Hostname, "hostname ingress ignored: the first ingress is an IP")
		}
	}
	return nil
}

// clusterIP publishes the Service's cluster IPs (one per family).
func (r *resolver) clusterIP(svc *corev1.Service) error {
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return errors.New("address mode ClusterIP: the Service is headless (clusterIP: None); use PodIP")
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	if len(ips) == 0 {
		return errors.New("address mode ClusterIP: the Service has no cluster IP")
	}
	r.servicePorts(svc, func(_ int, p corev1.ServicePort) int32 { return p.Port })
	for _, ip := range ips {
		r.add(ip, Endpoint{Ready: true, Serving: true})
	}
	return nil
}

// finish de-duplicates and sorts the endpoints and sorts the refusals, so that equal inputs
// in any order give equal results.
func (r *resolver) finish() *Resolved {
	slices.SortFunc(r.eps, func(a, b Endpoint) int {
		if c := netip.MustParseAddr(a.Address).Compare(netip.MustParseAddr(b.Address)); c != 0 {
			return c
		}
		// The same address twice (two slices during an update): the most usable first.
		if c := cmp.Compare(rank(b), rank(a)); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.NodeName, b.NodeName), cmp.Compare(a.Zone, b.Zone))
	})
	r.eps = slices.CompactFunc(r.eps, func(a, b Endpoint) bool { return a.Address == b.Address })
	r.res.Endpoints = r.eps
	slices.Sort(r.res.Refused)
	r.res.Refused = slices.Compact(r.res.Refused)
	return r.res
}

func rank(e Endpoint) int {
	n := 0
	if e.Ready {
		n += 4
	}
	if e.Serving {
		n += 2
	}
	if !e.Terminating {
		n++
	}
	return n
}

// checkIP parses s and says why it may not be published, or "". The refused kinds are those
// the API server refuses in Endpoints and those that would send traffic to the wrong host.
func checkIP(s string) (netip.Addr, string) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, "invalid IP address"
	}
	switch {
	case a.Is4In6():
		return a, "IPv4-mapped IPv6 address"
	case a.IsUnspecified():
		return a, "unspecified"
	case a.IsLoopback():
		return a, "loopback"
	case a.IsLinkLocalUnicast():
		return a, "link-local"
	case a.IsMulticast():
		return a, "multicast"
	}
	return a, ""
}

func ipFamily(a netip.Addr) corev1.IPFamily {
	if a.Is4() {
		return corev1.IPv4Protocol
	}
	return corev1.IPv6Protocol
}

// family says which addresses a slice of this address type may hold.
func family(t discoveryv1.AddressType) (func(netip.Addr) bool, bool) {
	switch t {
	case discoveryv1.AddressTypeIPv4:
		return netip.Addr.Is4, true
	case discoveryv1.AddressTypeIPv6:
		return func(a netip.Addr) bool { return a.Is6() }, true
	}
	return nil, false
}

func protocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func typeName(t corev1.ServiceType) string {
	if t == "" {
		return string(corev1.ServiceTypeClusterIP)
	}
	return string(t)
}

func portName(p corev1.ServicePort) string {
	if p.Name != "" {
		return fmt.Sprintf("%q (%d)", p.Name, p.Port)
	}
	return fmt.Sprint(p.Port)
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
