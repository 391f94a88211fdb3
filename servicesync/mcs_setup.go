package servicesync

import (
	"context"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
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
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/flotilla-dev/flotilla/clusters"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/requeue"
)

// setupMCSKinds makes the MCS kinds known to the manager's scheme, which the member clients
// share (ServiceExport status and ServiceImports are written typed), and registers the
// on-demand ServiceExport watch.
func setupMCSKinds(mgr ctrl.Manager, access clusters.MemberAccess) error {
	if !mgr.GetScheme().IsGroupRegistered(mcsv1alpha1.GroupName) {
		if err := mcsv1alpha1.Install(mgr.GetScheme()); err != nil {
			return fmt.Errorf("set up service sync: register MCS kinds: %w", err)
		}
	}
	return access.RegisterOnDemand(serviceExportMeta(), cache.ByObject{Label: labels.Everything(), Transform: trimServiceExport})
}

// setupMCSMembers adds the controller that probes members for MCS kinds and writes their
// cluster IDs: on every connect, when a member is unpaused, and every interval.
func setupMCSMembers(mgr ctrl.Manager, access clusters.MemberAccess, r *ExportReconciler, m *mapper, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Minute
	}
	mr := &MCSMemberReconciler{Client: mgr.GetClient(), Members: access, Interval: interval, kinds: r.mcs,
		changed: func(ctx context.Context, _ string) { r.work.add(m.exports(ctx, nil)) }}
	err := ctrl.NewControllerManagedBy(mgr).
		Named("mcsmember").
		WithOptions(controller.Options{RateLimiter: requeue.Limiter[reconcile.Request]()}).
		WatchesRawSource(access.ConnectionSource(func(_ context.Context, cluster string) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: cluster}}}
		})).
		Watches(&fleetv1alpha1.MemberCluster{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(event.CreateEvent) bool { return false }, // its connect event follows
			UpdateFunc: func(e event.UpdateEvent) bool {
				old, okOld := e.ObjectOld.(*fleetv1alpha1.MemberCluster)
				mc, okNew := e.ObjectNew.(*fleetv1alpha1.MemberCluster)
				return okOld && okNew && old.Spec.Paused != mc.Spec.Paused
			},
			DeleteFunc:  func(event.DeleteEvent) bool { return true },
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).
		Complete(mr)
	if err != nil {
		return fmt.Errorf("set up MCS member controller: %w", err)
	}
	return nil
}

// exportRequested is the export predicate of a Service (metadata): the export annotation, or
// a ServiceExport of the same name in a member that serves the kind (from the member cache).
func (m *mapper) exportRequested(ctx context.Context, cluster string, svc client.Object) bool {
	return m.exportRequestedKey(ctx, cluster, client.ObjectKeyFromObject(svc), svc)
}

// exportRequestedKey is exportRequested of the Service key, whose metadata svc may be nil
// (not held by the cache).
func (m *mapper) exportRequestedKey(ctx context.Context, cluster string, key types.NamespacedName, svc client.Object) bool {
	if svc != nil && svc.GetAnnotations()[fleetv1alpha1.AnnotationExport] == "true" {
		return true
	}
	if m.mcs == nil || !m.mcs.of(cluster).exports {
		return false
	}
	reader, err := m.members.Reader(cluster)
	if err != nil {
		return false
	}
	return reader.Get(ctx, key, serviceExportMeta()) == nil
}

// serviceExport maps a ServiceExport to the export of its Service (created, changed or
// deleted: the reconcile finds out which).
func (m *mapper) serviceExport(cluster string, o client.Object) []exportRequest {
	req := exportRequest{Cluster: cluster, NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}}
	m.dirty.mark(req)
	return []exportRequest{req}
}

// siblings maps a catalog entry to the other exports of its namespace/name: they merge it.
func (m *mapper) siblings(ctx context.Context, o client.Object) []exportRequest {
	es, ok := o.(*fleetv1alpha1.ExportedService)
	if !ok {
		return nil
	}
	src := es.Spec.Source
	list := &fleetv1alpha1.ExportedServiceList{}
	if err := m.hub.List(ctx, list, client.MatchingFields{sourceNameIndex: sourceNameOf(src.Namespace, src.Name)}); err != nil {
		log.FromContext(ctx).Error(err, "list ExportedServices", "namespace", src.Namespace, "name", src.Name)
		return nil
	}
	var reqs []exportRequest
	for i := range list.Items {
		if list.Items[i].Spec.Source.Cluster != src.Cluster {
			reqs = append(reqs, requestFor(&list.Items[i]))
		}
	}
	return reqs
}

// mergeInputChanged passes a catalog entry created, deleted, or changed in what the merge of
// its namespace/name reads (fleetServiceOf): its ports, type, age, global flag, reach and
// validity. Other status writes (endpoint counts, conditions of its own) pass nothing.
func mergeInputChanged() predicate.TypedPredicate[client.Object] {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			old, okOld := e.ObjectOld.(*fleetv1alpha1.ExportedService)
			es, okNew := e.ObjectNew.(*fleetv1alpha1.ExportedService)
			if !okOld || !okNew {
				return false
			}
			a, b := &old.Status, &es.Status
			return mergeable(old) != mergeable(es) || a.Headless != b.Headless || a.Global != b.Global ||
				!equality.Semantic.DeepEqual(a.Ports, b.Ports) || !equality.Semantic.DeepEqual(a.ExportedSince, b.ExportedSince) ||
				!slices.Equal(a.MirroredInto, b.MirroredInto)
		},
	}
}
