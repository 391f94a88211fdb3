package servicesync

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/status"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// The merged service of one namespace/name (see package mirror, merge.go, for its objects).
// There is no controller of its own: every export's reconcile computes the same merged view
// from the hub's catalog (its own export read fresh, the others from their ExportedServices),
// writes its own merged slices where they belong, and brings the shared objects — the
// <name>-global Service and the ServiceImport — in each member it visits to what that view
// says, creating, updating or removing them. The view is a pure function of the catalog, so
// two exports writing the same member write the same objects; a change to one export's
// catalog entry that the merge reads enqueues the other exports of its namespace/name
// (setup.go), so the last one to run brings every member to the final view.
//
// Merged objects go only where an export reaches (its targets, which import boundaries,
// pause and slots already govern, and its own member: one name for the whole fleet) and
// only where they are asked for: the global annotation on any exporter, or a member that
// serves ServiceImport.

// fleetService is what one export's reconcile knows of the merged service of its
// namespace/name.
type fleetService struct {
	namespace, name string
	merged          mirror.Merged
	// global: some exporter asks for the <name>-global mirror.
	global bool
	// reach: per member, the exporters whose merged slices belong there (sorted).
	reach map[string][]string
	// self is the reconciled export's part, when it is valid.
	self *mirror.Exporter
	// mcs says what members serve.
	mcs *mcsMembers
}

// fleetServiceOf builds the view of req's namespace/name: the other exports from the
// catalog, and req's own from self (nil when it is not validly exported) reaching selfReach.
func (r *ExportReconciler) fleetServiceOf(ctx context.Context, req exportRequest, self *mirror.Exporter, selfGlobal bool,
	selfReach []string) (*fleetService, error) {
	list := &fleetv1alpha1.ExportedServiceList{}
	if err := r.Client.List(ctx, list, client.MatchingFields{sourceNameIndex: sourceNameOf(req.Namespace, req.Name)}); err != nil {
		return nil, fmt.Errorf("list ExportedServices of %s/%s: %w", req.Namespace, req.Name, err)
	}
	fs := &fleetService{namespace: req.Namespace, name: req.Name, reach: map[string][]string{}, self: self, mcs: r.mcs}
	var exporters []mirror.Exporter
	add := func(e mirror.Exporter, reach []string) {
		exporters = append(exporters, e)
		for _, m := range append(slices.Clone(reach), e.Cluster) {
			if !slices.Contains(fs.reach[m], e.Cluster) {
				fs.reach[m] = append(fs.reach[m], e.Cluster)
			}
		}
	}
	for i := range list.Items {
		es := &list.Items[i]
		src := es.Spec.Source
		if src.Namespace != req.Namespace || src.Name != req.Name || src.Cluster == req.Cluster || !mergeable(es) {
			continue
		}
		fs.global = fs.global || es.Status.Global
		add(exporterOf(es), es.Status.MirroredInto)
	}
	if self != nil {
		fs.global = fs.global || selfGlobal
		add(*self, selfReach)
	}
	for m := range fs.reach {
		sort.Strings(fs.reach[m])
	}
	fs.merged = mirror.Merge(exporters)
	return fs, nil
}

// mergeable: the catalog entry is an export that takes part in the merge (honoured, with ports).
func mergeable(es *fleetv1alpha1.ExportedService) bool {
	c := meta.FindStatusCondition(es.Status.Conditions, fleetv1alpha1.ConditionSynced)
	return len(es.Status.Ports) > 0 && (c == nil || c.Reason != fleetv1alpha1.ReasonInvalidExport)
}

// exporterOf is a catalog entry's part in the merge.
func exporterOf(es *fleetv1alpha1.ExportedService) mirror.Exporter {
	e := mirror.Exporter{Cluster: es.Spec.Source.Cluster, Since: es.CreationTimestamp.Time, Headless: es.Status.Headless}
	if es.Status.ExportedSince != nil {
		e.Since = es.Status.ExportedSince.Time
	}
	for _, p := range es.Status.Ports {
		e.Ports = append(e.Ports, mirror.MergedPort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port})
	}
	return e
}

