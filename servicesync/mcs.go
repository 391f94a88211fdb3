package servicesync

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/flotilla-dev/flotilla/clusters"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/status"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// The Multi-Cluster Services API (sigs.k8s.io/mcs-api, v1alpha1: the version every release of
// its CRDs serves, and the one MCS DNS servers read). A member speaks as much of it as it
// serves: a ServiceExport in a member that serves the kind exports its Service exactly like
// fleet.flotilla.dev/export; a member that serves ServiceImport receives one per exported
// namespace/name with the merged slices (merged.go); a member that serves ClusterProperty
// gets cluster.clusterset.k8s.io = its MemberCluster name. What a member serves is probed when
// it connects and every mcsProbeInterval after (a CRD installed later is picked up), never
// per reconcile.

// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=memberclusters,verbs=get;list;watch

// clusterIDProperty is the ClusterProperty holding a member's cluster ID (KEP-2149).
const clusterIDProperty = "cluster.clusterset.k8s.io"

// clusterPropertyGVK is ClusterProperty's kind (about.k8s.io; no Go module of it is served,
// so it is written unstructured).
var clusterPropertyGVK = schema.GroupVersionKind{Group: "about.k8s.io", Version: "v1alpha1", Kind: "ClusterProperty"}

// serviceExportMeta is the on-demand, metadata-only watch of a member's ServiceExports: it
// runs only in members that serve the kind (a registered watch of a kind a member does not
// serve would keep its cache from syncing). ServiceExports are few (one per export).
func serviceExportMeta() *metav1.PartialObjectMetadata {
	return metadataOf(mcsv1alpha1.SchemeGroupVersion.WithKind(mcsv1alpha1.ServiceExportKindName))
}

// mcsHolder is the demand holder of the ServiceExport watch.
const mcsHolder = "mcs"

// trimServiceExport keeps a ServiceExport's identity and creation time (the oldest export wins).
func trimServiceExport(in any) (any, error) {
	p, ok := in.(*metav1.PartialObjectMetadata)
	if !ok {
		return in, nil
	}
	out := &metav1.PartialObjectMetadata{TypeMeta: p.TypeMeta, ObjectMeta: identity(p)}
	out.UID = ""
	out.CreationTimestamp = p.CreationTimestamp
	return out, nil
}

// mcsKinds says which MCS kinds a member serves.
type mcsKinds struct {
	exports, imports, properties bool
}

// mcsMembers records what each connected member serves, as last probed.
type mcsMembers struct {
	mu    sync.Mutex
	kinds map[string]mcsKinds
}

func newMCSMembers() *mcsMembers { return &mcsMembers{kinds: map[string]mcsKinds{}} }

// of is what cluster serves as last probed (nothing before its first probe).
func (m *mcsMembers) of(cluster string) mcsKinds {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.kinds[cluster]
}

// set records k for cluster and says whether it changed.
func (m *mcsMembers) set(cluster string, k mcsKinds) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.kinds[cluster]
	m.kinds[cluster] = k
	return !ok || old != k
}

func (m *mcsMembers) forget(cluster string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.kinds, cluster)
}

// probeMCS asks a member's discovery which MCS kinds it serves: one small request per
// group version (ServedKinds), not the member's full discovery that a REST mapper fetches
// for every kind it does not know — on every probe of a member without MCS.
func probeMCS(members clusters.MemberAccess, cluster string) (mcsKinds, error) {
	mcs, err := members.ServedKinds(cluster, mcsv1alpha1.SchemeGroupVersion)
	if err != nil {
		return mcsKinds{}, err
	}
	about, err := members.ServedKinds(cluster, clusterPropertyGVK.GroupVersion())
	if err != nil {
		return mcsKinds{}, err
	}
	return mcsKinds{exports: mcs[mcsv1alpha1.ServiceExportKindName], imports: mcs[mcsv1alpha1.ServiceImportKindName],
		properties: about[clusterPropertyGVK.Kind]}, nil
}

