package mirror

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NeedsUpdate reports whether existing (as read from the target cluster) differs from desired
// (from Objects) in a field the mirror sets. Both must be of the same kind: *corev1.Service,
// *corev1.Endpoints or *discoveryv1.EndpointSlice. Compared, for every kind: desired labels
// and annotations are present in existing with the same values (other keys are someone
// else's). Then, per kind:
//
//   - Service: type, externalName, selector (must be empty), headless or not (which Apply
//     cannot change: see NeedsReplace), ipFamilyPolicy when desired sets it, and ports in order by name, protocol (empty = TCP), port, targetPort (zero = port),
//     appProtocol and nodePort. Server-owned or defaulted fields are ignored: clusterIP(s),
//     ipFamilies, sessionAffinity, internalTrafficPolicy, status.
//   - Endpoints: the set of (address, ready, ports) with port protocol empty = TCP, in any
//     order and however the addresses are split into subsets.
//   - EndpointSlice: addressType; endpoints in order by addresses, ready/serving/terminating
//     (nil read as the API says: true, true, false), zone, nodeName and hostname; ports in any
//     order, with name nil = "" and protocol nil = TCP (the server's defaults).
//
//nolint:staticcheck // SA1019: v1 Endpoints are part of the design, for consumers that still read them.
func NeedsUpdate(existing, desired client.Object) bool {
	if !subset(desired.GetLabels(), existing.GetLabels()) || !subset(desired.GetAnnotations(), existing.GetAnnotations()) {
		return true
	}
	switch d := desired.(type) {
	case *corev1.Service:
		return !serviceEqual(mustBe[*corev1.Service](existing, desired), d)
	case *corev1.Endpoints:
		return !maps.Equal(endpointsKey(mustBe[*corev1.Endpoints](existing, desired).Subsets), endpointsKey(d.Subsets))
	case *discoveryv1.EndpointSlice:
		return !sliceEqual(mustBe[*discoveryv1.EndpointSlice](existing, desired), d)
	}
	panic(fmt.Sprintf("mirror.NeedsUpdate: unsupported kind %T", desired))
}

// Apply copies the fields NeedsUpdate compares from desired onto existing (the object read
// from the server, so that resourceVersion and server-owned fields are kept), merging labels
// and annotations. Updating existing then makes NeedsUpdate false.
//
//nolint:staticcheck // SA1019: v1 Endpoints are part of the design, for consumers that still read them.
func Apply(existing, desired client.Object) {
	existing.SetLabels(merge(existing.GetLabels(), desired.GetLabels()))
	existing.SetAnnotations(merge(existing.GetAnnotations(), desired.GetAnnotations()))
	switch d := desired.(type) {
	case *corev1.Service:
		e := mustBe[*corev1.Service](existing, desired)
		e.Spec.Type = d.Spec.Type
		e.Spec.ExternalName = d.Spec.ExternalName
		e.Spec.Selector = nil
		e.Spec.Ports = slices.Clone(d.Spec.Ports)
		for i := range e.Spec.Ports {
			e.Spec.Ports[i].AppProtocol = copyPtr(e.Spec.Ports[i].AppProtocol)
		}
		e.Spec.IPFamilyPolicy = copyPtr(d.Spec.IPFamilyPolicy)
		if d.Spec.Type == corev1.ServiceTypeExternalName {
			// An ExternalName Service has no cluster IP; the API server refuses these fields.
			e.Spec.ClusterIP, e.Spec.ClusterIPs, e.Spec.IPFamilies = "", nil, nil
			e.Spec.InternalTrafficPolicy = nil
		}
	case *corev1.Endpoints:
		e := mustBe[*corev1.Endpoints](existing, desired)
		e.Subsets = nil
		for i := range d.Subsets {
			e.Subsets = append(e.Subsets, *d.Subsets[i].DeepCopy())
		}
	case *discoveryv1.EndpointSlice:
		e := mustBe[*discoveryv1.EndpointSlice](existing, desired)
		c := d.DeepCopy()
		e.AddressType, e.Endpoints, e.Ports = c.AddressType, c.Endpoints, c.Ports
	default:
		panic(fmt.Sprintf("mirror.Apply: unsupported kind %T", desired))
	}
}

// NeedsReplace reports whether existing cannot be made desired by an update: a Service that
// is headless and should not be, or the other way round (a cluster IP is immutable). The
// writer deletes and re-creates it.
func NeedsReplace(existing, desired client.Object) bool {
	e, ok1 := existing.(*corev1.Service)
	d, ok2 := desired.(*corev1.Service)
	return ok1 && ok2 && d.Spec.Type != corev1.ServiceTypeExternalName && IsHeadless(e) != IsHeadless(d)
}

