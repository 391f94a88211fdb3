package servicesync

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/flotilla-dev/flotilla/clusters"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/requeue"
	"github.com/flotilla-dev/flotilla/internal/status"
)

// SetupOptions configure service sync.
type SetupOptions struct {
	// StaleWindow: a disconnected source's mirrors keep ready endpoints this long.
	StaleWindow time.Duration
	// AllowSystemNamespaces permits exports from kube-system, kube-public, kube-node-lease.
	AllowSystemNamespaces bool
	// MaxConcurrentSyncs bounds how many exported Services are synced at once.
	MaxConcurrentSyncs int
	// MaxConcurrentPerMember bounds how many of those work on one member at once (reads of
	// a source, writes and clean-up of mirrors), so that members which stop answering tie
	// up only a few connections each; see memberwork.go.
	MaxConcurrentPerMember int
	// MemberTimeout bounds one export's work in one member (every single call is bounded by
	// the connection manager as well); zero means one minute.
	MemberTimeout time.Duration
	// ImportMode says which member namespaces receive mirrors (default ImportOptOut).
	ImportMode ImportMode
	// MCSProbeInterval is how often a connected member is asked again which MCS kinds it
	// serves (a CRD installed after it connected); zero means one minute.
	MCSProbeInterval time.Duration
}

// ImportMode says which namespaces of a target member receive mirrors.
type ImportMode string

const (
	// ImportOptOut: every namespace of the source's name receives mirrors, except one labelled
	// fleet.flotilla.dev/import: "false".
	ImportOptOut ImportMode = "opt-out"
	// ImportOptIn: only namespaces labelled fleet.flotilla.dev/import: "true" receive mirrors.
	ImportOptIn ImportMode = "opt-in"
)

// ImportModes lists the valid import modes (for flag help and errors).
var ImportModes = []ImportMode{ImportOptOut, ImportOptIn}

// Member kinds servicesync caches. Services and EndpointSlices are metadata-only, trimmed
// and filtered (an export is an annotation, which no selector can pick, so every Service is
// seen on the wire, but the cache keeps only exported ones, Flotilla's own, and their slices:
// filter.go); full objects of exported Services are read from the member on demand.
func serviceMeta() *metav1.PartialObjectMetadata {
	return metadataOf(corev1.SchemeGroupVersion.WithKind("Service"))
}

// namespaceMeta: Namespaces are metadata-only (a name, labels, annotations), the same
// informer propagation's perNamespace fan-out reads.
func namespaceMeta() *metav1.PartialObjectMetadata {
	return metadataOf(corev1.SchemeGroupVersion.WithKind("Namespace"))
}

// nodeKind names the on-demand Node watch: a member's Nodes are cached (trimmed) only while
// one of its exports publishes node addresses (see ExportReconciler.demandNodes).
var nodeKind = &corev1.Node{}

func sliceMeta() *metav1.PartialObjectMetadata {
	return metadataOf(discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"))
}

func metadataOf(gvk schema.GroupVersionKind) *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{}
	p.SetGroupVersionKind(gvk)
	return p
}

