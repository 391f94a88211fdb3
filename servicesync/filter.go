package servicesync

import (
	"context"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/clusters"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// What a member cache holds of Services and EndpointSlices. An export is an annotation, which
// no server-side selector can pick, so both kinds are still listed and watched (metadata
// only), but the cache keeps only what servicesync decides on: exported Services, the ones
// Flotilla wrote (mirrors, a Baseline's), and their EndpointSlices. A member's other Services
// and slices are dropped as they arrive (clusters.RegisterFilter): they cost the hub nothing
// but the decoding, and their changes reach no handler, so they enqueue nothing.
//
// Correctness does not rest on what the cache holds of a source: a reconcile reads the
// Service and its slices from the member. The cache is there to turn changes into requests:
//   - a Service that becomes exported arrives as an added object (its watch event carries
//     the annotation), and one that stops being exported leaves as a deleted one;
//   - a slice is kept while its Service is held; a slice change that comes before the cache
//     holds its newly exported Service is dropped, but that Service's own event enqueues a
//     reconcile which reads the slices afterwards, so the change is not lost;
//   - slices of a Service no longer exported leave at their next change or the next relist.

// memberFilter is the filter of one member cache.
type memberFilter struct {
	// cached reads the member cache the filter belongs to (the slice filter asks it for
	// the Service).
	cached client.Reader
}

// registerFilters puts memberFilter in front of the Service and EndpointSlice informers.
func registerFilters(access clusters.MemberAccess) error {
	for _, k := range []struct {
		obj  client.Object
		keep func(*memberFilter) clusters.KeepFunc
	}{
		{serviceMeta(), func(f *memberFilter) clusters.KeepFunc { return f.keepService }},
		{sliceMeta(), func(f *memberFilter) clusters.KeepFunc { return f.keepSlice }},
	} {
		err := access.RegisterFilter(k.obj, func(_ string, cached client.Reader) clusters.KeepFunc {
			return k.keep(&memberFilter{cached: cached})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// exported is the one place that says whether the Service ns/name of a member is exported,
// and so is held with its slices. svc is the Service's metadata, or nil where the filter
// asks for a slice's Service the cache does not hold. An export is asked for by the
// annotation; an MCS ServiceExport of the same name is the other way in, read from f.cached
// (its watch runs only in members that serve the kind; elsewhere the read fails: no export).
func (f *memberFilter) exported(ctx context.Context, key types.NamespacedName, svc client.Object) bool {
	if svc != nil && svc.GetAnnotations()[fleetv1alpha1.AnnotationExport] == "true" {
		return true
	}
	return f.cached.Get(ctx, key, serviceExportMeta()) == nil
}

// keepService holds a Service that is exported or that Flotilla wrote (a mirror, an object
// of a Baseline: propagation reads those from the same informer).
func (f *memberFilter) keepService(ctx context.Context, o client.Object) bool {
	return flotillaLabelled(o) || f.exported(ctx, client.ObjectKeyFromObject(o), o)
}

// keepSlice holds a slice Flotilla wrote, or one of a Service the cache holds (or that is
// exported by other means than its own metadata).
func (f *memberFilter) keepSlice(ctx context.Context, o client.Object) bool {
	if flotillaLabelled(o) {
		return true
	}
	name := o.GetLabels()[discoveryv1.LabelServiceName]
	if name == "" {
		return false
	}
	key := types.NamespacedName{Namespace: o.GetNamespace(), Name: name}
	// Waits for the Service informer's first sync: slices are judged by a complete picture.
	if err := f.cached.Get(ctx, key, serviceMeta()); err == nil {
		return true
	}
	return f.exported(ctx, key, nil)
}

// flotillaLabelled: an object carrying one of Flotilla's labels (see flotillaLabel).
func flotillaLabelled(o client.Object) bool {
	for k, v := range o.GetLabels() {
		if flotillaLabel(k, v) {
			return true
		}
	}
	return false
}
