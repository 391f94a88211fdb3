package mirror

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Merged objects: every member exporting a Service of one namespace/name contributes to one
// service of the fleet, the way the Multi-Cluster Services API (KEP-1645) merges
// ServiceExports into a ServiceImport. In a target member that is
//   - the Service <name>-global (GlobalName): selectorless, headless when the merged service
//     is, with the merged ports. It is the fleet.flotilla.dev/global mirror, and in a member
//     that serves ServiceImport also the ServiceImport's derived Service: its cluster IP is the
//     ServiceImport's, so that <name>.<namespace>.svc.clusterset.local routes like any Service;
//   - per exporter, EndpointSlices (MergedSlices) labelled kubernetes.io/service-name=<name>-global
//     (kube-proxy, cluster DNS) and multicluster.kubernetes.io/service-name=<name> plus
//     multicluster.kubernetes.io/source-cluster=<exporter> (MCS DNS), owned by that exporter;
//   - the ServiceImport <name> (ServiceImport), where the member serves that kind.
// The Service and the ServiceImport belong to all exporters together (LabelMerged).

// MergedPort is one port of a merged service, as MCS compares them.
type MergedPort struct {
	Name        string
	Protocol    corev1.Protocol
	AppProtocol string
	Port        int32
}

func (p MergedPort) String() string {
	s := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
	if p.AppProtocol != "" {
		s += " (" + p.AppProtocol + ")"
	}
	return s
}

// Exporter is one member's export of a Service of the namespace/name being merged.
type Exporter struct {
	// Cluster is the exporting member.
	Cluster string
	// Since is when the export began (the ServiceExport's creation, else the catalog entry's).
	Since time.Time
	// Headless is true for a headless source Service.
	Headless bool
	// Ports are the source's ports.
	Ports []MergedPort
}

// Conflict is why one exporter disagrees with the merged service.
type Conflict struct {
	// Reasons are ReasonPortConflict and/or ReasonTypeConflict.
	Reasons []string
	// Message says what differs and which export won.
	Message string
}

// Reason is the MCS condition reason: the reasons joined by commas.
func (c Conflict) Reason() string { return strings.Join(c.Reasons, ",") }

// Merged is the fleet's service of one namespace/name: its type and ports, and who disagrees.
type Merged struct {
	// Headless: the oldest export is headless.
	Headless bool
	// Ports: the union of the exporters' ports by name; where two disagree on a name (or on
	// a port number under two names), the oldest export's wins.
	Ports []MergedPort
	// Oldest is the exporter whose type and ports win conflicts.
	Oldest string
	// Conflicts by exporter.
	Conflicts map[string]Conflict
}

// Merge merges exporters by the MCS rules: the oldest export (by Since, then by cluster name)
// decides the type and every contested port; every export that disagrees gets a Conflict. An
// exporter in conflict still contributes its endpoints and its uncontested ports.
func Merge(exporters []Exporter) Merged {
	ordered := slices.Clone(exporters)
	slices.SortFunc(ordered, func(a, b Exporter) int {
		return cmp.Or(a.Since.Compare(b.Since), strings.Compare(a.Cluster, b.Cluster))
	})
	m := Merged{Conflicts: map[string]Conflict{}}
	if len(ordered) == 0 {
		return m
	}
	m.Oldest, m.Headless = ordered[0].Cluster, ordered[0].Headless
	byName := map[string]MergedPort{}
	byNumber := map[string]string{} // port/protocol -> name
	for _, e := range ordered {
		var reasons, msgs []string
		if e.Headless != m.Headless {
			reasons = append(reasons, fleetv1alpha1.ReasonTypeConflict)
			msgs = append(msgs, fmt.Sprintf("%s here, %s in the merged service (decided by the oldest export, in cluster %q)",
				headlessText(e.Headless), headlessText(m.Headless), m.Oldest))
		}
		portConflict := false
		for _, p := range e.Ports {
			number := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
			if have, ok := byName[p.Name]; ok {
				if have != p {
					portConflict = true
					msgs = append(msgs, fmt.Sprintf("port %q is %s here, %s in the merged service", p.Name, p, have))
				}
				continue
			}
			if other, ok := byNumber[number]; ok {
				portConflict = true
				msgs = append(msgs, fmt.Sprintf("port %s is named %q here, %q in the merged service", number, p.Name, other))
				continue
			}
			byName[p.Name], byNumber[number] = p, p.Name
			m.Ports = append(m.Ports, p)
		}
		if portConflict {
			reasons = append([]string{fleetv1alpha1.ReasonPortConflict}, reasons...)
			msgs = append(msgs, fmt.Sprintf("contested ports are taken from the oldest export, in cluster %q", m.Oldest))
		}
		if len(reasons) > 0 {
			m.Conflicts[e.Cluster] = Conflict{Reasons: reasons, Message: strings.Join(msgs, "; ")}
		}
	}
	slices.SortFunc(m.Ports, func(a, b MergedPort) int { return strings.Compare(a.Name, b.Name) })
	return m
}

func headlessText(h bool) string {
	if h {
		return "headless"
	}
	return "not headless"
}

// globalSuffix ends the name of the merged Service.
const globalSuffix = "global"

// GlobalName is the name of the merged Service of name: <name>-global, shortened like Name.
func GlobalName(name string) string { return Name(name, globalSuffix) }

// MergedLabels are the ownership labels of the objects every exporter of namespace/name shares.
func MergedLabels(namespace, name string) map[string]string {
	return map[string]string{
		fleetv1alpha1.LabelMerged:          "true",
		fleetv1alpha1.LabelSourceNamespace: namespace,
		fleetv1alpha1.LabelSourceName:      name,
		fleetv1alpha1.LabelManagedBy:       fleetv1alpha1.ManagedByValue,
	}
}

