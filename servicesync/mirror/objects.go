package mirror

import (
	"fmt"
	"maps"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Objects builds the desired mirror of src in the source's namespace of every target cluster.
// The objects are the same in every target and built deterministically from res, so that an
// unchanged source compares equal to what was written before.
//
//   - The Service is selectorless, of type ClusterIP with ipFamilyPolicy PreferDualStack (so
//     that IPv6 slices are used where the target cluster is dual-stack; single-stack clusters
//     fall back to one family), or of type ExternalName for a load-balancer hostname. Ports
//     are copied without nodePort. It carries no export annotation: a mirror never looks
//     exported.
//   - The Endpoints (nil for ExternalName) hold one subset: ready addresses, not-ready
//     addresses, the resolved ports. Its skip-mirror label keeps the EndpointSlice mirroring
//     controller away; the slices are ours.
//   - The EndpointSlices hold one address family each, at most MaxEndpointsPerSlice endpoints
//     each, sorted by address, named <mirror>-ipv4-<n> and <mirror>-ipv6-<n>. Zero endpoints
//     give zero slices, as the EndpointSlice mirroring controller does for an Endpoints
//     without subsets: kube-proxy treats a Service without slices as one without endpoints.
//
// Endpoints carry no nodeName: it names a node of the source cluster, and a target node of
// the same name would wrongly treat the endpoint as local (internalTrafficPolicy=Local).
//
//nolint:staticcheck // SA1019: v1 Endpoints are part of the design, for consumers that still read them.
func Objects(src Source, res *Resolved) (svc *corev1.Service, eps *corev1.Endpoints, slices []*discoveryv1.EndpointSlice) {
	name := Name(src.Service.Name, src.Cluster)
	svc = mirrorService(src, res, name)
	if res.ExternalName != "" {
		return svc, nil, nil
	}
	return svc, mirrorEndpoints(src, res, name), mirrorSlices(src, res, name, sliceLabels(src, name))
}

func mirrorService(src Source, res *Resolved, name string) *corev1.Service {
	ns := src.Service.Namespace
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   ns,
			Labels:      Labels(src.Cluster, src.Service.Namespace, src.Service.Name),
			Annotations: map[string]string{AnnotationSource: src.Cluster + "/" + ns + "/" + src.Service.Name},
		},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyPreferDualStack)},
	}
	for _, p := range res.Ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: p.Name, Protocol: p.Protocol, AppProtocol: copyPtr(p.AppProtocol), Port: p.Port, TargetPort: intstr.FromInt32(p.TargetPort),
		})
	}
	if IsHeadless(src.Service) {
		// Headless like its source: DNS answers the endpoints themselves (a StatefulSet's pods).
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	if res.ExternalName != "" {
		svc.Spec.ClusterIP = ""
		svc.Spec.Type = corev1.ServiceTypeExternalName
		svc.Spec.ExternalName = res.ExternalName
		svc.Spec.IPFamilyPolicy = nil // Not allowed on ExternalName Services.
	}
	return svc
}

//nolint:staticcheck // SA1019: v1 Endpoints are part of the design, for consumers that still read them.
func mirrorEndpoints(src Source, res *Resolved, name string) *corev1.Endpoints {
	l := Labels(src.Cluster, src.Service.Namespace, src.Service.Name)
	l[discoveryv1.LabelSkipMirror] = "true"
	eps := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: src.Service.Namespace, Labels: l}}
	if len(res.Endpoints) == 0 {
		return eps
	}
	sub := corev1.EndpointSubset{}
	for _, e := range res.Endpoints {
		if e.Ready {
			sub.Addresses = append(sub.Addresses, corev1.EndpointAddress{IP: e.Address})
		} else {
			sub.NotReadyAddresses = append(sub.NotReadyAddresses, corev1.EndpointAddress{IP: e.Address})
		}
	}
	for _, p := range res.Ports {
		sub.Ports = append(sub.Ports, corev1.EndpointPort{Name: p.Name, Protocol: p.Protocol, AppProtocol: copyPtr(p.AppProtocol), Port: p.TargetPort})
	}
	eps.Subsets = []corev1.EndpointSubset{sub}
	return eps
}

// mirrorSlices builds the slices of res named after name, each with labels.
func mirrorSlices(src Source, res *Resolved, name string, labels map[string]string) []*discoveryv1.EndpointSlice {
	var ports []discoveryv1.EndpointPort
	for _, p := range res.Ports {
		ports = append(ports, discoveryv1.EndpointPort{
			Name: ptr.To(p.Name), Protocol: ptr.To(p.Protocol), AppProtocol: copyPtr(p.AppProtocol), Port: ptr.To(p.TargetPort),
		})
	}
	byFamily := map[discoveryv1.AddressType][]discoveryv1.Endpoint{}
	for _, e := range res.Endpoints {
		t := discoveryv1.AddressTypeIPv6
		if netip.MustParseAddr(e.Address).Is4() {
			t = discoveryv1.AddressTypeIPv4
		}
		ep := discoveryv1.Endpoint{
			Addresses:  []string{e.Address},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(e.Ready), Serving: ptr.To(e.Serving), Terminating: ptr.To(e.Terminating)},
		}
		if e.Zone != "" {
			ep.Zone = ptr.To(e.Zone)
		}
		byFamily[t] = append(byFamily[t], ep)
	}
	var out []*discoveryv1.EndpointSlice
	for _, fam := range []struct {
		t      discoveryv1.AddressType
		suffix string
	}{{discoveryv1.AddressTypeIPv4, "ipv4"}, {discoveryv1.AddressTypeIPv6, "ipv6"}} {
		all := byFamily[fam.t]
		for n := 0; len(all) > 0; n++ {
			k := min(len(all), MaxEndpointsPerSlice)
			chunk := all[:k:k]
			all = all[k:]
			out = append(out, &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{
					Name:      fmt.Sprintf("%s-%s-%d", name, fam.suffix, n),
					Namespace: src.Service.Namespace,
					Labels:    maps.Clone(labels),
				},
				AddressType: fam.t,
				Endpoints:   chunk,
				Ports:       copyEndpointPorts(ports),
			})
		}
	}
	return out
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func copyEndpointPorts(in []discoveryv1.EndpointPort) []discoveryv1.EndpointPort {
	out := make([]discoveryv1.EndpointPort, len(in))
	for i := range in {
		in[i].DeepCopyInto(&out[i])
	}
	return out
}
