package clusters

import (
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// optionalKinds are the metadata-only kinds registered on demand: a member may not serve them
// (the kind of a CRD installed later or never, as MCS's ServiceExport). cache.New asks the
// mapper whether every kind in ByObject is namespaced and fails on one it cannot map, which
// would keep such a member from connecting; these kinds are only started once their holder
// found them served, so the cache may take them as namespaced until then.
func optionalKinds(opts cache.Options, started []client.Object) map[schema.GroupKind]schema.GroupVersionKind {
	kinds := map[schema.GroupKind]schema.GroupVersionKind{}
	for obj := range opts.ByObject {
		p, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok || slices.Contains(started, obj) {
			continue
		}
		gvk := p.GroupVersionKind()
		kinds[gvk.GroupKind()] = gvk
	}
	return kinds
}

// optionalKindsMapper maps the optional kinds a member does not serve (yet) as namespaced
// resources of the guessed plural; everything else as the member says.
type optionalKindsMapper struct {
	meta.RESTMapper
	kinds map[schema.GroupKind]schema.GroupVersionKind
}

// RESTMapping implements meta.RESTMapper.
func (m optionalKindsMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	mapping, err := m.RESTMapper.RESTMapping(gk, versions...)
	gvk, optional := m.kinds[gk]
	if err == nil || !meta.IsNoMatchError(err) || !optional {
		return mapping, err
	}
	plural, _ := meta.UnsafeGuessKindToResource(gvk)
	return &meta.RESTMapping{Resource: plural, GroupVersionKind: gvk, Scope: meta.RESTScopeNamespace}, nil
}