// Setup adds the export controller to mgr and registers what it watches in members:
// trimmed metadata of exported Services, of Flotilla's own and of their EndpointSlices
// (filter.go), metadata of Namespaces (shared with
// propagation), the Endpoints Flotilla wrote, and trimmed Nodes only while an export of the
// member needs node addresses.
func Setup(mgr ctrl.Manager, access clusters.MemberAccess, opts SetupOptions) error {
	switch opts.ImportMode {
	case "":
		opts.ImportMode = ImportOptOut
	case ImportOptOut, ImportOptIn:
	default:
		return fmt.Errorf("set up service sync: unknown import mode %q; valid modes: %v", opts.ImportMode, ImportModes)
	}
	if opts.StaleWindow <= 0 {
		opts.StaleWindow = time.Minute
	}
	if opts.MaxConcurrentSyncs <= 0 {
		opts.MaxConcurrentSyncs = 8
	}
	if opts.MaxConcurrentPerMember <= 0 {
		opts.MaxConcurrentPerMember = 4
	}
	if opts.MemberTimeout <= 0 {
		opts.MemberTimeout = time.Minute
	}
	// Exports are merged with the others of their namespace/name (merged.go): an index finds
	// those without copying the whole catalog, which grows with the fleet, each time.
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &fleetv1alpha1.ExportedService{}, sourceNameIndex,
		func(o client.Object) []string {
			es, ok := o.(*fleetv1alpha1.ExportedService)
			if !ok {
				return nil
			}
			return []string{sourceNameOf(es.Spec.Source.Namespace, es.Spec.Source.Name)}
		}); err != nil {
		return fmt.Errorf("set up service sync: index ExportedServices: %w", err)
	}
	everything := labels.Everything()
	for _, w := range []struct {
		obj  client.Object
		opts cache.ByObject
	}{
		{serviceMeta(), cache.ByObject{Label: everything, Transform: trimServiceMeta}},
		{sliceMeta(), cache.ByObject{Label: everything, Transform: trimSliceMeta}},
		{namespaceMeta(), cache.ByObject{Label: everything}},
		// Endpoints only as mirrors (the dynamic default scope: managed-by flotilla).
		{&corev1.Endpoints{}, cache.ByObject{}},
	} {
		if err := access.RegisterWatch(w.obj, w.opts); err != nil {
			return err
		}
	}
	if err := access.RegisterOnDemand(nodeKind, cache.ByObject{Label: everything, Transform: trimNode}); err != nil {
		return err
	}
	if err := registerFilters(access); err != nil {
		return err
	}
	if err := setupMCSKinds(mgr, access); err != nil {
		return err
	}
	r := &ExportReconciler{Client: mgr.GetClient(), Members: access, StaleWindow: opts.StaleWindow,
		Recorder:              status.Events(mgr.GetEventRecorder("flotilla-servicesync")),
		AllowSystemNamespaces: opts.AllowSystemNamespaces, ImportMode: opts.ImportMode, dirty: newDirtyTimes(dirtyLimit),
		work: newMemberWork(opts.MaxConcurrentPerMember, opts.MemberTimeout), mcs: newMCSMembers(),
		sources: newSourceMemo(), written: newTargetMemo()}
	m := &mapper{hub: mgr.GetClient(), members: access, dirty: r.dirty, mcs: r.mcs}

	err := builder.TypedControllerManagedBy[exportRequest](mgr).
		Named("exportedservice").
		// Its own catalog entry: created or deleted by someone else. Status writes (ours) do
		// not change the generation and enqueue nothing.
		Watches(&fleetv1alpha1.ExportedService{}, handler.TypedEnqueueRequestsFromMapFunc(m.catalogEntry),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// The other exports of its namespace/name, when what the merge reads of it changed.
		Watches(&fleetv1alpha1.ExportedService{}, handler.TypedEnqueueRequestsFromMapFunc(m.siblings),
			builder.WithPredicates(mergeInputChanged())).
		Watches(&fleetv1alpha1.MemberCluster{}, handler.TypedFuncs[client.Object, exportRequest]{
			CreateFunc: nil, // a new member is not connected yet; its connect event follows
			UpdateFunc: m.memberChanged,
			DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[exportRequest]) {
				m.add(q, m.exports(ctx, sourcedFrom(e.Object.GetName())))
			},
		}).
		WatchesRawSource(memberSource(func(add func([]exportRequest)) source.Source {
			return access.WatchSource(serviceMeta(), func(ctx context.Context, cluster string, o client.Object) []reconcile.Request {
				add(m.service(ctx, cluster, o))
				return nil
			})
		})).
		WatchesRawSource(memberSource(func(add func([]exportRequest)) source.Source {
			return access.WatchSource(serviceExportMeta(), func(_ context.Context, cluster string, o client.Object) []reconcile.Request {
				add(m.serviceExport(cluster, o))
				return nil
			})
		})).
		WatchesRawSource(memberSource(func(add func([]exportRequest)) source.Source {
			return access.WatchSource(sliceMeta(), func(ctx context.Context, cluster string, o client.Object) []reconcile.Request {
				add(m.slice(ctx, cluster, o))
				return nil
			})
		})).
		WatchesRawSource(memberSource(func(add func([]exportRequest)) source.Source {
			return access.WatchSource(&corev1.Endpoints{}, func(_ context.Context, _ string, o client.Object) []reconcile.Request {
				add(mirrorSource(o))
				return nil
			})
		})).
		WatchesRawSource(memberSource(func(add func([]exportRequest)) source.Source {
			return access.WatchSource(nodeKind, func(ctx context.Context, cluster string, _ client.Object) []reconcile.Request {
				add(m.exports(ctx, usingNodesOf(cluster)))
				return nil
			})
		})).
		WatchesRawSource(memberSource(func(add func([]exportRequest)) source.Source {
			// A namespace created, deleted or (un)labelled import: its exports gain or lose a target.
			return access.WatchSource(namespaceMeta(), func(ctx context.Context, _ string, o client.Object) []reconcile.Request {
				add(m.exports(ctx, inNamespace(o.GetName())))
				return nil
			})
		})).
		WatchesRawSource(memberSource(func(add func([]exportRequest)) source.Source {
			// A member came or went: it may be a target of any export.
			return access.ConnectionSource(func(ctx context.Context, _ string) []reconcile.Request {
				add(m.exports(ctx, nil))
				return nil
			})
		})).
		// No events: it hands memberWork the queue into which deferred exports are woken.
		WatchesRawSource(source.TypedFunc[exportRequest](func(_ context.Context, q workqueue.TypedRateLimitingInterface[exportRequest]) error {
			r.work.setQueue(q)
			return nil
		})).
		WithOptions(controller.TypedOptions[exportRequest]{MaxConcurrentReconciles: opts.MaxConcurrentSyncs, RateLimiter: requeue.Limiter[exportRequest]()}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("set up service sync: %w", err)
	}
	return setupMCSMembers(mgr, access, r, m, opts.MCSProbeInterval)
}

