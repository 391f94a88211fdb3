package plan

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/value"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// Foreign is content of a member's object that another field manager wrote and Flotilla's
// own server-side apply does not own as well: typically fields the Baseline never set, such
// as `ingress: [{}]` added to a default-deny NetworkPolicy. Server-side apply removes only
// fields the applier owned, so such content would survive every apply; under Enforce the
// apply first takes it into Flotilla's apply entry and the apply then removes what the
// Baseline does not set. Under Inform it is drift.
type Foreign struct {
	// Manager and Operation identify the managedFields entry that holds the fields.
	Manager   string
	Operation metav1.ManagedFieldsOperationType
	// Fields are the entry's fields that count (see ForeignFields), in managedFields' terms.
	Fields *fieldpath.Set
}

// Paths lists the fields as paths such as ".spec.ingress" or `.rules`.
func (f Foreign) Paths() []string {
	var out []string
	for p := range f.Fields.Leaves().All() {
		out = append(out, p.String())
	}
	return out
}

// String says whose fields they are: "kubectl-edit (Update): .spec.ingress".
func (f Foreign) String() string {
	return fmt.Sprintf("%s (%s): %s", f.Manager, f.Operation, strings.Join(f.Paths(), ", "))
}

// DescribeForeign joins fs for a condition message or diff output.
func DescribeForeign(fs []Foreign) string {
	parts := make([]string, 0, len(fs))
	for _, f := range fs {
		parts = append(parts, f.String())
	}
	return strings.Join(parts, "; ")
}

// ForeignFields decides whether the member's copy of d, whose managedFields are managed,
// carries foreign content: for each entry of another writer, the fields that count. Those are
//
//   - fields the Baseline does not set: where it sets a field, the apply (which forces its
//     ownership) puts the Baseline's value back anyway; an item of a keyed list (a
//     container, an env variable) counts unless the Baseline's list has an item of that key;
//   - fields of the object's content only, never metadata: labels and annotations others
//     add (kubectl's last-applied-configuration, a Deployment's revision, tools' markers)
//     are how other tools work with the object, and none of them widens what a Baseline's
//     object grants or allows (a namespace editor cannot write the cluster-scoped objects
//     whose labels do, such as an aggregated ClusterRole); the Baseline's own labels and
//     annotations are restored anyway, as any value it sets;
//   - never a subresource's (status, scale): those are the API's channels for controllers
//     and autoscalers, and Enforce does not fight them;
//   - only entries at d's apiVersion: another version may name fields differently, and its
//     paths mean nothing in Flotilla's entry;
//   - not the fields that parts of a cluster write into objects by design (controlPlaneFields).
//
// Defaulted fields need no exception: a writer owns only what it wrote, and a default taken
// over and removed is defaulted again, owned by no one.
func ForeignFields(d render.Document, managed []metav1.ManagedFieldsEntry) ([]Foreign, error) {
	apiVersion := d.Object.GetAPIVersion()
	var out []Foreign
	for _, e := range managed {
		if isOwnApply(e) || e.Subresource != "" || e.APIVersion != apiVersion {
			continue
		}
		s, err := entryFields(e)
		if err != nil {
			return nil, err
		}
		if s = contentFields(d, s); !s.Empty() {
			out = append(out, Foreign{Manager: e.Manager, Operation: e.Operation, Fields: s})
		}
	}
	return out, nil
}

// HasOwnApply reports whether managed holds Flotilla's apply entry: Flotilla applied the
// object at some time.
func HasOwnApply(managed []metav1.ManagedFieldsEntry) bool {
	return slices.ContainsFunc(managed, isOwnApply)
}

func isOwnApply(e metav1.ManagedFieldsEntry) bool {
	return e.Manager == fleetv1alpha1.FieldManager && e.Operation == metav1.ManagedFieldsOperationApply && e.Subresource == ""
}

func entryFields(e metav1.ManagedFieldsEntry) (*fieldpath.Set, error) {
	s := &fieldpath.Set{}
	if e.FieldsV1 == nil || e.FieldsV1.GetRawReader().Size() == 0 {
		return s, nil
	}
	if err := s.FromJSON(e.FieldsV1.GetRawReader()); err != nil {
		return nil, fmt.Errorf("managedFields entry of %s (%s): %w", e.Manager, e.Operation, err)
	}
	return s, nil
}