// MCSMemberReconciler keeps what a member needs to speak MCS: the probe of what it serves,
// the ServiceExport watch where it serves that kind, and its ClusterProperty
// cluster.clusterset.k8s.io. Requests name a MemberCluster.
type MCSMemberReconciler struct {
	Client  client.Client
	Members clusters.MemberAccess
	// Interval between probes of a connected member.
	Interval time.Duration
	kinds    *mcsMembers
	// changed is called when what a member serves changed: exports must be reconciled.
	changed func(ctx context.Context, cluster string)
}

// Reconcile probes the member, demands its ServiceExport watch where it is served and writes
// its cluster ID. A paused member is probed but not written to.
func (r *MCSMemberReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cluster := req.Name
	mc := &fleetv1alpha1.MemberCluster{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: cluster}, mc); err != nil {
		if apierrors.IsNotFound(err) {
			r.kinds.forget(cluster)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	c, err := r.Members.Client(cluster)
	if err != nil {
		// Not connected: its connect event brings it back.
		r.kinds.forget(cluster)
		return ctrl.Result{}, nil
	}
	k, err := probeMCS(r.Members, cluster)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("probe MCS kinds of cluster %q: %w", cluster, err)
	}
	// Recorded before the watch is demanded: the watch's first events find exports served.
	// Demanded again after every probe: a reconnected member starts without the watch.
	changed := r.kinds.set(cluster, k)
	r.Members.Demand(cluster, serviceExportMeta(), mcsHolder, k.exports)
	if changed && r.changed != nil {
		r.changed(ctx, cluster)
	}
	if k.properties && !mc.Spec.Paused && mc.DeletionTimestamp.IsZero() {
		if err := writeClusterID(ctx, c, cluster); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: r.Interval}, nil
}