func mustBe[T client.Object](existing, desired client.Object) T {
	e, ok := existing.(T)
	if !ok {
		panic(fmt.Sprintf("mirror: existing %T and desired %T differ in kind", existing, desired))
	}
	return e
}

func subset(want, have map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func merge(base, over map[string]string) map[string]string {
	if len(over) == 0 {
		return base
	}
	out := maps.Clone(base)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, over)
	return out
}

type servicePortKey struct {
	Name        string
	Protocol    corev1.Protocol
	Port        int32
	TargetPort  intstr.IntOrString
	AppProtocol string
	NodePort    int32
}

func servicePorts(ports []corev1.ServicePort) []servicePortKey {
	out := make([]servicePortKey, len(ports))
	for i, p := range ports {
		tp := p.TargetPort
		if tp == intstr.FromInt32(0) || tp == intstr.FromString("") {
			tp = intstr.FromInt32(p.Port)
		}
		out[i] = servicePortKey{Name: p.Name, Protocol: protocol(p.Protocol), Port: p.Port, TargetPort: tp, AppProtocol: deref(p.AppProtocol, ""), NodePort: p.NodePort}
	}
	return out
}

func serviceEqual(e, d *corev1.Service) bool {
	if typeName(e.Spec.Type) != typeName(d.Spec.Type) || e.Spec.ExternalName != d.Spec.ExternalName || len(e.Spec.Selector) > 0 ||
		IsHeadless(e) != IsHeadless(d) {
		return false
	}
	if d.Spec.IPFamilyPolicy != nil && deref(e.Spec.IPFamilyPolicy, "") != *d.Spec.IPFamilyPolicy {
		return false
	}
	return slices.Equal(servicePorts(e.Spec.Ports), servicePorts(d.Spec.Ports))
}

// endpointsKey maps each address to its readiness and ports, independent of subset layout
// and order.
//
//nolint:staticcheck // SA1019: v1 Endpoints are part of the design, for consumers that still read them.
func endpointsKey(subsets []corev1.EndpointSubset) map[string]string {
	out := map[string]string{}
	for _, s := range subsets {
		ports := make([]string, len(s.Ports))
		for i, p := range s.Ports {
			ports[i] = fmt.Sprintf("%s/%s/%d/%s", p.Name, protocol(p.Protocol), p.Port, deref(p.AppProtocol, ""))
		}
		slices.Sort(ports)
		key := strings.Join(ports, ",")
		for _, a := range s.Addresses {
			out[a.IP] += "ready:" + key + ";"
		}
		for _, a := range s.NotReadyAddresses {
			out[a.IP] += "notready:" + key + ";"
		}
	}
	return out
}

type sliceEndpointKey struct {
	Addresses                   string
	Ready, Serving, Terminating bool
	Zone, NodeName, Hostname    string
}

type slicePortKey struct {
	Name        string
	Protocol    corev1.Protocol
	Port        int32
	AppProtocol string
}

func sliceEqual(e, d *discoveryv1.EndpointSlice) bool {
	if e.AddressType != d.AddressType {
		return false
	}
	return slices.Equal(sliceEndpoints(e.Endpoints), sliceEndpoints(d.Endpoints)) &&
		slices.Equal(slicePorts(e.Ports), slicePorts(d.Ports))
}

func sliceEndpoints(eps []discoveryv1.Endpoint) []sliceEndpointKey {
	out := make([]sliceEndpointKey, len(eps))
	for i, e := range eps {
		out[i] = sliceEndpointKey{
			Addresses:   strings.Join(e.Addresses, ","),
			Ready:       deref(e.Conditions.Ready, true),
			Serving:     deref(e.Conditions.Serving, true),
			Terminating: deref(e.Conditions.Terminating, false),
			Zone:        deref(e.Zone, ""),
			NodeName:    deref(e.NodeName, ""),
			Hostname:    deref(e.Hostname, ""),
		}
	}
	return out
}

func slicePorts(ports []discoveryv1.EndpointPort) []slicePortKey {
	out := make([]slicePortKey, len(ports))
	for i, p := range ports {
		out[i] = slicePortKey{Name: deref(p.Name, ""), Protocol: deref(p.Protocol, corev1.ProtocolTCP), Port: deref(p.Port, 0), AppProtocol: deref(p.AppProtocol, "")}
	}
	slices.SortFunc(out, func(a, b slicePortKey) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	return out
}
