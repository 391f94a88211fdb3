package servicesync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/flotilla-dev/flotilla/clusters"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/status"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=exportedservices,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=exportedservices/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=memberclusters,verbs=get;list;watch

// ExportReconciler keeps the mirrors of one exported Service — a selectorless Service,
// Endpoints and EndpointSlices named <service>-<cluster> — in every other selected member,
// and its ExportedService catalog entry on the hub.
type ExportReconciler struct {
	Client  client.Client
	Members clusters.MemberAccess
	// StaleWindow is how long a disconnected source's mirrors keep their endpoints ready.
	StaleWindow time.Duration
	// AllowSystemNamespaces lets kube-system, kube-public and kube-node-lease be exported.
	AllowSystemNamespaces bool
	// ImportMode says which target namespaces receive mirrors.
	ImportMode ImportMode
	// Recorder sends the catalog entry's events (export_status.go): mirrors written into
	// new members, conflicts, refusals.
	Recorder recorder.EventRecorder
	// dirty records when a source change was seen, for the propagation latency metric.
	dirty *dirtyTimes
	// work runs each member's part of a reconcile under that member's slots (memberwork.go).
	work *memberWork
	// mcs says which MCS kinds each member serves (mcs.go).
	mcs *mcsMembers
	// sources and written spare a reconcile the reads whose answers the member caches
	// show unchanged (readmemo.go).
	sources *sourceMemo
	written *targetMemo
}

// exportRequest names one exported Service: the member it lives in and its namespace/name.
type exportRequest struct {
	Cluster string
	types.NamespacedName
}

func requestFor(es *fleetv1alpha1.ExportedService) exportRequest {
	s := es.Spec.Source
	return exportRequest{Cluster: s.Cluster, NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}}
}

// catalogName is the name of the request's ExportedService.
func (q exportRequest) catalogName() string {
	return fleetv1alpha1.ExportedServiceName(q.Cluster, q.Namespace, q.Name)
}

func (q exportRequest) String() string { return q.Cluster + "/" + q.Namespace + "/" + q.Name }

// Reconcile makes the mirrors of one source match it: it finds out whether the Service is
// (still) exported, and then either exports it or removes everything it left behind.
func (r *ExportReconciler) Reconcile(ctx context.Context, req exportRequest) (_ ctrl.Result, err error) {
	started := time.Now()
	wrote := false
	defer func() { r.dirty.done(req, started, wrote) }()

	es, err := r.catalogEntry(ctx, req)
	if err != nil {
		return ctrl.Result{}, err
	}
	mc := &fleetv1alpha1.MemberCluster{}
	switch err := r.Client.Get(ctx, types.NamespacedName{Name: req.Cluster}, mc); {
	case apierrors.IsNotFound(err) || (err == nil && !mc.DeletionTimestamp.IsZero()):
		// The source member was unregistered: its mirrors go everywhere.
		return r.unexport(ctx, req, es, nil)
	case err != nil:
		return ctrl.Result{}, err
	}
	if _, err := r.Members.Client(req.Cluster); errors.Is(err, clusters.ErrNotConnected) {
		return r.sourceUnreachable(ctx, req, mc, es)
	}
	// Read from the member (the hub caches only the metadata of a member's Services), as
	// one member part: a source that stopped answering defers this export, not the worker.
	reads, deferred, err := onMembers(ctx, r.work, req, []string{req.Cluster}, func(ctx context.Context, _ string) (sourceRead, error) {
		return r.readSource(ctx, req)
	})
	switch {
	case err != nil:
		return ctrl.Result{}, err
	case len(deferred) > 0:
		return ctrl.Result{RequeueAfter: deferredResync}, nil
	}
	read := reads[req.Cluster]
	if !read.exported {
		var se *exportStatus
		if read.serviceExport != nil && !read.service {
			se = noService(req)
		}
		return r.unexport(ctx, req, es, se)
	}

	created := es == nil
	if es, err = r.ensureCatalogEntry(ctx, req, es); err != nil {
		return ctrl.Result{}, err
	}
	p := status.NewPatcher(r.Client, es, status.WithEvents(r.Recorder, nil, exportEvent))
	defer func() { err = p.Patch(ctx, es, err) }()
	wrote, deferred, err = r.export(ctx, req, es, read)
	switch {
	case len(deferred) > 0 && err == nil:
		// Woken when a deferred member frees a slot; the resync is a backstop.
		return ctrl.Result{RequeueAfter: deferredResync}, nil
	case created && err == nil:
		// Nodes, Namespaces, connections and MemberClusters are mapped to exports through the
		// hub's cache of the catalog, which does not hold the entry just created: a change
		// this reconcile read too early (a source's Node still on its way, a target that
		// connected meanwhile) found no export to wake. Run again once the entry is cached:
		// from then on those changes find it (an entry not cached yet is created again,
		// fails as existing, and is retried).
		return ctrl.Result{RequeueAfter: catalogSettle}, nil
	}
	return ctrl.Result{}, err
}

