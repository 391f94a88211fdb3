package mirror

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// The fuzz targets take a member's objects as JSON, which is how they reach the hub: a
// hostile member or tenant controls every byte of them. Without -fuzz they run their seed
// corpus (the table cases of TestParseExport and TestResolve) as ordinary tests.

// FuzzParseExport: ParseExport never panics, and what it accepts is an export that can be
// honoured: a known mode, a selector it parsed, never a mirror, never a system namespace
// unless allowed, and a mirror name that is a DNS-1035 label.
func FuzzParseExport(f *testing.F) {
	for _, tt := range parseExportCases() {
		b, err := json.Marshal(tt.svc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, tt.allowSystem)
	}
	f.Fuzz(func(t *testing.T, svcJSON []byte, allowSystem bool) {
		var svc *corev1.Service
		if json.Unmarshal(svcJSON, &svc) != nil {
			return
		}
		exp, exported, err := ParseExport(svc, allowSystem)
		asked := svc != nil && svc.Annotations[fleetv1alpha1.AnnotationExport] == "true"
		switch {
		case exported != asked:
			t.Fatalf("exported = %v for export annotation %q", exported, svc.Annotations[fleetv1alpha1.AnnotationExport])
		case !exported && (exp != nil || err != nil):
			t.Fatalf("not exported, yet export %+v, error %v", exp, err)
		case err != nil && exp != nil:
			t.Fatalf("an export with an error: %+v, %v", exp, err)
		case err != nil || !exported:
			return
		}
		if !slices.Contains(AddressModes, exp.Mode) {
			t.Errorf("mode %q is not a valid address mode", exp.Mode)
		}
		if reason := mirrorMark(svc.Labels); reason != "" {
			t.Errorf("a mirror (%s) was accepted for export", reason)
		}
		if systemNamespaces[svc.Namespace] && !allowSystem {
			t.Errorf("system namespace %s exported without the hub allowing it", svc.Namespace)
		}
		if text := strings.TrimSpace(svc.Annotations[fleetv1alpha1.AnnotationExportTo]); exp.ExportToText != text || (exp.ExportTo == nil) != (text == "") {
			t.Errorf("export-to %q gave text %q, selector %v", text, exp.ExportToText, exp.ExportTo)
		}
		if name := Name(svc.Name, "member-1"); len(validation.IsDNS1035Label(name)) > 0 {
			t.Errorf("mirror name %q of Service %q is not a DNS-1035 label", name, svc.Name)
		}
	})
}

// FuzzResolve: Resolve never panics; a result publishes only addresses it may (valid,
// canonical, not special, sorted and unique; pod IPs inside the source's pod network, node
// ports on its nodes' addresses, load-balancer and cluster IPs from the Service), ports in
// range, a DNS-valid ExternalName; and it does not depend on the order of slices, their
// endpoints or the nodes.
func FuzzResolve(f *testing.F) {
	for _, tt := range resolveCases() {
		b, err := json.Marshal(tt.src)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, string(tt.mode))
	}
	f.Fuzz(func(t *testing.T, srcJSON []byte, mode string) {
		var src Source
		if json.Unmarshal(srcJSON, &src) != nil {
			return
		}
		res, err := Resolve(src, fleetv1alpha1.AddressMode(mode))
		again, againErr := Resolve(reordered(src), fleetv1alpha1.AddressMode(mode))
		if (err == nil) != (againErr == nil) {
			t.Fatalf("error depends on order: %v, then %v", err, againErr)
		}
		if err != nil {
			return
		}
		if diff := cmp.Diff(res, again); diff != "" {
			t.Fatalf("result depends on the order of slices, endpoints or nodes (-first +reordered):\n%s", diff)
		}
		checkResolved(t, src, res)
	})
}

