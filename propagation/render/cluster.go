package render

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Cluster is what a Baseline's rendering depends on in one member.
type Cluster struct {
	Name   string
	Labels map[string]string
	// Namespaces are the member's namespaces that match spec.perNamespace.namespaceSelector.
	Namespaces []string
	// Namespaced tells whether the member serves gvk as a namespaced kind; unknown kinds
	// count as namespaced here (the apply reports them).
	Namespaced func(gvk schema.GroupVersionKind) bool
}

// ForCluster renders what one member must hold: the resources, the perNamespace resources
// once per selected namespace, ${VAR} substitution when the Baseline opts in, and the
// ownership labels (baseline, managed-by). The controller applies exactly this, and
// `fleetctl diff` dry-runs exactly this. Each Document keeps its source and Sensitive mark.
func ForCluster(b *fleetv1alpha1.Baseline, resources, perNamespace []Document, c Cluster) ([]Document, error) {
	docs := append([]Document(nil), resources...)
	if b.Spec.PerNamespace != nil && len(perNamespace) > 0 {
		for _, d := range perNamespace {
			if gvk := d.Object.GroupVersionKind(); c.Namespaced != nil && !c.Namespaced(gvk) {
				return nil, fmt.Errorf("%s: %s is cluster-scoped and cannot be applied per namespace", d.Location(), gvk.Kind)
			}
		}
		for _, ns := range c.Namespaces {
			docs = append(docs, InNamespace(perNamespace, ns)...)
		}
	}
	if err := CheckUnique(docs); err != nil {
		return nil, err
	}
	if b.Spec.Substitute != nil {
		var err error
		if docs, err = Substitute(docs, Variables(c.Name, c.Labels, b.Spec.Substitute)); err != nil {
			return nil, err
		}
	}
	out := make([]Document, 0, len(docs))
	for _, d := range docs {
		obj := d.Object.DeepCopy()
		l := obj.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		l[fleetv1alpha1.LabelBaseline] = b.Name
		l[fleetv1alpha1.LabelManagedBy] = fleetv1alpha1.ManagedByValue
		obj.SetLabels(l)
		d.Object = obj
		out = append(out, d)
	}
	return out, nil
}
