package servicesync

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Cache transforms: a member holds thousands of Services and EndpointSlices Flotilla never
// exports, so what the hub keeps of each is cut to what servicesync decides on before it
// enters the cache. Full objects of exported Services are read from the member on demand.
// Each transform builds a new object, so that nothing of the decoded one stays referenced.

// flotillaPrefix starts every label and annotation key Flotilla defines.
const flotillaPrefix = "fleet.flotilla.dev/"

// trimServiceMeta keeps a Service's identity, Flotilla's annotations (the export request)
// and Flotilla's labels (a mirror's ownership). Other teams' labels, last-applied
// configuration and managedFields stay out of the hub.
func trimServiceMeta(in any) (any, error) {
	p, ok := in.(*metav1.PartialObjectMetadata)
	if !ok {
		return in, nil
	}
	out := &metav1.PartialObjectMetadata{TypeMeta: p.TypeMeta, ObjectMeta: identity(p)}
	out.Labels = keepKeys(p.Labels, flotillaLabel)
	out.Annotations = keepKeys(p.Annotations, func(k, _ string) bool { return strings.HasPrefix(k, flotillaPrefix) })
	keepUIDOfMirror(out, p)
	return out, nil
}

// trimSliceMeta keeps an EndpointSlice's identity, the Service it belongs to and Flotilla's
// labels: enough to map a change to an export, or to find a mirror's slices.
func trimSliceMeta(in any) (any, error) {
	p, ok := in.(*metav1.PartialObjectMetadata)
	if !ok {
		return in, nil
	}
	out := &metav1.PartialObjectMetadata{TypeMeta: p.TypeMeta, ObjectMeta: identity(p)}
	out.Labels = keepKeys(p.Labels, func(k, v string) bool { return k == discoveryv1.LabelServiceName || flotillaLabel(k, v) })
	keepUIDOfMirror(out, p)
	return out, nil
}

// trimNode keeps what mirrors are computed and checked from: addresses, readiness,
// schedulability and zone (NodePort mirrors), and pod CIDRs (the range PodIP addresses must
// lie in). Images, capacity, heartbeat times and the rest are dropped.
func trimNode(in any) (any, error) {
	n, ok := in.(*corev1.Node)
	if !ok {
		return in, nil
	}
	out := &corev1.Node{TypeMeta: n.TypeMeta, ObjectMeta: identity(n)}
	out.Labels = keepKeys(n.Labels, func(k, _ string) bool { return k == corev1.LabelTopologyZone })
	out.Spec.Unschedulable = n.Spec.Unschedulable
	out.Spec.PodCIDR, out.Spec.PodCIDRs = n.Spec.PodCIDR, n.Spec.PodCIDRs
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			out.Status.Addresses = append(out.Status.Addresses, a)
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return out, nil
}

// identity is the metadata every cached object keeps: what names it and what a
// reader needs to tell versions and deletions apart.
func identity(o metav1.Object) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: o.GetName(), Namespace: o.GetNamespace(), UID: o.GetUID(),
		ResourceVersion: o.GetResourceVersion(), DeletionTimestamp: o.GetDeletionTimestamp(),
	}
}

// keepUIDOfMirror keeps the UID only on mirrors, which collection deletes with a UID
// precondition; a member's own Services and slices do without it (48 bytes each).
func keepUIDOfMirror(out, in *metav1.PartialObjectMetadata) {
	if out.Labels[fleetv1alpha1.LabelSourceCluster] == "" {
		out.UID = ""
	} else {
		out.UID = in.UID
	}
}

// flotillaLabel: Flotilla's own labels, and managed-by only where Flotilla is the manager.
func flotillaLabel(k, v string) bool {
	return strings.HasPrefix(k, flotillaPrefix) || (k == fleetv1alpha1.LabelManagedBy && v == fleetv1alpha1.ManagedByValue)
}

// keepKeys is the subset of m that keep accepts; nil when empty, so that most objects
// carry no map at all.
func keepKeys(m map[string]string, keep func(k, v string) bool) map[string]string {
	var out map[string]string
	for k, v := range m {
		if keep(k, v) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}
