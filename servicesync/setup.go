package servicesync

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flotilla-dev/flotilla/clusters"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// SetupOptions configure service sync.
type SetupOptions struct {
	// StaleWindow: a disconnected source's mirrors keep ready endpoints this long.
	StaleWindow time.Duration
	// AllowSystemNamespaces permits exports from kube-system, kube-public, kube-node-lease.
	AllowSystemNamespaces bool
	// MaxConcurrentSyncs bounds how many exported Services are synced at once.
	MaxConcurrentSyncs int
}

// Setup adds the export controller to mgr and registers what it watches in members:
// Services, EndpointSlices and Nodes (every one: an export is an annotation, which no
// selector can pick), Namespaces, and the Endpoints Flotilla wrote.
func Setup(mgr ctrl.Manager, access clusters.MemberAccess, opts SetupOptions) error {
	if opts.StaleWindow <= 0 {
		opts.StaleWindow = time.Minute
	}
	if opts.MaxConcurrentSyncs <= 0 {
		opts.MaxConcurrentSyncs = 8
	}
	everything := cache.ByObject{Label: labels.Everything()}
	for _, obj := range []client.Object{&corev1.Service{}, &discoveryv1.EndpointSlice{}, &corev1.Node{}, &corev1.Namespace{}} {
		if err := access.RegisterWatch(obj, everything); err != nil {
			return err
		}
	}
	// Endpoints only as mirrors (the dynamic default scope: managed-by flotilla).
	if err := access.RegisterWatch(&corev1.Endpoints{}, cache.ByObject{}); err != nil {
		return err
	}
	hub := mgr.GetClient()
	r := &ExportReconciler{Client: hub, Members: access, StaleWindow: opts.StaleWindow,
		AllowSystemNamespaces: opts.AllowSystemNamespaces, dirty: newDirtyTimes()}

	request := func(cluster, ns, name string) reconcile.Request {
		return reconcile.Request{NamespacedName: types.NamespacedName{Name: fleetv1alpha1.ExportedServiceName(cluster, ns, name)}}
	}
	// A mirror maps, by its labels, to its source; anything else to itself as a source.
	bySource := func(cluster string, o client.Object, serviceName string) []reconcile.Request {
		l := o.GetLabels()
		if c := l[fleetv1alpha1.LabelSourceCluster]; c != "" {
			reqs := []reconcile.Request{request(c, l[fleetv1alpha1.LabelSourceNamespace], l[fleetv1alpha1.LabelSourceName])}
			if serviceName != "" && o.GetAnnotations()[fleetv1alpha1.AnnotationExport] == "true" {
				// Someone annotated a mirror: its own reconcile reports why it is not exported.
				reqs = append(reqs, request(cluster, o.GetNamespace(), serviceName))
			}
			return reqs
		}
		if serviceName == "" {
			return nil
		}
		r.dirty.mark(fleetv1alpha1.ExportedServiceName(cluster, o.GetNamespace(), serviceName))
		return []reconcile.Request{request(cluster, o.GetNamespace(), serviceName)}
	}
	allExports := func(ctx context.Context, match func(*fleetv1alpha1.ExportedService) bool) []reconcile.Request {
		list := &fleetv1alpha1.ExportedServiceList{}
		if err := hub.List(ctx, list); err != nil {
			log.FromContext(ctx).Error(err, "list ExportedServices")
			return nil
		}
		var reqs []reconcile.Request
		for i := range list.Items {
			if match == nil || match(&list.Items[i]) {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
			}
		}
		return reqs
	}

	err := ctrl.NewControllerManagedBy(mgr).
		Named("exportedservice").
		For(&fleetv1alpha1.ExportedService{}).
		Watches(&fleetv1alpha1.MemberCluster{}, handler.EnqueueRequestsFromMapFunc(
			func(ctx context.Context, _ client.Object) []reconcile.Request { return allExports(ctx, nil) })).
		WatchesRawSource(access.WatchSource(&corev1.Service{}, func(_ context.Context, cluster string, o client.Object) []reconcile.Request {
			return bySource(cluster, o, o.GetName())
		})).
		WatchesRawSource(access.WatchSource(&discoveryv1.EndpointSlice{}, func(_ context.Context, cluster string, o client.Object) []reconcile.Request {
			return bySource(cluster, o, o.GetLabels()[discoveryv1.LabelServiceName])
		})).
		WatchesRawSource(access.WatchSource(&corev1.Endpoints{}, func(_ context.Context, cluster string, o client.Object) []reconcile.Request {
			return bySource(cluster, o, "")
		})).
		WatchesRawSource(access.WatchSource(&corev1.Node{}, func(ctx context.Context, cluster string, _ client.Object) []reconcile.Request {
			return allExports(ctx, func(es *fleetv1alpha1.ExportedService) bool { return es.Spec.Source.Cluster == cluster })
		})).
		WatchesRawSource(access.WatchSource(&corev1.Namespace{}, func(ctx context.Context, _ string, o client.Object) []reconcile.Request {
			return allExports(ctx, func(es *fleetv1alpha1.ExportedService) bool { return es.Spec.Source.Namespace == o.GetName() })
		})).
		WatchesRawSource(access.ConnectionSource(func(ctx context.Context, _ string) []reconcile.Request { return allExports(ctx, nil) })).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentSyncs}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("set up service sync: %w", err)
	}
	return nil
}