// catalogSettle is when an export whose catalog entry was just created is reconciled again
// (see Reconcile); the hub's cache holds a new entry well within it.
const catalogSettle = time.Second

// sourceRead is what a reconcile reads of its source member: the Service, whether and how
// it asks to be exported, and (for a valid export) what its mirrors depend on.
type sourceRead struct {
	exported bool
	// service: the Service exists. serviceExport: its MCS ServiceExport, if any.
	service       bool
	serviceExport *metav1.PartialObjectMetadata
	exp           *mirror.Export
	invalid       error
	in            mirror.Source
}

// readSource reads the Service of req from its member and, when it is validly exported,
// its EndpointSlices and Nodes. A Service that is gone is not exported.
func (r *ExportReconciler) readSource(ctx context.Context, req exportRequest) (sourceRead, error) {
	source, err := r.Members.Client(req.Cluster)
	if err != nil {
		return sourceRead{}, err
	}
	se, err := r.serviceExportOf(ctx, req.Cluster, req.NamespacedName)
	if err != nil {
		return sourceRead{}, err
	}
	objs, found, err := r.sourceObjects(ctx, req, source)
	if err != nil || !found {
		return sourceRead{serviceExport: se}, err
	}
	svc := objs.svc
	read := sourceRead{service: true, serviceExport: se}
	read.exp, read.exported, read.invalid = mirror.ParseExportRequest(svc, se != nil, r.AllowSystemNamespaces)
	read.in = mirror.Source{Cluster: req.Cluster, Service: svc}
	r.demandNodes(req, read.exported && read.invalid == nil && mirror.NeedsNodes(svc, read.exp.Mode))
	if read.exported && read.invalid == nil {
		if read.in, err = r.sourceInput(ctx, req, svc, objs.slices, read.exp.Mode); err != nil {
			return read, err
		}
	}
	return read, nil
}

// sourceObjects are the source Service of req and its EndpointSlices (mirror slices
// excluded), from the memo when the member cache shows the versions last read (readmemo.go),
// else read from the member. found is false when the Service does not exist.
func (r *ExportReconciler) sourceObjects(ctx context.Context, req exportRequest, source client.Client) (_ sourceObjects, found bool, _ error) {
	if cached, err := r.Members.Reader(req.Cluster); err == nil {
		if objs, ok := r.sources.get(req, cachedSourceVersions(ctx, cached, req)); ok {
			return objs, true, nil
		}
	}
	svc := &corev1.Service{}
	if err := source.Get(ctx, req.NamespacedName, svc); err != nil {
		r.sources.forget(req)
		if apierrors.IsNotFound(err) {
			return sourceObjects{}, false, nil
		}
		return sourceObjects{}, false, fmt.Errorf("read Service %s/%s in cluster %q: %w", req.Namespace, req.Name, req.Cluster, err)
	}
	list := &discoveryv1.EndpointSliceList{}
	if err := source.List(ctx, list, client.InNamespace(req.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: req.Name}); err != nil {
		return sourceObjects{}, false, fmt.Errorf("list EndpointSlices of %s in cluster %q: %w", req.NamespacedName, req.Cluster, err)
	}
	objs := sourceObjects{svc: svc}
	for _, s := range list.Items {
		if s.Labels[fleetv1alpha1.LabelSourceCluster] == "" { // never a mirror's slice
			objs.slices = append(objs.slices, s)
		}
	}
	r.sources.put(req, objs)
	return objs, true, nil
}

