package render

import (
	"errors"
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Source is one named chunk of YAML: an inline source, or one data key of a ConfigMap or
// Secret.
type Source struct {
	// Name says where the YAML came from in words a person can find, e.g. "resources[0]
	// (inline)" or "resources[1] (ConfigMap flotilla-system/addons, key quota.yaml)"; every
	// error about the source starts with it.
	Name string
	// YAML holds zero or more YAML (or JSON) documents separated by "---" lines.
	YAML []byte
	// Sensitive marks YAML read from a Secret: errors then point at lines and never quote
	// content.
	Sensitive bool
}

// Document is one object to apply and where it came from.
type Document struct {
	// Source is the Name of the Source the object came from.
	Source string
	// Index is the 1-based number of the YAML document within the source, counted the way
	// a reader counts them: every "---" starts a document; text before the first one is a
	// document only if it holds more than comments.
	Index int
	// Item is the 1-based position of the object in the items of a v1 List document, and 0
	// when the document is the object itself.
	Item int
	// Sensitive is true when the source was a Secret: mask the object in diffs and logs.
	Sensitive bool
	// Object is the object, with server-set fields and status removed.
	Object *unstructured.Unstructured
}

// Location names the document in errors: "<source> document 2", or "<source> document 2
// item 3" for an item of a List.
func (d Document) Location() string { return location(d.Source, d.Index, d.Item) }

func location(source string, index, item int) string {
	loc := source + " document " + strconv.Itoa(index)
	if item > 0 {
		loc += " item " + strconv.Itoa(item)
	}
	return loc
}

// Key identifies an object within a member cluster. The version is not part of it: a
// group serves the same object at each of its versions.
type Key struct {
	Group     string
	Kind      string
	Namespace string
	Name      string
}

// String reads like kubectl's resource names: "Deployment.apps kube-system/coredns",
// "ConfigMap team-a/settings", "Namespace team-a".
func (k Key) String() string {
	s := k.Kind
	if k.Group != "" {
		s += "." + k.Group
	}
	s += " "
	if k.Namespace != "" {
		s += k.Namespace + "/"
	}
	return s + k.Name
}

// Key returns the identity of the document's object.
func (d Document) Key() Key {
	gvk := d.Object.GroupVersionKind()
	return Key{Group: gvk.Group, Kind: gvk.Kind, Namespace: d.Object.GetNamespace(), Name: d.Object.GetName()}
}

// InventoryEntry returns the BaselineBinding inventory entry that records the document's
// object as applied.
func (d Document) InventoryEntry() fleetv1alpha1.InventoryEntry {
	gvk := d.Object.GroupVersionKind()
	return fleetv1alpha1.InventoryEntry{
		Group:     gvk.Group,
		Version:   gvk.Version,
		Kind:      gvk.Kind,
		Namespace: d.Object.GetNamespace(),
		Name:      d.Object.GetName(),
	}
}

// CheckUnique reports every object that docs define more than once, naming both places.
// Parse and Substitute already check their own output; the controller calls it over
// everything one member receives, so that an object in both resources and a perNamespace
// fan-out is caught before either is applied.
func CheckUnique(docs []Document) error {
	return errors.Join(duplicates(docs)...)
}

func duplicates(docs []Document) []error {
	var errs []error
	first := make(map[Key]string, len(docs))
	for _, d := range docs {
		k := d.Key()
		if loc, ok := first[k]; ok {
			errs = append(errs, fmt.Errorf("%s is defined twice: in %s and in %s", k, loc, d.Location()))
			continue
		}
		first[k] = d.Location()
	}
	return errs
}