// sourceNameIndex indexes catalog entries by their source's namespace/name.
const sourceNameIndex = "spec.source.namespacedName"

func sourceNameOf(namespace, name string) string { return namespace + "/" + name }

// memberSource adapts a clusters source, whose queue carries reconcile.Requests, to this
// controller's typed requests: its map function adds typed requests itself and hands the
// clusters source none, so the clusters-side queue is never used.
func memberSource(build func(add func([]exportRequest)) source.Source) source.TypedSource[exportRequest] {
	return source.TypedFunc[exportRequest](func(ctx context.Context, q workqueue.TypedRateLimitingInterface[exportRequest]) error {
		return build(func(reqs []exportRequest) {
			for _, r := range reqs {
				q.Add(r)
			}
		}).Start(ctx, nil)
	})
}

// mapper turns events into export requests, and only where an export is concerned: a
// change to a Service or slice nobody exports enqueues nothing.
type mapper struct {
	hub     client.Reader
	members clusters.MemberAccess
	dirty   *dirtyTimes
	mcs     *mcsMembers
}

func (m *mapper) add(q workqueue.TypedRateLimitingInterface[exportRequest], reqs []exportRequest) {
	for _, r := range reqs {
		q.Add(r)
	}
}

func (m *mapper) catalogEntry(_ context.Context, o client.Object) []exportRequest {
	es, ok := o.(*fleetv1alpha1.ExportedService)
	if !ok {
		return nil
	}
	return []exportRequest{requestFor(es)}
}

// service maps a Service: a mirror to its source; an exported Service (or one that was
// exported until now) to itself.
func (m *mapper) service(ctx context.Context, cluster string, o client.Object) []exportRequest {
	reqs := mirrorSource(o)
	self := exportRequest{Cluster: cluster, NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}}
	switch {
	case m.exportRequested(ctx, cluster, o):
		// A mirror annotated by someone is reported by its own reconcile; no latency to time.
		if len(reqs) == 0 {
			m.dirty.mark(self)
		}
		return append(reqs, self)
	case len(reqs) == 0 && m.catalogued(ctx, self):
		return []exportRequest{self} // unexported or deleted: its mirrors go
	}
	return reqs
}

// slice maps an EndpointSlice: a mirror's to its source; a source slice to its Service only
// while that Service is exported.
func (m *mapper) slice(ctx context.Context, cluster string, o client.Object) []exportRequest {
	if reqs := mirrorSource(o); len(reqs) > 0 {
		return reqs
	}
	name := o.GetLabels()[discoveryv1.LabelServiceName]
	if name == "" {
		return nil
	}
	self := exportRequest{Cluster: cluster, NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}
	reader, err := m.members.Reader(cluster)
	if err != nil {
		return nil // the member's connect event enqueues every export
	}
	svc := serviceMeta()
	switch err := reader.Get(ctx, self.NamespacedName, svc); {
	case apierrors.IsNotFound(err):
		// Not held: exported by a ServiceExport alone, perhaps (the cache may not hold it yet).
		if !m.exportRequestedKey(ctx, cluster, self.NamespacedName, nil) {
			return nil
		}
	case err != nil || !m.exportRequested(ctx, cluster, svc):
		return nil
	}
	m.dirty.mark(self)
	return []exportRequest{self}
}

// catalogued reports whether the hub has a catalog entry for req (read from the hub cache).
func (m *mapper) catalogued(ctx context.Context, req exportRequest) bool {
	err := m.hub.Get(ctx, types.NamespacedName{Name: req.catalogName()}, &fleetv1alpha1.ExportedService{})
	return err == nil
}

// memberChanged enqueues exports when a MemberCluster changed in a way servicesync reads:
// spec.paused concerns every export (a paused member is no target) and the source of every
// mirror it holds (unpaused, it may hold mirrors of exports that are gone since); its
// labels (export-to selectors) or deletion concern every export that selects members;
// its Connected condition concerns the exports it is the source of. A heartbeat (probe
// time, node count) enqueues nothing.
func (m *mapper) memberChanged(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[exportRequest]) {
	old, okOld := e.ObjectOld.(*fleetv1alpha1.MemberCluster)
	mc, okNew := e.ObjectNew.(*fleetv1alpha1.MemberCluster)
	if !okOld || !okNew {
		return
	}
	switch memberChange(old, mc) {
	case changePaused:
		m.add(q, m.exports(ctx, nil))
		m.add(q, m.mirroredIn(ctx, mc.Name))
	case changeLabels:
		m.add(q, m.exports(ctx, selective))
		fallthrough
	case changeSource:
		m.add(q, m.exports(ctx, sourcedFrom(mc.Name)))
	}
}