// wanted says whether member m holds the merged objects: some export reaches it, and they
// are asked for (the global annotation, or m serves ServiceImport).
func (fs *fleetService) wanted(m string) bool {
	return len(fs.reach[m]) > 0 && (fs.global || fs.mcs.of(m).imports)
}

// selfIn says whether the reconciled export's merged slices belong in m.
func (fs *fleetService) selfIn(m string) bool {
	return fs.self != nil && fs.wanted(m) && slices.Contains(fs.reach[m], fs.self.Cluster)
}

// conflictOf is the reconciled export's conflict with the merged service, or nil.
func (fs *fleetService) conflictOf(cluster string) *mirror.Conflict {
	if c, ok := fs.merged.Conflicts[cluster]; ok {
		return &c
	}
	return nil
}

// writeMergedSlices writes req's merged slices into member m where they belong, and returns
// their names for collection to keep ("EndpointSlice/<name>").
func (r *ExportReconciler) writeMergedSlices(ctx context.Context, m string, req exportRequest, in mirror.Source, res *mirror.Resolved,
	fs *fleetService) (wrote bool, keep map[string]bool, conflict string, err error) {
	keep = map[string]bool{}
	if !fs.selfIn(m) {
		return false, keep, "", nil
	}
	live, err := r.Members.Client(m)
	if err != nil {
		return false, keep, "", err
	}
	writer, err := r.writerFor(m)
	if err != nil {
		return false, keep, "", err
	}
	for _, s := range mirror.MergedSlices(in, res) {
		keep["EndpointSlice/"+s.Name] = true
		w, err := r.writeOwned(ctx, nil, live, writer, req, s, &discoveryv1.EndpointSlice{})
		wrote = wrote || w.wrote
		if err != nil || w.conflict != "" {
			return wrote, keep, w.conflict, err
		}
	}
	return wrote, keep, "", nil
}

// syncShared makes member m hold the shared merged objects of fs when they are wanted there,
// and removes them otherwise. An object of that name Flotilla did not write for this
// namespace/name is left untouched and reported.
func (r *ExportReconciler) syncShared(ctx context.Context, m string, fs *fleetService) (wrote bool, conflict string, err error) {
	writer, err := r.writerFor(m)
	if err != nil {
		return false, "", nil // disconnected since: it keeps what it holds for now
	}
	imports := fs.mcs.of(m).imports
	if !fs.wanted(m) {
		// The member cache says whether there is a merged Service to remove: in the steady
		// state of an export nobody merges, this costs the member no request.
		key := types.NamespacedName{Namespace: fs.namespace, Name: mirror.GlobalName(fs.name)}
		removed := false
		if cached, err := r.Members.Reader(m); err == nil {
			held := serviceMeta()
			if err := cached.Get(ctx, key, held); err == nil && mirror.OwnedMerged(held, fs.namespace, fs.name) {
				if removed, err = removeMerged(ctx, writer, &corev1.Service{}, key, fs); err != nil {
					return removed, "", err
				}
			}
		}
		if !imports {
			return removed, "", nil
		}
		removedImport, err := removeMerged(ctx, writer, &mcsv1alpha1.ServiceImport{}, types.NamespacedName{Namespace: fs.namespace, Name: fs.name}, fs)
		return removed || removedImport, "", err
	}
	svc, wrote, conflict, err := r.writeGlobalService(ctx, writer, fs)
	if err != nil || conflict != "" || !imports {
		return wrote, conflict, err
	}
	w, conflict, err := writeServiceImport(ctx, writer, svc, fs, fs.reach[m])
	return wrote || w, conflict, err
}