// reordered is src with its slices, their endpoints and its nodes in reverse order.
func reordered(src Source) Source {
	out := src
	out.Slices = slices.Clone(src.Slices)
	slices.Reverse(out.Slices)
	for i := range out.Slices {
		out.Slices[i].Endpoints = slices.Clone(out.Slices[i].Endpoints)
		slices.Reverse(out.Slices[i].Endpoints)
	}
	out.Nodes = slices.Clone(src.Nodes)
	slices.Reverse(out.Nodes)
	return out
}

// checkResolved asserts the invariants of a Resolve result.
func checkResolved(t *testing.T, src Source, res *Resolved) {
	t.Helper()
	svc := src.Service
	switch res.Mode {
	case fleetv1alpha1.AddressModePodIP, fleetv1alpha1.AddressModeNodePort, fleetv1alpha1.AddressModeLoadBalancer, fleetv1alpha1.AddressModeClusterIP:
	default:
		t.Fatalf("mode %q is not a resolved mode", res.Mode)
	}
	if len(res.Ports) != len(svc.Spec.Ports) {
		t.Fatalf("%d ports for a Service with %d", len(res.Ports), len(svc.Spec.Ports))
	}
	for i, p := range res.Ports {
		if p.Port != svc.Spec.Ports[i].Port || !validPort(p.Port) || !validPort(p.TargetPort) {
			t.Errorf("port %d: %+v (Service port %d)", i, p, svc.Spec.Ports[i].Port)
		}
	}
	if res.ExternalName != "" && (len(validation.IsDNS1123Subdomain(res.ExternalName)) > 0 || len(res.Endpoints) > 0) {
		t.Errorf("ExternalName %q (with %d endpoints)", res.ExternalName, len(res.Endpoints))
	}
	allowed := allowedAddresses(src, res.Mode)
	var last netip.Addr
	for i, e := range res.Endpoints {
		a, reason := checkIP(e.Address)
		switch {
		case reason != "":
			t.Errorf("published %q: %s", e.Address, reason)
		case a.String() != e.Address:
			t.Errorf("published %q, not canonical (%s)", e.Address, a)
		case i > 0 && last.Compare(a) >= 0:
			t.Errorf("endpoints not sorted and unique: %s after %s", a, last)
		case !allowed(e):
			t.Errorf("published %s in mode %s: not an address of the source for that mode", e.Address, res.Mode)
		}
		last = a
	}
	if !slices.IsSorted(res.Refused) || len(slices.Compact(slices.Clone(res.Refused))) != len(res.Refused) {
		t.Errorf("refusals not sorted and unique: %q", res.Refused)
	}
}

// allowedAddresses says which endpoints the source may publish in mode.
func allowedAddresses(src Source, mode fleetv1alpha1.AddressMode) func(Endpoint) bool {
	has := func(list []string, addr string) bool {
		for _, s := range list {
			if a, err := netip.ParseAddr(s); err == nil && a.String() == addr {
				return true
			}
		}
		return false
	}
	switch mode {
	case fleetv1alpha1.AddressModePodIP:
		network := podNetworkOf(src.Nodes)
		return func(e Endpoint) bool { return network.check(netip.MustParseAddr(e.Address)) == "" }
	case fleetv1alpha1.AddressModeNodePort:
		return func(e Endpoint) bool {
			for _, n := range src.Nodes {
				if n.Name != e.NodeName {
					continue
				}
				for _, na := range n.Status.Addresses {
					if (na.Type == corev1.NodeInternalIP || na.Type == corev1.NodeExternalIP) && has([]string{na.Address}, e.Address) {
						return true
					}
				}
			}
			return false
		}
	case fleetv1alpha1.AddressModeLoadBalancer:
		var ips []string
		for _, in := range src.Service.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		return func(e Endpoint) bool { return has(ips, e.Address) }
	}
	ips := append([]string{src.Service.Spec.ClusterIP}, src.Service.Spec.ClusterIPs...)
	return func(e Endpoint) bool { return has(ips, e.Address) }
}