// contentFields keeps the paths of s that are the object's content (not metadata, status or
// type), not set by the Baseline (d) and not written by the cluster itself
// (controlPlaneFields).
func contentFields(d render.Document, s *fieldpath.Set) *fieldpath.Set {
	skip := controlPlaneFields(d)
	var keep []fieldpath.Path
	for p := range s.All() {
		if len(p) == 0 || p[0].FieldName == nil {
			continue
		}
		switch *p[0].FieldName {
		case "metadata", "status", "apiVersion", "kind":
			continue
		}
		if !sets(d.Object.Object, p) && !slices.ContainsFunc(skip, func(prefix []string) bool { return hasPrefix(p, prefix) }) {
			keep = append(keep, p.Copy()) // the iteration reuses p
		}
	}
	return fieldpath.NewSet(keep...)
}

// controlPlaneFields are the fields (as field names, "*" for any list item) that other
// parts of a cluster write into d's kind by design; taking them over would make the apply
// remove them again on every change, fighting the writer (or fail: a bound claim's volume
// cannot be unset).
func controlPlaneFields(d render.Document) [][]string {
	caBundle := []string{"clientConfig", "caBundle"}
	switch d.Object.GroupVersionKind().GroupKind() {
	case schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:
		// A CA injector (cert-manager's cainjector) fills in the conversion webhook's CA.
		return [][]string{append([]string{"spec", "conversion", "webhook"}, caBundle...)}
	case schema.GroupKind{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"},
		schema.GroupKind{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:
		return [][]string{append([]string{"webhooks", "*"}, caBundle...)}
	case schema.GroupKind{Group: "apiregistration.k8s.io", Kind: "APIService"}:
		return [][]string{{"spec", "caBundle"}}
	case schema.GroupKind{Kind: "PersistentVolumeClaim"}:
		// The persistent volume controller binds the claim.
		return [][]string{{"spec", "volumeName"}}
	case schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}:
		// The aggregation controller writes the rules of an aggregated ClusterRole.
		if _, ok, _ := unstructured.NestedMap(d.Object.Object, "aggregationRule"); ok {
			return [][]string{{"rules"}}
		}
	}
	return nil
}

// hasPrefix reports whether p starts with the field names of prefix, "*" matching any
// list item (a key, index or value element).
func hasPrefix(p fieldpath.Path, prefix []string) bool {
	if len(p) < len(prefix) {
		return false
	}
	for i, name := range prefix {
		switch {
		case name == "*":
			if p[i].FieldName != nil {
				return false
			}
		case p[i].FieldName == nil || *p[i].FieldName != name:
			return false
		}
	}
	return true
}

// sets reports whether the desired object obj has the field p names: every map field on
// the way exists, and every list item named by its key, value or index is in obj's list.
func sets(obj any, p fieldpath.Path) bool {
	for _, pe := range p {
		switch {
		case pe.FieldName != nil:
			m, ok := obj.(map[string]any)
			if !ok {
				return false
			}
			if obj, ok = m[*pe.FieldName]; !ok {
				return false
			}
		default:
			items, ok := obj.([]any)
			if !ok {
				return false
			}
			if pe.Index != nil {
				if *pe.Index >= len(items) {
					return false
				}
				obj = items[*pe.Index]
				continue
			}
			i := slices.IndexFunc(items, func(item any) bool { return isItem(item, pe) })
			if i < 0 {
				return false
			}
			obj = items[i]
		}
	}
	return true
}

// isItem reports whether item is the list item pe selects.
func isItem(item any, pe fieldpath.PathElement) bool {
	switch {
	case pe.Key != nil:
		m, ok := item.(map[string]any)
		if !ok {
			return false
		}
		for _, f := range *pe.Key {
			v, ok := m[f.Name]
			if !ok || !value.Equals(value.NewValueInterface(v), f.Value) {
				return false
			}
		}
		return true
	case pe.Value != nil:
		return value.Equals(value.NewValueInterface(item), *pe.Value)
	}
	return false
}