// writeGlobalService creates or updates the <name>-global Service and returns it as the
// member holds it (with its cluster IPs). Switching between headless and not re-creates it:
// a cluster IP cannot be changed in place.
func (r *ExportReconciler) writeGlobalService(ctx context.Context, writer client.Client, fs *fleetService) (*corev1.Service, bool, string, error) {
	desired := mirror.GlobalService(fs.namespace, fs.name, fs.merged)
	ref := fmt.Sprintf("Service %s/%s", desired.Namespace, desired.Name)
	existing := &corev1.Service{}
	err := writer.Get(ctx, client.ObjectKeyFromObject(desired), existing)
	switch {
	case err == nil && !mirror.OwnedMerged(existing, fs.namespace, fs.name):
		return nil, false, ref + " exists and is not Flotilla's merged mirror of " + fs.namespace + "/" + fs.name + "; left untouched", nil
	case err == nil && mirror.NeedsReplace(existing, desired):
		uid := existing.UID
		if err := writer.Delete(ctx, existing, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return nil, false, "", fmt.Errorf("replace %s: %w", ref, err)
		}
		err = apierrors.NewNotFound(corev1.Resource("services"), desired.Name)
	}
	switch {
	case apierrors.IsNotFound(err):
		if err := writer.Create(ctx, desired); err != nil {
			return nil, false, "", fmt.Errorf("create %s: %w", ref, err)
		}
		return desired, true, "", nil
	case err != nil:
		return nil, false, "", fmt.Errorf("read %s: %w", ref, err)
	case mirror.NeedsUpdate(existing, desired):
		mirror.Apply(existing, desired)
		if err := writer.Update(ctx, existing); err != nil {
			return nil, false, "", fmt.Errorf("update %s: %w", ref, err)
		}
		return existing, true, "", nil
	}
	return existing, false, "", nil
}

// writeServiceImport creates or updates the ServiceImport of fs: the merged type and ports,
// the cluster IPs of the derived Service svc, and the exporters reaching this member.
func writeServiceImport(ctx context.Context, writer client.Client, svc *corev1.Service, fs *fleetService, clusters []string) (bool, string, error) {
	var ips []string
	if !mirror.IsHeadless(svc) {
		ips = svc.Spec.ClusterIPs
		if len(ips) == 0 && svc.Spec.ClusterIP != "" {
			ips = []string{svc.Spec.ClusterIP}
		}
	}
	desired := mirror.ServiceImport(fs.namespace, fs.name, fs.merged, ips, clusters)
	ref := fmt.Sprintf("ServiceImport %s/%s", desired.Namespace, desired.Name)
	existing := &mcsv1alpha1.ServiceImport{}
	wrote := false
	switch err := writer.Get(ctx, client.ObjectKeyFromObject(desired), existing); {
	case apierrors.IsNotFound(err):
		st := desired.Status
		if err := writer.Create(ctx, desired); err != nil {
			return false, "", fmt.Errorf("create %s: %w", ref, err)
		}
		existing, wrote = desired, true
		existing.Status = mcsv1alpha1.ServiceImportStatus{}
		desired = desired.DeepCopy()
		desired.Status = st
	case err != nil:
		return false, "", fmt.Errorf("read %s: %w", ref, err)
	case !mirror.OwnedMerged(existing, fs.namespace, fs.name):
		return false, ref + " exists and was not written by Flotilla; left untouched", nil
	case mirror.ServiceImportSpecDiffers(existing, desired):
		mirror.ApplyServiceImportSpec(existing, desired)
		if err := writer.Update(ctx, existing); err != nil {
			return false, "", fmt.Errorf("update %s: %w", ref, err)
		}
		wrote = true
	}
	if mirror.ServiceImportStatusDiffers(existing, desired) {
		existing.Status.Clusters = desired.Status.Clusters
		if err := writer.Status().Update(ctx, existing); err != nil {
			return wrote, "", fmt.Errorf("update status of %s: %w", ref, err)
		}
		wrote = true
	}
	return wrote, "", nil
}

// removeMerged deletes the merged object key of kind obj if Flotilla wrote it for fs.
func removeMerged(ctx context.Context, writer client.Client, obj client.Object, key types.NamespacedName, fs *fleetService) (bool, error) {
	if err := writer.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return false, nil
		}
		return false, fmt.Errorf("read %s %s: %w", kindOf(obj), key, err)
	}
	if !mirror.OwnedMerged(obj, fs.namespace, fs.name) {
		return false, nil
	}
	uid := obj.GetUID()
	if err := writer.Delete(ctx, obj, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
		return false, fmt.Errorf("delete %s %s: %w", kindOf(obj), key, err)
	}
	return true, nil
}