// OwnedMerged reports whether obj is the merged object of namespace/name: written for all its
// exporters, so any of them may update or remove it.
func OwnedMerged(obj metav1.Object, namespace, name string) bool {
	l := obj.GetLabels()
	return l[fleetv1alpha1.LabelMerged] == "true" && l[fleetv1alpha1.LabelManagedBy] == fleetv1alpha1.ManagedByValue &&
		l[fleetv1alpha1.LabelSourceNamespace] == namespace && l[fleetv1alpha1.LabelSourceName] == name &&
		l[fleetv1alpha1.LabelSourceCluster] == ""
}

// GlobalService is the merged Service of namespace/name: selectorless, headless when m is, with
// m's ports (each slice gives its own exporter's target port under the port's name).
func GlobalService(namespace, name string, m Merged) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: GlobalName(name), Namespace: namespace, Labels: MergedLabels(namespace, name),
			Annotations: map[string]string{AnnotationSource: "*/" + namespace + "/" + name},
		},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyPreferDualStack)},
	}
	if m.Headless {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	for _, p := range m.Ports {
		sp := corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, TargetPort: intstr.FromInt32(p.Port)}
		if p.AppProtocol != "" {
			sp.AppProtocol = ptr.To(p.AppProtocol)
		}
		svc.Spec.Ports = append(svc.Spec.Ports, sp)
	}
	return svc
}

// IsHeadless reports whether svc is headless (its cluster IP is None).
func IsHeadless(svc *corev1.Service) bool { return svc.Spec.ClusterIP == corev1.ClusterIPNone }

// MergedSlices are src's contribution to the merged service of its namespace/name: its
// resolved endpoints in slices of the merged Service, labelled for MCS, owned by src.
func MergedSlices(src Source, res *Resolved) []*discoveryv1.EndpointSlice {
	if res.ExternalName != "" {
		return nil // a hostname has no address to merge
	}
	ns, name := src.Service.Namespace, src.Service.Name
	l := Labels(src.Cluster, ns, name)
	l[discoveryv1.LabelServiceName] = GlobalName(name)
	l[discoveryv1.LabelManagedBy] = ManagedBy
	l[mcsv1alpha1.LabelServiceName] = name
	l[mcsv1alpha1.LabelSourceCluster] = src.Cluster
	return mirrorSlices(src, res, Name(name, src.Cluster)+"-"+globalSuffix, l)
}

// ServiceImport is the ServiceImport of namespace/name in a member: m's type and ports, the
// derived Service's cluster IPs (ClusterSetIP only), and the exporters it merges.
func ServiceImport(namespace, name string, m Merged, ips []string, clusters []string) *mcsv1alpha1.ServiceImport {
	si := &mcsv1alpha1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: MergedLabels(namespace, name)},
		Spec:       mcsv1alpha1.ServiceImportSpec{Type: mcsv1alpha1.ClusterSetIP, IPs: slices.Clone(ips)},
	}
	if m.Headless {
		si.Spec.Type, si.Spec.IPs = mcsv1alpha1.Headless, nil
	}
	for _, p := range m.Ports {
		sp := mcsv1alpha1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port}
		if p.AppProtocol != "" {
			sp.AppProtocol = ptr.To(p.AppProtocol)
		}
		si.Spec.Ports = append(si.Spec.Ports, sp)
	}
	sorted := slices.Sorted(slices.Values(clusters))
	for _, c := range sorted {
		si.Status.Clusters = append(si.Status.Clusters, mcsv1alpha1.ClusterStatus{Cluster: c})
	}
	return si
}

// ServiceImportSpecDiffers reports whether existing's labels or spec differ from desired's in
// what ServiceImport sets; ServiceImportStatusDiffers does the same for the status.
func ServiceImportSpecDiffers(existing, desired *mcsv1alpha1.ServiceImport) bool {
	if !subset(desired.Labels, existing.Labels) || existing.Spec.Type != desired.Spec.Type ||
		!slices.Equal(existing.Spec.IPs, desired.Spec.IPs) || len(existing.Spec.Ports) != len(desired.Spec.Ports) {
		return true
	}
	for i, p := range desired.Spec.Ports {
		e := existing.Spec.Ports[i]
		if e.Name != p.Name || protocol(e.Protocol) != protocol(p.Protocol) || e.Port != p.Port || deref(e.AppProtocol, "") != deref(p.AppProtocol, "") {
			return true
		}
	}
	return false
}

// ServiceImportStatusDiffers reports whether existing lists other clusters than desired.
func ServiceImportStatusDiffers(existing, desired *mcsv1alpha1.ServiceImport) bool {
	return !slices.Equal(existing.Status.Clusters, desired.Status.Clusters)
}

// ApplyServiceImportSpec copies what ServiceImportSpecDiffers compares onto existing.
func ApplyServiceImportSpec(existing, desired *mcsv1alpha1.ServiceImport) {
	existing.Labels = merge(existing.Labels, desired.Labels)
	existing.Spec.Type = desired.Spec.Type
	existing.Spec.IPs = slices.Clone(desired.Spec.IPs)
	existing.Spec.Ports = nil
	for _, p := range desired.Spec.Ports {
		existing.Spec.Ports = append(existing.Spec.Ports, *p.DeepCopy())
	}
}

// ExporterOf describes src's export for Merge.
func ExporterOf(src Source, res *Resolved, since time.Time) Exporter {
	e := Exporter{Cluster: src.Cluster, Since: since, Headless: IsHeadless(src.Service)}
	for _, p := range res.Ports {
		e.Ports = append(e.Ports, MergedPort{Name: p.Name, Protocol: p.Protocol, AppProtocol: deref(p.AppProtocol, ""), Port: p.Port})
	}
	return e
}
