package servicesync

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/flotilla-dev/flotilla/clusters"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=exportedservices,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=exportedservices/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=fleet.flotilla.dev,resources=memberclusters,verbs=get;list;watch

// ExportReconciler keeps the mirrors of one exported Service — a selectorless Service,
// Endpoints and EndpointSlices named <service>-<cluster> — in every other selected member,
// and its ExportedService catalog entry on the hub. The request names the source:
// ExportedServiceName(cluster, namespace, service).
type ExportReconciler struct {
	Client  client.Client
	Members clusters.MemberAccess
	// StaleWindow is how long a disconnected source's mirrors keep their endpoints ready.
	StaleWindow time.Duration
	// AllowSystemNamespaces lets kube-system, kube-public and kube-node-lease be exported.
	AllowSystemNamespaces bool
	// dirty records when a source change was seen, for the propagation latency metric.
	dirty *dirtyTimes
}

// source identifies one exported Service.
type source struct{ cluster, namespace, name string }

func (s source) key() string {
	return fleetv1alpha1.ExportedServiceName(s.cluster, s.namespace, s.name)
}
func (s source) String() string {
	return s.cluster + "/" + s.namespace + "/" + s.name
}

// sourceOf reads a request key. Cluster, namespace and Service names are DNS labels, so
// the dotted key splits unambiguously; it is our own key, never a member object's name.
func sourceOf(req ctrl.Request) (source, bool) {
	parts := strings.Split(req.Name, ".")
	if len(parts) != 3 {
		return source{}, false
	}
	return source{cluster: parts[0], namespace: parts[1], name: parts[2]}, true
}

// Reconcile makes the mirrors of one source match it.
func (r *ExportReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	src, ok := sourceOf(req)
	if !ok {
		return ctrl.Result{}, nil
	}
	es := &fleetv1alpha1.ExportedService{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: src.key()}, es); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		es = nil
	}

	mc := &fleetv1alpha1.MemberCluster{}
	err := r.Client.Get(ctx, types.NamespacedName{Name: src.cluster}, mc)
	switch {
	case apierrors.IsNotFound(err) || (err == nil && !mc.DeletionTimestamp.IsZero()):
		// The source member was unregistered: its mirrors go everywhere.
		return ctrl.Result{}, r.unexport(ctx, src, es)
	case err != nil:
		return ctrl.Result{}, err
	}

	reader, err := r.Members.Reader(src.cluster)
	if errors.Is(err, clusters.ErrNotConnected) {
		return r.sourceUnreachable(ctx, src, mc, es)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	svc := &corev1.Service{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: src.namespace, Name: src.name}, svc); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.unexport(ctx, src, es)
		}
		return ctrl.Result{}, err
	}
	exp, exported, err := mirror.ParseExport(svc, r.AllowSystemNamespaces)
	if !exported && err == nil {
		return ctrl.Result{}, r.unexport(ctx, src, es)
	}
	if err != nil {
		// Hostile or mistaken input: report it, write nothing into any member, and remove
		// mirrors an earlier valid export left behind.
		if rerr := r.removeMirrors(ctx, src, nil); rerr != nil {
			return ctrl.Result{}, rerr
		}
		return ctrl.Result{}, r.report(ctx, src, es, func(st *fleetv1alpha1.ExportedServiceStatus) {
			*st = fleetv1alpha1.ExportedServiceStatus{Conditions: st.Conditions}
			setSynced(st, metav1.ConditionFalse, fleetv1alpha1.ReasonInvalidExport, err.Error())
		})
	}

	in, err := r.sourceInput(ctx, reader, src, svc, exp.Mode, false)
	if err != nil {
		return ctrl.Result{}, err
	}
	res, err := mirror.Resolve(in, exp.Mode)
	if err != nil {
		if rerr := r.removeMirrors(ctx, src, nil); rerr != nil {
			return ctrl.Result{}, rerr
		}
		return ctrl.Result{}, r.report(ctx, src, es, func(st *fleetv1alpha1.ExportedServiceStatus) {
			*st = fleetv1alpha1.ExportedServiceStatus{Conditions: st.Conditions}
			setSynced(st, metav1.ConditionFalse, fleetv1alpha1.ReasonInvalidExport, err.Error())
		})
	}
	return r.sync(ctx, src, es, exp, in, res)
}