// recordMerge records in the catalog entry what the merge reads of this export and whether
// it disagrees with the merged service (the Conflict condition).
func recordMerge(es *fleetv1alpha1.ExportedService, read sourceRead, self *mirror.Exporter, fs *fleetService) {
	st := &es.Status
	st.ServiceExport = read.serviceExport != nil
	since := metav1.NewTime(self.Since)
	st.ExportedSince = &since
	st.Headless, st.Global = self.Headless, read.exp.Global
	for i := range st.Ports {
		if i < len(self.Ports) {
			st.Ports[i].AppProtocol = self.Ports[i].AppProtocol
		}
	}
	if c := fs.conflictOf(self.Cluster); c != nil {
		status.Set(es, fleetv1alpha1.ConditionConflict, metav1.ConditionTrue, c.Reason(), c.Message)
		return
	}
	status.Set(es, fleetv1alpha1.ConditionConflict, metav1.ConditionFalse, fleetv1alpha1.ReasonNoConflicts,
		"no other export of "+es.Spec.Source.Namespace+"/"+es.Spec.Source.Name+" disagrees")
}

// exportedSince is when req's export began: its ServiceExport's creation or its catalog
// entry's, whichever is older.
func exportedSince(es *fleetv1alpha1.ExportedService, se *metav1.PartialObjectMetadata) metav1.Time {
	since := es.CreationTimestamp
	if se != nil && !se.CreationTimestamp.IsZero() && (since.IsZero() || se.CreationTimestamp.Before(&since)) {
		since = se.CreationTimestamp
	}
	return since
}

// add enqueues reqs (what a member newly serves concerns every export).
func (w *memberWork) add(reqs []exportRequest) {
	w.mu.Lock()
	q := w.queue
	w.mu.Unlock()
	if q == nil {
		return
	}
	for _, r := range reqs {
		q.Add(r)
	}
}

// syncMerged is one member's part of an export beyond its per-cluster mirror: req's merged
// slices where they belong (res nil: nowhere), collection of every other mirror object of req
// (keep names the per-cluster mirror objects a target keeps), the shared merged objects, and
// in the source member the ServiceExport's status (se, if any).
func (r *ExportReconciler) syncMerged(ctx context.Context, m string, req exportRequest, in mirror.Source, res *mirror.Resolved,
	fs *fleetService, se *exportStatus, keep map[string]bool) (mirrorPart, error) {
	var p mirrorPart
	keepAll := maps.Clone(keep)
	if keepAll == nil {
		keepAll = map[string]bool{}
	}
	if res != nil {
		wrote, merged, conflict, err := r.writeMergedSlices(ctx, m, req, in, res, fs)
		p.wrote = wrote
		if err != nil {
			return p, fmt.Errorf("write merged slices of %s into cluster %q: %w", req, m, err)
		}
		if conflict != "" {
			p.conflict = conflict
			return p, nil
		}
		maps.Copy(keepAll, merged)
	}
	removed, err := r.collectFrom(ctx, m, req, keepAll)
	p.wrote = p.wrote || removed
	if err != nil {
		return p, fmt.Errorf("remove mirrors of %s from cluster %q: %w", req, m, err)
	}
	wrote, conflict, err := r.syncShared(ctx, m, fs)
	p.wrote = p.wrote || wrote
	if err != nil {
		return p, fmt.Errorf("merged service %s/%s in cluster %q: %w", fs.namespace, fs.name, m, err)
	}
	p.conflict = conflict
	if m == req.Cluster && se != nil {
		wrote, err := r.writeServiceExportStatus(ctx, req, se)
		p.wrote = p.wrote || wrote
		if err != nil {
			return p, err
		}
	}
	return p, nil
}
