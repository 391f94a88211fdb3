package render

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// How objects are named to people: fleet-controller's conditions and events and fleetctl's
// output use the same words, so they live here, beside the rendering both share.

// ObjectRef names an object "Kind ns/name" (or "Kind name" when cluster-scoped).
func ObjectRef(o *unstructured.Unstructured) string {
	if o.GetNamespace() != "" {
		return fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
	}
	return fmt.Sprintf("%s %s", o.GetKind(), o.GetName())
}

// EntryRef names an inventory entry as ObjectRef names an object.
func EntryRef(e fleetv1alpha1.InventoryEntry) string {
	if e.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", e.Kind, e.Namespace, e.Name)
	}
	return fmt.Sprintf("%s %s", e.Kind, e.Name)
}

// EntryKey compares inventory entries by the object's identity only, without their version,
// UID and what the last apply recorded: an object moved to a newer API version of its group
// is the same object, and a desired object (no UID yet) is the same as its inventory entry.
func EntryKey(e fleetv1alpha1.InventoryEntry) fleetv1alpha1.InventoryEntry {
	return fleetv1alpha1.InventoryEntry{Group: e.Group, Kind: e.Kind, Namespace: e.Namespace, Name: e.Name}
}