// sync writes the mirrors into every target and removes them from members no longer targeted.
func (r *ExportReconciler) sync(ctx context.Context, src source, es *fleetv1alpha1.ExportedService, exp *mirror.Export,
	in mirror.Source, res *mirror.Resolved) (ctrl.Result, error) {
	targets, err := r.targets(ctx, src, exp)
	if err != nil {
		return ctrl.Result{}, err
	}
	var mirrored []string
	var conflicts []fleetv1alpha1.MirrorConflict
	var errs []error
	wrote := false
	for _, t := range targets {
		w, conflict, err := r.writeMirror(ctx, t, in, res)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("mirror %s into cluster %q: %w", src, t, err))
		case conflict != "":
			conflicts = append(conflicts, fleetv1alpha1.MirrorConflict{Cluster: t, Message: conflict})
		default:
			mirrored = append(mirrored, t)
		}
		wrote = wrote || w
	}
	if err := r.removeMirrors(ctx, src, targets); err != nil {
		errs = append(errs, err)
	}
	if wrote {
		r.dirty.observe(src.key())
	}
	exportMirrors.WithLabelValues(src.String()).Set(float64(len(mirrored)))
	exportConflicts.WithLabelValues(src.String()).Set(float64(len(conflicts)))
	if err := r.report(ctx, src, es, func(st *fleetv1alpha1.ExportedServiceStatus) {
		fillStatus(st, exp, res, mirrored, conflicts)
	}); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return ctrl.Result{}, errors.Join(errs...)
	}
	return ctrl.Result{}, nil
}

// sourceUnreachable keeps the mirrors of a disconnected source; after the stale window
// their endpoints are marked not ready, so clients stop picking them, and a requeue
// brings them back when the source returns (its connect event).
func (r *ExportReconciler) sourceUnreachable(ctx context.Context, src source, mc *fleetv1alpha1.MemberCluster, es *fleetv1alpha1.ExportedService) (ctrl.Result, error) {
	if es == nil {
		return ctrl.Result{}, nil // nothing was ever mirrored
	}
	since := disconnectedSince(mc)
	if wait := r.StaleWindow - time.Since(since); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	var errs []error
	for _, t := range r.Members.Connected() {
		if t == src.cluster {
			continue
		}
		if err := r.markStale(ctx, t, src); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.report(ctx, src, es, func(st *fleetv1alpha1.ExportedServiceStatus) {
		st.ReadyEndpoints = 0
		setSynced(st, metav1.ConditionFalse, fleetv1alpha1.ReasonClusterUnreachable, fmt.Sprintf(
			"source cluster %q unreachable since %s: mirrors kept with their endpoints marked not ready", src.cluster, since.UTC().Format(time.RFC3339)))
	}); err != nil {
		errs = append(errs, err)
	}
	return ctrl.Result{}, errors.Join(errs...)
}

// disconnectedSince is when the member's Connected condition last turned non-True.
func disconnectedSince(mc *fleetv1alpha1.MemberCluster) time.Time {
	if c := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionConnected); c != nil && c.Status != metav1.ConditionTrue {
		return c.LastTransitionTime.Time
	}
	// Connected per the hub but not (yet) in this process: a restart; not stale.
	return time.Now()
}

// unexport removes every mirror of src and its catalog entry.
func (r *ExportReconciler) unexport(ctx context.Context, src source, es *fleetv1alpha1.ExportedService) error {
	if err := r.removeMirrors(ctx, src, nil); err != nil {
		return err
	}
	exportMirrors.DeleteLabelValues(src.String())
	exportConflicts.DeleteLabelValues(src.String())
	if es != nil {
		if err := r.Client.Delete(ctx, es); client.IgnoreNotFound(err) != nil {
			return err
		}
		log.FromContext(ctx).Info("unexported", "source", src.String())
	}
	return nil
}

// sourceInput collects what the mirrors depend on from the source member's cache.
func (r *ExportReconciler) sourceInput(ctx context.Context, reader client.Reader, src source, svc *corev1.Service,
	mode fleetv1alpha1.AddressMode, stale bool) (mirror.Source, error) {
	in := mirror.Source{Cluster: src.cluster, Service: svc, Stale: stale}
	slices := &discoveryv1.EndpointSliceList{}
	if err := reader.List(ctx, slices, client.InNamespace(src.namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: src.name}); err != nil {
		return in, fmt.Errorf("list EndpointSlices of %s: %w", src, err)
	}
	for _, s := range slices.Items {
		if s.Labels[fleetv1alpha1.LabelSourceCluster] == "" { // never a mirror's slice
			in.Slices = append(in.Slices, s)
		}
	}
	if mode == fleetv1alpha1.AddressModeNodePort || mode == fleetv1alpha1.AddressModeAuto {
		nodes := &corev1.NodeList{}
		if err := reader.List(ctx, nodes); err != nil {
			return in, fmt.Errorf("list Nodes of cluster %q: %w", src.cluster, err)
		}
		in.Nodes = nodes.Items
	}
	return in, nil
}

