package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"maps"
	"slices"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Revision identifies the rendered input of a Baseline: the first 10 hex digits of a SHA-256
// over the bytes of resources and perNamespace sources, in order, and the substitution
// settings, so that turning substitution on, or changing a variable, is a new revision.
// Source names are left out: moving a document from inline YAML into a ConfigMap changes
// nothing that is applied. Every part is length-prefixed, so no two different inputs frame
// to the same bytes.
func Revision(resources, perNamespace []Source, substitute *fleetv1alpha1.Substitution) string {
	h := sha256.New()
	part(h, "revision-format", "1")
	for _, s := range resources {
		part(h, "resource", string(s.YAML))
	}
	for _, s := range perNamespace {
		part(h, "perNamespace", string(s.YAML))
	}
	if substitute != nil {
		part(h, "substitute", "")
		for _, k := range slices.Sorted(maps.Keys(substitute.Variables)) {
			part(h, "name", k)
			part(h, "value", substitute.Variables[k])
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:10]
}

func part(h hash.Hash, tag, data string) {
	fmt.Fprintf(h, "%s %d\n%s", tag, len(data), data)
}
