package propagation

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flotilla-dev/flotilla/clusters"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// SetupOptions configure propagation.
type SetupOptions struct {
	// HubNamespace is where ConfigMap and Secret sources are read.
	HubNamespace string
	// Resync is the backstop period of a binding's drift check (jittered ±10%).
	Resync time.Duration
	// MaxConcurrentApplies bounds how many members are applied to at once.
	MaxConcurrentApplies int
}

// sourceRefIndex indexes Baselines by "ConfigMap/<name>" and "Secret/<name>" of their sources.
const sourceRefIndex = "spec.sourceRefs"

// Setup adds the Baseline and BaselineBinding controllers to mgr. Members are reached only
// through access; watches on members are registered here, before the manager starts.
func Setup(mgr ctrl.Manager, access clusters.MemberAccess, opts SetupOptions) error {
	if opts.Resync <= 0 {
		opts.Resync = 10 * time.Minute
	}
	if opts.MaxConcurrentApplies <= 0 {
		opts.MaxConcurrentApplies = 8
	}
	// Every Namespace of every member, for the perNamespace fan-out (new namespaces included).
	if err := access.RegisterWatch(&corev1.Namespace{}, cache.ByObject{Label: labels.Everything()}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &fleetv1alpha1.Baseline{}, sourceRefIndex, sourceRefs); err != nil {
		return err
	}
	sources := &sourceReader{cache: mgr.GetClient(), apiReader: mgr.GetAPIReader(), hubNamespace: opts.HubNamespace}
	recorder := mgr.GetEventRecorder("flotilla-propagation")
	hub := mgr.GetClient()

	inHubNamespace := builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == opts.HubNamespace
	}))
	baselinesForSource := func(kind string) handler.MapFunc {
		return func(ctx context.Context, o client.Object) []reconcile.Request {
			list := &fleetv1alpha1.BaselineList{}
			if err := hub.List(ctx, list, client.MatchingFields{sourceRefIndex: kind + "/" + o.GetName()}); err != nil {
				log.FromContext(ctx).Error(err, "list Baselines for source", "source", kind+"/"+o.GetName())
				return nil
			}
			return baselineRequests(list)
		}
	}
	allBaselines := func(ctx context.Context, _ client.Object) []reconcile.Request {
		list := &fleetv1alpha1.BaselineList{}
		if err := hub.List(ctx, list); err != nil {
			log.FromContext(ctx).Error(err, "list Baselines")
			return nil
		}
		return baselineRequests(list)
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("baseline").
		For(&fleetv1alpha1.Baseline{}).
		Owns(&fleetv1alpha1.BaselineBinding{}).
		Watches(&fleetv1alpha1.MemberCluster{}, handler.EnqueueRequestsFromMapFunc(allBaselines)).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(baselinesForSource("ConfigMap")), inHubNamespace).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(baselinesForSource("Secret")), inHubNamespace).
		Complete(&BaselineReconciler{Client: hub, Sources: sources, Recorder: recorder}); err != nil {
		return fmt.Errorf("set up Baseline controller: %w", err)
	}

	// A member object event maps, by its labels, to the binding that applied it.
	kindSource, kinds := access.KindSource(func(_ context.Context, cluster string, o client.Object) []reconcile.Request {
		baseline := o.GetLabels()[fleetv1alpha1.LabelBaseline]
		if baseline == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: fleetv1alpha1.BindingName(baseline, cluster)}}}
	})
	bindingsOfCluster := func(ctx context.Context, cluster string) []reconcile.Request {
		list := &fleetv1alpha1.BaselineBindingList{}
		if err := hub.List(ctx, list, client.MatchingLabels{fleetv1alpha1.LabelCluster: cluster}); err != nil {
			log.FromContext(ctx).Error(err, "list bindings of cluster", "cluster", cluster)
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, bb := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: bb.Name}})
		}
		return reqs
	}
	bindingsOfBaseline := func(ctx context.Context, o client.Object) []reconcile.Request {
		list := &fleetv1alpha1.BaselineBindingList{}
		if err := hub.List(ctx, list, client.MatchingLabels{fleetv1alpha1.LabelBaseline: o.GetName()}); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, bb := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: bb.Name}})
		}
		return reqs
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("baselinebinding").
		For(&fleetv1alpha1.BaselineBinding{}).
		Watches(&fleetv1alpha1.Baseline{}, handler.EnqueueRequestsFromMapFunc(bindingsOfBaseline)).
		Watches(&fleetv1alpha1.MemberCluster{}, handler.EnqueueRequestsFromMapFunc(
			func(ctx context.Context, o client.Object) []reconcile.Request {
				return bindingsOfCluster(ctx, o.GetName())
			})).
		WatchesRawSource(kindSource).
		WatchesRawSource(access.WatchSource(&corev1.Namespace{}, func(ctx context.Context, cluster string, _ client.Object) []reconcile.Request {
			return bindingsOfCluster(ctx, cluster)
		})).
		WatchesRawSource(access.ConnectionSource(bindingsOfCluster)).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentApplies}).
		Complete(&BindingReconciler{Client: hub, Sources: sources, Members: access, Kinds: kinds, Recorder: recorder, Resync: opts.Resync})
}

func sourceRefs(o client.Object) []string {
	b := o.(*fleetv1alpha1.Baseline)
	all := append([]fleetv1alpha1.ResourceSource(nil), b.Spec.Resources...)
	if b.Spec.PerNamespace != nil {
		all = append(all, b.Spec.PerNamespace.Resources...)
	}
	var refs []string
	for _, s := range all {
		if s.ConfigMapRef != nil {
			refs = append(refs, "ConfigMap/"+s.ConfigMapRef.Name)
		}
		if s.SecretRef != nil {
			refs = append(refs, "Secret/"+s.SecretRef.Name)
		}
	}
	return refs
}

func baselineRequests(list *fleetv1alpha1.BaselineList) []reconcile.Request {
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, b := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: b.Name}})
	}
	return reqs
}