// export mirrors a Service that asks to be exported: it computes the mirrors, writes them
// into every target, removes them from members no longer targeted and records the outcome
// in the catalog entry. An export that cannot be honoured is refused. deferred are the
// members whose part was put off (memberWork).
func (r *ExportReconciler) export(ctx context.Context, req exportRequest, es *fleetv1alpha1.ExportedService,
	read sourceRead) (wrote bool, deferred []string, err error) {
	in, exp, invalid := read.in, read.exp, read.invalid
	var res *mirror.Resolved
	if invalid == nil {
		res, invalid = mirror.Resolve(in, exp.Mode)
	}
	if invalid != nil {
		deferred, err := r.refuse(ctx, req, es, read, invalid)
		return false, deferred, err
	}

	targets, away, refusing, err := r.targets(ctx, req, exp)
	if err != nil {
		return false, nil, err
	}
	writable, err := r.writable(ctx)
	if err != nil {
		return false, nil, err
	}
	self := mirror.ExporterOf(in, res, exportedSince(es, read.serviceExport).Time)
	fs, err := r.fleetServiceOf(ctx, req, &self, exp.Global, targets)
	if err != nil {
		return false, nil, err
	}
	var se *exportStatus // only a ServiceExport the member cache holds gets a status
	if read.serviceExport != nil {
		se = &exportStatus{valid: true, conflict: fs.conflictOf(req.Cluster)}
	}
	out := r.syncMirrors(ctx, req, writable, targets, in, res, fs, se)
	for _, m := range out.deferred {
		away[m] = true
	}
	// Before is what this process last recorded: the cached status may not show the last
	// reconcile's write yet, and a member deferred right after its mirror was written must
	// stay listed, not drop out until its part comes back in time.
	out.mirrored = keepAway(out.mirrored, mirroredBefore(es), away)
	exportMirrors.WithLabelValues(req.String()).Set(float64(len(out.mirrored)))
	exportConflicts.WithLabelValues(req.String()).Set(float64(len(out.conflicts)))
	added := newlyMirrored(mirroredBefore(es), out.mirrored)
	recordSync(es, exp, res, out, refusing)
	status.Remember(es.UID, mirroredKey, strings.Join(out.mirrored, ","))
	if len(added) > 0 {
		r.Recorder.Eventf(es, nil, corev1.EventTypeNormal, fleetv1alpha1.ReasonMirrored, "Mirror",
			"mirror written into %s", status.List(added, messageItems, ", "))
	}
	recordMerge(es, read, &self, fs)
	return out.wrote, out.deferred, out.err
}

// refuse handles an export that asks for what it cannot have (hostile or mistaken input):
// nothing is written into any member, mirrors an earlier valid export left are removed,
// and the catalog entry says why, as a Stalled condition a person can act on.
func (r *ExportReconciler) refuse(ctx context.Context, req exportRequest, es *fleetv1alpha1.ExportedService, read sourceRead, invalid error) ([]string, error) {
	var se *exportStatus
	if read.serviceExport != nil {
		se = &exportStatus{reason: fleetv1alpha1.ReasonInvalidExport, message: invalid.Error()}
		if read.in.Service != nil && read.in.Service.Spec.Type == corev1.ServiceTypeExternalName {
			se.reason = string(mcsv1alpha1.ServiceExportReasonInvalidServiceType)
		}
	}
	deferred, err := r.collect(ctx, req, se)
	if err != nil {
		return deferred, err
	}
	exportMirrors.WithLabelValues(req.String()).Set(0)
	exportConflicts.WithLabelValues(req.String()).Set(0)
	recordRefusal(es, invalid)
	status.Remove(es, fleetv1alpha1.ConditionConflict) // a refused export takes no part in the merge
	return deferred, status.Stalled(fleetv1alpha1.ReasonInvalidExport, fmt.Errorf(
		"%w; nothing is mirrored until the Service or its %s* annotations are changed (or %s is removed)",
		invalid, flotillaPrefix, fleetv1alpha1.AnnotationExport))
}

