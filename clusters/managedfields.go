package clusters

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// trimManagedFields is the default transform of member caches (the metadata of objects
// Flotilla applied, through KindSource). Of managedFields it keeps what tells a controller
// that someone other than Flotilla's own server-side apply wrote an object's content —
// propagation's Enforce policy takes such content over and removes it — and drops what is
// most of an object's metadata in bytes: subresources' entries (status, scale: the control
// plane's), and the fields of Flotilla's own apply entry, which stays as a stub (it says
// that Flotilla applied the object, which is all a reader needs). An object only Flotilla
// wrote thus carries one small entry; an object without Flotilla's managed-by label (a
// Namespace the perNamespace fan-out watches) none. Kinds registered with their own
// Transform are not affected.
func trimManagedFields(in any) (any, error) {
	obj, err := meta.Accessor(in)
	if err != nil || obj.GetManagedFields() == nil {
		return in, nil
	}
	if obj.GetLabels()[fleetv1alpha1.LabelManagedBy] != fleetv1alpha1.ManagedByValue {
		// Not Flotilla's (every Namespace of a member, say): nothing to look at.
		obj.SetManagedFields(nil)
		return in, nil
	}
	var kept []metav1.ManagedFieldsEntry
	for _, e := range obj.GetManagedFields() {
		switch {
		case e.Subresource != "":
			continue
		case e.Manager == fleetv1alpha1.FieldManager && e.Operation == metav1.ManagedFieldsOperationApply:
			e.FieldsV1 = nil
		}
		kept = append(kept, e)
	}
	obj.SetManagedFields(kept)
	return in, nil
}
