package servicesync

import (
	"context"
	"fmt"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// keepNames names the mirror objects of in that stay in a target, as kind/name.
func keepNames(in mirror.Source, res *mirror.Resolved) map[string]bool {
	svc, eps, slices := mirror.Objects(in, res)
	keep := map[string]bool{"Service/" + svc.Name: true}
	if eps != nil { // an ExternalName mirror has none: Endpoints of an earlier mode go
		keep["Endpoints/"+eps.Name] = true
	}
	for _, s := range slices {
		keep["EndpointSlice/"+s.Name] = true
	}
	return keep
}

// collect removes every mirror of req from every writable member (see writable), each
// under memberWork; deferred are the members whose part was put off. Mirrors are found by
// their ownership labels only. A member that is not connected keeps its mirrors until it
// reconnects (its connect event brings every export back here), and so does a paused one
// until it is unpaused.
//
// The merged service of req's namespace/name is brought to what the other exports make of it
// (merged.go), and se, if any, is written on the source's ServiceExport.
func (r *ExportReconciler) collect(ctx context.Context, req exportRequest, se *exportStatus) (deferred []string, err error) {
	writable, err := r.writable(ctx)
	if err != nil {
		return nil, err
	}
	fs, err := r.fleetServiceOf(ctx, req, nil, false, nil)
	if err != nil {
		return nil, err
	}
	r.written.keepOnly(req, nil) // no mirrors of req are kept anywhere
	// The source is visited too: it may hold its own merged slices, and its ServiceExport.
	_, deferred, err = onMembers(ctx, r.work, req, writable, func(ctx context.Context, m string) (mirrorPart, error) {
		return r.syncMerged(ctx, m, req, mirror.Source{}, nil, fs, se, nil)
	})
	return deferred, err
}

// collectFrom removes from member every mirror object of req not named in keep; removed
// says whether it deleted anything.
func (r *ExportReconciler) collectFrom(ctx context.Context, member string, req exportRequest, keep map[string]bool) (removed bool, _ error) {
	reader, err := r.Members.Reader(member)
	if err != nil {
		return false, nil // disconnected since Connected(): it keeps its mirrors for now
	}
	writer, err := r.writerFor(member)
	if err != nil {
		return false, nil
	}
	found, err := mirrorsIn(ctx, reader, req)
	if err != nil {
		return false, err
	}
	for _, f := range found {
		if keep[f.kind+"/"+f.obj.GetName()] {
			continue
		}
		// The UID precondition: an object re-created under this name since the cache saw
		// it is not ours to delete.
		uid := f.obj.GetUID()
		// The cache may still list an object deleted a moment ago (by an earlier run of
		// this export): the member says whether there is anything to delete.
		switch err := writer.Get(ctx, client.ObjectKeyFromObject(f.obj), f.obj); {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return removed, fmt.Errorf("read %s %s/%s: %w", f.kind, f.obj.GetNamespace(), f.obj.GetName(), err)
		case f.obj.GetUID() != uid:
			continue // re-created since: not the mirror the cache listed
		}
		if err := writer.Delete(ctx, f.obj, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return removed, fmt.Errorf("delete %s %s/%s: %w", f.kind, f.obj.GetNamespace(), f.obj.GetName(), err)
		}
		removed = true
	}
	return removed, nil
}

// writable are the members servicesync may write into now: connected and not paused. A
// leaving member is writable (its clean-up removes the mirrors in it) unless it is paused.
func (r *ExportReconciler) writable(ctx context.Context) ([]string, error) {
	list := &fleetv1alpha1.MemberClusterList{}
	if err := r.Client.List(ctx, list); err != nil {
		return nil, fmt.Errorf("list MemberClusters: %w", err)
	}
	paused := map[string]bool{}
	for _, mc := range list.Items {
		if mc.Spec.Paused {
			paused[mc.Name] = true
		}
	}
	var out []string
	for _, m := range r.Members.Connected() {
		if !paused[m] {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out, nil
}

// foundMirror is one mirror object found in a member cache.
type foundMirror struct {
	kind string
	obj  client.Object
}

// mirrorsIn lists every mirror object of req in a member's cache, by ownership labels:
// Services and EndpointSlices as metadata, Endpoints in full.
func mirrorsIn(ctx context.Context, reader client.Reader, req exportRequest) ([]foundMirror, error) {
	opts := []client.ListOption{client.InNamespace(req.Namespace), client.MatchingLabels(mirror.Labels(req.Cluster, req.Namespace, req.Name))}
	var out []foundMirror
	for _, m := range []*metav1.PartialObjectMetadata{serviceMeta(), sliceMeta()} {
		gvk := m.GroupVersionKind()
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := reader.List(ctx, list, opts...); err != nil {
			return nil, fmt.Errorf("list mirror %ss: %w", gvk.Kind, err)
		}
		for i := range list.Items {
			list.Items[i].SetGroupVersionKind(gvk)
			out = append(out, foundMirror{kind: gvk.Kind, obj: &list.Items[i]})
		}
	}
	eps := &corev1.EndpointsList{}
	if err := reader.List(ctx, eps, opts...); err != nil {
		return nil, fmt.Errorf("list mirror Endpoints: %w", err)
	}
	for i := range eps.Items {
		out = append(out, foundMirror{kind: "Endpoints", obj: &eps.Items[i]})
	}
	return out, nil
}

// markStale rewrites the mirrors' endpoints in every writable member as not ready
// (addresses kept), so clients stop picking a source that stopped answering.
func (r *ExportReconciler) markStale(ctx context.Context, req exportRequest) (deferred []string, err error) {
	writable, err := r.writable(ctx)
	if err != nil {
		return nil, err
	}
	writable = slices.DeleteFunc(writable, func(m string) bool { return m == req.Cluster })
	_, deferred, err = onMembers(ctx, r.work, req, writable, func(ctx context.Context, m string) (struct{}, error) {
		if err := r.markStaleIn(ctx, m, req); err != nil {
			return struct{}{}, fmt.Errorf("mark mirrors of %s not ready in cluster %q: %w", req, m, err)
		}
		return struct{}{}, nil
	})
	return deferred, err
}

func (r *ExportReconciler) markStaleIn(ctx context.Context, member string, req exportRequest) error {
	reader, err := r.Members.Reader(member)
	if err != nil {
		return nil
	}
	writer, err := r.writerFor(member)
	if err != nil {
		return nil
	}
	sel := []client.ListOption{client.InNamespace(req.Namespace), client.MatchingLabels(mirror.Labels(req.Cluster, req.Namespace, req.Name))}
	eps := &corev1.EndpointsList{}
	if err := reader.List(ctx, eps, sel...); err != nil {
		return err
	}
	for i := range eps.Items {
		if e := eps.Items[i].DeepCopy(); notReadyEndpoints(e) {
			if err := writer.Update(ctx, e); err != nil {
				return fmt.Errorf("update Endpoints %s/%s: %w", e.Namespace, e.Name, err)
			}
		}
	}
	// Slices in full from the member: the hub caches only their metadata.
	slices := &discoveryv1.EndpointSliceList{}
	if err := writer.List(ctx, slices, sel...); err != nil {
		return err
	}
	for i := range slices.Items {
		if s := &slices.Items[i]; notReadySlice(s) {
			if err := writer.Update(ctx, s); err != nil {
				return fmt.Errorf("update EndpointSlice %s/%s: %w", s.Namespace, s.Name, err)
			}
		}
	}
	return nil
}

// notReadyEndpoints moves every ready address to the not-ready ones; false if none was.
func notReadyEndpoints(e *corev1.Endpoints) bool {
	changed := false
	for j := range e.Subsets {
		if len(e.Subsets[j].Addresses) > 0 {
			e.Subsets[j].NotReadyAddresses = append(e.Subsets[j].NotReadyAddresses, e.Subsets[j].Addresses...)
			e.Subsets[j].Addresses = nil
			changed = true
		}
	}
	return changed
}

// notReadySlice marks every endpoint neither ready nor serving; false if all were already.
func notReadySlice(s *discoveryv1.EndpointSlice) bool {
	changed := false
	for j := range s.Endpoints {
		c := &s.Endpoints[j].Conditions
		if c.Ready == nil || *c.Ready || c.Serving == nil || *c.Serving {
			f := false
			c.Ready, c.Serving = &f, &f
			changed = true
		}
	}
	return changed
}