// sourceUnreachable keeps the mirrors of a disconnected source; after the stale window
// their endpoints are marked not ready, so clients stop picking them, and the source's
// connect event brings them back.
func (r *ExportReconciler) sourceUnreachable(ctx context.Context, req exportRequest, mc *fleetv1alpha1.MemberCluster,
	es *fleetv1alpha1.ExportedService) (_ ctrl.Result, err error) {
	if es == nil {
		return ctrl.Result{}, nil // nothing was ever mirrored
	}
	since := disconnectedSince(mc)
	if wait := r.StaleWindow - time.Since(since); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	p := status.NewPatcher(r.Client, es, status.WithEvents(r.Recorder, nil, exportEvent))
	defer func() { err = p.Patch(ctx, es, err) }()
	recordUnreachable(es, req.Cluster, since)
	deferred, err := r.markStale(ctx, req)
	if len(deferred) > 0 && err == nil {
		return ctrl.Result{RequeueAfter: deferredResync}, nil
	}
	return ctrl.Result{}, err
}

// disconnectedSince is when the member's Connected condition last turned non-True.
func disconnectedSince(mc *fleetv1alpha1.MemberCluster) time.Time {
	if c := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionConnected); c != nil && c.Status != metav1.ConditionTrue {
		return c.LastTransitionTime.Time
	}
	// Connected per the hub but not (yet) in this process: a restart; not stale.
	return time.Now()
}

// demandNodes tells the connection manager whether this export needs its member's Nodes:
// the member caches them only while one of its exports publishes node addresses.
func (r *ExportReconciler) demandNodes(req exportRequest, needed bool) {
	r.Members.Demand(req.Cluster, nodeKind, req.String(), needed)
}

// unexport removes every mirror of req and then its catalog entry, which stays while a
// member's part is deferred (the entry is what brings the export back, and what a leaving
// member waits for).
func (r *ExportReconciler) unexport(ctx context.Context, req exportRequest, es *fleetv1alpha1.ExportedService, se *exportStatus) (ctrl.Result, error) {
	r.demandNodes(req, false)
	r.sources.forget(req)
	deferred, err := r.collect(ctx, req, se)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(deferred) > 0 {
		return ctrl.Result{RequeueAfter: deferredResync}, nil
	}
	exportMirrors.DeleteLabelValues(req.String())
	exportConflicts.DeleteLabelValues(req.String())
	if es != nil {
		if err := r.Client.Delete(ctx, es); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("delete ExportedService %s: %w", es.Name, err)
		}
		log.FromContext(ctx).Info("unexported", "source", req.String())
	}
	return ctrl.Result{}, nil
}

// catalogEntry is the request's ExportedService, or nil when there is none.
func (r *ExportReconciler) catalogEntry(ctx context.Context, req exportRequest) (*fleetv1alpha1.ExportedService, error) {
	es := &fleetv1alpha1.ExportedService{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: req.catalogName()}, es); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read ExportedService %s: %w", req.catalogName(), err)
	}
	return es, nil
}

// ensureCatalogEntry creates the request's ExportedService if es is nil.
func (r *ExportReconciler) ensureCatalogEntry(ctx context.Context, req exportRequest, es *fleetv1alpha1.ExportedService) (*fleetv1alpha1.ExportedService, error) {
	if es != nil {
		return es, nil
	}
	es = &fleetv1alpha1.ExportedService{
		ObjectMeta: metav1.ObjectMeta{Name: req.catalogName(), Labels: map[string]string{fleetv1alpha1.LabelCluster: req.Cluster}},
		Spec: fleetv1alpha1.ExportedServiceSpec{Source: fleetv1alpha1.ServiceReference{
			Cluster: req.Cluster, Namespace: req.Namespace, Name: req.Name}},
	}
	if err := r.Client.Create(ctx, es); err != nil {
		return nil, fmt.Errorf("create ExportedService %s: %w", es.Name, err)
	}
	return es, nil
}