// writeClusterID makes the member's ClusterProperty cluster.clusterset.k8s.io hold its
// MemberCluster name. One written by someone else with another value is left alone (KEP-2149:
// a cluster ID does not change while the cluster is in the clusterset) and logged.
func writeClusterID(ctx context.Context, c client.Client, cluster string) error {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(clusterPropertyGVK)
	err := c.Get(ctx, types.NamespacedName{Name: clusterIDProperty}, live)
	switch {
	case apierrors.IsNotFound(err):
		p := &unstructured.Unstructured{}
		p.SetGroupVersionKind(clusterPropertyGVK)
		p.SetName(clusterIDProperty)
		p.SetLabels(map[string]string{fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue})
		if err := unstructured.SetNestedField(p.Object, cluster, "spec", "value"); err != nil {
			return err
		}
		if err := (countingWriter{Client: c, cluster: cluster}).Create(ctx, p); err != nil {
			return fmt.Errorf("create ClusterProperty %s in cluster %q: %w", clusterIDProperty, cluster, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("read ClusterProperty %s in cluster %q: %w", clusterIDProperty, cluster, err)
	}
	value, _, _ := unstructured.NestedString(live.Object, "spec", "value")
	if value == cluster {
		return nil
	}
	if live.GetLabels()[fleetv1alpha1.LabelManagedBy] != fleetv1alpha1.ManagedByValue {
		log.FromContext(ctx).Info("ClusterProperty written by someone else names another cluster ID; left untouched",
			"cluster", cluster, "property", clusterIDProperty)
		return nil
	}
	if err := unstructured.SetNestedField(live.Object, cluster, "spec", "value"); err != nil {
		return err
	}
	if err := (countingWriter{Client: c, cluster: cluster}).Update(ctx, live); err != nil {
		return fmt.Errorf("update ClusterProperty %s in cluster %q: %w", clusterIDProperty, cluster, err)
	}
	return nil
}

// serviceExportOf is the ServiceExport of nn in cluster from the member cache, or nil when
// there is none or the member does not serve the kind.
func (r *ExportReconciler) serviceExportOf(ctx context.Context, cluster string, nn types.NamespacedName) (*metav1.PartialObjectMetadata, error) {
	if !r.mcs.of(cluster).exports {
		return nil, nil
	}
	reader, err := r.Members.Reader(cluster)
	if err != nil {
		return nil, err
	}
	se := serviceExportMeta()
	if err := reader.Get(ctx, nn, se); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read ServiceExport %s in cluster %q: %w", nn, cluster, err)
	}
	return se, nil
}

// exportStatus is what a reconcile reports on its source's ServiceExport, per the MCS spec.
type exportStatus struct {
	// valid: the export is honoured; reason and message say why not otherwise.
	valid           bool
	reason, message string
	// conflict with the merged service of the namespace/name, if any.
	conflict *mirror.Conflict
}

// noService is the status of a ServiceExport whose Service does not exist.
func noService(req exportRequest) *exportStatus {
	return &exportStatus{reason: string(mcsv1alpha1.ServiceExportReasonNoService),
		message: fmt.Sprintf("Service %s/%s does not exist in cluster %q", req.Namespace, req.Name, req.Cluster)}
}

// writeServiceExportStatus sets the Valid, Ready and Conflict conditions of req's ServiceExport
// in its member, writing only when one changed. A ServiceExport that is gone needs none.
func (r *ExportReconciler) writeServiceExportStatus(ctx context.Context, req exportRequest, st *exportStatus) (bool, error) {
	c, err := r.writerFor(req.Cluster)
	if err != nil {
		return false, nil // disconnected: its connect event brings the export back
	}
	se := &mcsv1alpha1.ServiceExport{}
	if err := c.Get(ctx, req.NamespacedName, se); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return false, nil
		}
		return false, fmt.Errorf("read ServiceExport %s in cluster %q: %w", req.NamespacedName, req.Cluster, err)
	}
	conds := &se.Status.Conditions
	set := func(typ mcsv1alpha1.ServiceExportConditionType, s metav1.ConditionStatus, reason, msg string) bool {
		return meta.SetStatusCondition(conds, metav1.Condition{Type: string(typ), Status: s, Reason: reason,
			Message: truncate(msg), ObservedGeneration: se.Generation})
	}
	changed := false
	if st.valid {
		changed = set(mcsv1alpha1.ServiceExportConditionValid, metav1.ConditionTrue, string(mcsv1alpha1.ServiceExportReasonValid), "the Service is exported") || changed
		changed = set(mcsv1alpha1.ServiceExportConditionReady, metav1.ConditionTrue, string(mcsv1alpha1.ServiceExportReasonExported),
			"exported by Flotilla; the hub's ExportedService "+req.catalogName()+" says where it is mirrored") || changed
	} else {
		changed = set(mcsv1alpha1.ServiceExportConditionValid, metav1.ConditionFalse, st.reason, st.message) || changed
		changed = set(mcsv1alpha1.ServiceExportConditionReady, metav1.ConditionFalse, string(mcsv1alpha1.ServiceExportReasonFailed), st.message) || changed
	}
	if st.conflict != nil {
		changed = set(mcsv1alpha1.ServiceExportConditionConflict, metav1.ConditionTrue, st.conflict.Reason(), st.conflict.Message) || changed
	} else {
		changed = set(mcsv1alpha1.ServiceExportConditionConflict, metav1.ConditionFalse, string(mcsv1alpha1.ServiceExportReasonNoConflicts),
			"no other export of this namespace/name disagrees") || changed
	}
	if !changed {
		return false, nil
	}
	if err := c.Status().Update(ctx, se); err != nil {
		return false, fmt.Errorf("update status of ServiceExport %s in cluster %q: %w", req.NamespacedName, req.Cluster, err)
	}
	return true, nil
}

// maxConditionMessage bounds a condition message written into a member.
const maxConditionMessage = 1024

func truncate(msg string) string { return status.Truncate(msg, maxConditionMessage) }