// A change to a MemberCluster, as far as exports are concerned.
type change int

const (
	changeNone   change = iota
	changeSource        // its own exports must be reconciled (connection or deletion)
	changeLabels        // exports selecting members by label must be reconciled too
	changePaused        // every export, and the source of every mirror in the member
)

// memberChange classifies an update of a MemberCluster.
func memberChange(old, mc *fleetv1alpha1.MemberCluster) change {
	switch {
	case old.Spec.Paused != mc.Spec.Paused:
		return changePaused
	case !labels.Equals(old.Labels, mc.Labels):
		return changeLabels
	case old.DeletionTimestamp.IsZero() != mc.DeletionTimestamp.IsZero(),
		conditionStatus(old, fleetv1alpha1.ConditionConnected) != conditionStatus(mc, fleetv1alpha1.ConditionConnected):
		return changeSource
	}
	return changeNone
}

func conditionStatus(mc *fleetv1alpha1.MemberCluster, typ string) metav1.ConditionStatus {
	for _, c := range mc.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// exports lists the catalog (hub cache) and returns the entries match accepts (nil: all).
func (m *mapper) exports(ctx context.Context, match func(*fleetv1alpha1.ExportedService) bool) []exportRequest {
	list := &fleetv1alpha1.ExportedServiceList{}
	if err := m.hub.List(ctx, list); err != nil {
		log.FromContext(ctx).Error(err, "list ExportedServices")
		return nil
	}
	var reqs []exportRequest
	for i := range list.Items {
		if match == nil || match(&list.Items[i]) {
			reqs = append(reqs, requestFor(&list.Items[i]))
		}
	}
	return reqs
}

// mirroredIn maps every mirror Service in cluster's cache to its source, catalogued or not:
// a mirror whose export went while the member was paused has no catalog entry left.
func (m *mapper) mirroredIn(ctx context.Context, cluster string) []exportRequest {
	reader, err := m.members.Reader(cluster)
	if err != nil {
		return nil // its connect event enqueues the sources of its mirrors (cache sync)
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ServiceList"))
	if err := reader.List(ctx, list, client.HasLabels{fleetv1alpha1.LabelSourceCluster}); err != nil {
		log.FromContext(ctx).Error(err, "list mirror Services", "cluster", cluster)
		return nil
	}
	var reqs []exportRequest
	for i := range list.Items {
		reqs = append(reqs, mirrorSource(&list.Items[i])...)
	}
	return reqs
}

func sourcedFrom(cluster string) func(*fleetv1alpha1.ExportedService) bool {
	return func(es *fleetv1alpha1.ExportedService) bool { return es.Spec.Source.Cluster == cluster }
}

// usingNodesOf: exports of cluster whose mirrors are node addresses or pod IPs, checked
// against the Nodes' pod CIDRs (or not computed yet).
func usingNodesOf(cluster string) func(*fleetv1alpha1.ExportedService) bool {
	return func(es *fleetv1alpha1.ExportedService) bool {
		return es.Spec.Source.Cluster == cluster && needsNodes(es.Status.AddressMode)
	}
}

// needsNodes says whether the mirrors of an export in this mode (as resolved; "" before the
// first sync) depend on the source's Nodes.
func needsNodes(mode fleetv1alpha1.AddressMode) bool {
	switch mode {
	case fleetv1alpha1.AddressModeLoadBalancer, fleetv1alpha1.AddressModeClusterIP:
		return false
	}
	return true
}

func inNamespace(ns string) func(*fleetv1alpha1.ExportedService) bool {
	return func(es *fleetv1alpha1.ExportedService) bool { return es.Spec.Source.Namespace == ns }
}

// selective: exports narrowed by export-to, whose targets depend on member labels.
func selective(es *fleetv1alpha1.ExportedService) bool { return es.Status.ExportTo != "" }

// mirrorSource maps a mirror object, by its ownership labels, to its source.
func mirrorSource(o client.Object) []exportRequest {
	l := o.GetLabels()
	c := l[fleetv1alpha1.LabelSourceCluster]
	if c == "" {
		return nil
	}
	return []exportRequest{{Cluster: c, NamespacedName: types.NamespacedName{
		Namespace: l[fleetv1alpha1.LabelSourceNamespace], Name: l[fleetv1alpha1.LabelSourceName]}}}
}