// sourceInput collects what the mirrors depend on: the source's EndpointSlices (read by
// sourceObjects) and for node addresses the member's Nodes from its trimmed cache (cached
// only while such an export demands them).
func (r *ExportReconciler) sourceInput(ctx context.Context, req exportRequest, svc *corev1.Service, slices []discoveryv1.EndpointSlice,
	mode fleetv1alpha1.AddressMode) (mirror.Source, error) {
	in := mirror.Source{Cluster: req.Cluster, Service: svc, Slices: slices}
	if mirror.NeedsNodes(svc, mode) { // demanded by export
		reader, err := r.Members.Reader(req.Cluster)
		if err != nil {
			return in, err
		}
		nodes := &corev1.NodeList{}
		if err := reader.List(ctx, nodes); err != nil {
			return in, fmt.Errorf("list Nodes of cluster %q: %w", req.Cluster, err)
		}
		in.Nodes = nodes.Items
	}
	return in, nil
}

// targets are the connected members, other than the source, selected by export-to, where
// the source's namespace exists and imports mirrors, and not paused. away are the selected
// members that are not connected (yet) or paused: whatever mirrors they hold stay there
// untouched until they are back or unpaused. refusing are the selected members whose
// namespace refuses mirrors: not targets, so collection removes any mirror they hold.
func (r *ExportReconciler) targets(ctx context.Context, req exportRequest, exp *mirror.Export) (
	_ []string, away map[string]bool, refusing []fleetv1alpha1.ImportRefusal, _ error) {
	list := &fleetv1alpha1.MemberClusterList{}
	if err := r.Client.List(ctx, list); err != nil {
		return nil, nil, nil, fmt.Errorf("list MemberClusters: %w", err)
	}
	away = map[string]bool{}
	connected := map[string]bool{}
	for _, c := range r.Members.Connected() {
		connected[c] = true
	}
	var out []string
	for _, mc := range list.Items {
		if mc.Name == req.Cluster || !mc.DeletionTimestamp.IsZero() {
			continue
		}
		if exp.ExportTo != nil && !exp.ExportTo.Matches(labels.Set(mc.Labels)) {
			continue
		}
		if !connected[mc.Name] || mc.Spec.Paused {
			away[mc.Name] = true
			continue
		}
		reader, err := r.Members.Reader(mc.Name)
		if err != nil {
			// Disconnected since Connected() answered: away like the others, and its
			// connect event brings the export back.
			away[mc.Name] = true
			continue
		}
		ns := namespaceMeta()
		if err := reader.Get(ctx, types.NamespacedName{Name: req.Namespace}, ns); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, nil, nil, fmt.Errorf("read Namespace %s in cluster %q: %w", req.Namespace, mc.Name, err)
		}
		if refusal := r.importRefusal(mc.Name, ns); refusal != nil {
			refusing = append(refusing, *refusal)
			continue
		}
		out = append(out, mc.Name)
	}
	sort.Strings(out)
	sort.Slice(refusing, func(i, j int) bool { return refusing[i].Cluster < refusing[j].Cluster })
	return out, away, refusing, nil
}

// importRefusal says why the namespace ns of member cluster receives no mirrors, or nil when
// it imports them. The namespace's own label decides first: "false" refuses whatever the
// mode; in opt-in mode only "true" accepts. The label is the target namespace owner's word:
// an exporter in another cluster cannot override it.
func (r *ExportReconciler) importRefusal(cluster string, ns client.Object) *fleetv1alpha1.ImportRefusal {
	v := ns.GetLabels()[fleetv1alpha1.LabelImport]
	switch {
	case v == "false":
		return &fleetv1alpha1.ImportRefusal{Cluster: cluster, Reason: fleetv1alpha1.ReasonImportDisabled, Message: fmt.Sprintf(
			"namespace %s is labelled %s=false; remove the label to receive mirrors", ns.GetName(), fleetv1alpha1.LabelImport)}
	case r.ImportMode == ImportOptIn && v != "true":
		return &fleetv1alpha1.ImportRefusal{Cluster: cluster, Reason: fleetv1alpha1.ReasonImportNotEnabled, Message: fmt.Sprintf(
			"the hub imports opt-in and namespace %s is not labelled %s=true", ns.GetName(), fleetv1alpha1.LabelImport)}
	}
	return nil
}

// keepAway adds to the members now holding a current mirror those that held one before and
// are only away: their mirrors were neither updated nor removed, so the catalog still lists
// them (a restarted hub must not report an export as mirrored nowhere while it reconnects).
func keepAway(mirrored, before []string, away map[string]bool) []string {
	out := slices.Clone(mirrored)
	for _, m := range before {
		if away[m] && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}