// targets are the connected members, other than the source, selected by export-to, where
// the source's namespace exists.
func (r *ExportReconciler) targets(ctx context.Context, src source, exp *mirror.Export) ([]string, error) {
	list := &fleetv1alpha1.MemberClusterList{}
	if err := r.Client.List(ctx, list); err != nil {
		return nil, err
	}
	connected := map[string]bool{}
	for _, c := range r.Members.Connected() {
		connected[c] = true
	}
	var out []string
	for _, mc := range list.Items {
		if mc.Name == src.cluster || !connected[mc.Name] || !mc.DeletionTimestamp.IsZero() {
			continue
		}
		if exp.ExportTo != nil && !exp.ExportTo.Matches(labels.Set(mc.Labels)) {
			continue
		}
		reader, err := r.Members.Reader(mc.Name)
		if err != nil {
			continue
		}
		if err := reader.Get(ctx, types.NamespacedName{Name: src.namespace}, &corev1.Namespace{}); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, err
		}
		out = append(out, mc.Name)
	}
	sort.Strings(out)
	return out, nil
}

func (r *ExportReconciler) report(ctx context.Context, src source, es *fleetv1alpha1.ExportedService, fill func(*fleetv1alpha1.ExportedServiceStatus)) error {
	if es == nil {
		es = &fleetv1alpha1.ExportedService{
			ObjectMeta: metav1.ObjectMeta{Name: src.key(), Labels: map[string]string{fleetv1alpha1.LabelCluster: src.cluster}},
			Spec:       fleetv1alpha1.ExportedServiceSpec{Source: fleetv1alpha1.ServiceReference{Cluster: src.cluster, Namespace: src.namespace, Name: src.name}},
		}
		if err := r.Client.Create(ctx, es); err != nil {
			return fmt.Errorf("create ExportedService %s: %w", src.key(), err)
		}
	}
	before := es.Status.DeepCopy()
	fill(&es.Status)
	es.Status.ObservedGeneration = es.Generation
	if equality.Semantic.DeepEqual(before, &es.Status) {
		return nil
	}
	base := es.DeepCopy()
	base.Status = *before
	if err := r.Client.Status().Patch(ctx, es, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("update status of ExportedService %s: %w", src.key(), err)
	}
	return nil
}

func fillStatus(st *fleetv1alpha1.ExportedServiceStatus, exp *mirror.Export, res *mirror.Resolved, mirrored []string, conflicts []fleetv1alpha1.MirrorConflict) {
	st.AddressMode = res.Mode
	st.ExportTo = exp.ExportToText
	st.Ports = nil
	for _, p := range res.Ports {
		st.Ports = append(st.Ports, fleetv1alpha1.ExportedPort{Name: p.Name, Protocol: p.Protocol, Port: p.Port})
	}
	st.Endpoints, st.ReadyEndpoints = int32(len(res.Endpoints)), 0
	for _, e := range res.Endpoints {
		if e.Ready {
			st.ReadyEndpoints++
		}
	}
	st.MirroredInto = mirrored
	st.Refused = res.Refused
	st.Conflicts = conflicts
	switch {
	case len(conflicts) > 0:
		msgs := make([]string, 0, len(conflicts))
		for _, c := range conflicts {
			msgs = append(msgs, c.Cluster+": "+c.Message)
		}
		setSynced(st, metav1.ConditionFalse, fleetv1alpha1.ReasonNameClash, strings.Join(msgs, "; "))
	case len(res.Refused) > 0:
		setSynced(st, metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, fmt.Sprintf("mirrored into %d members; refused addresses: %s",
			len(mirrored), strings.Join(res.Refused, ", ")))
	default:
		setSynced(st, metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, fmt.Sprintf("mirrored into %d members", len(mirrored)))
	}
}

func setSynced(st *fleetv1alpha1.ExportedServiceStatus, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: fleetv1alpha1.ConditionSynced, Status: status, Reason: reason, Message: msg})
}
