package propagation

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/flotilla-dev/flotilla/clusters"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/status"
)

// setupBinding adds the BaselineBinding controller: a binding is reconciled when it or its
// Baseline's spec changes, when its MemberCluster changes what a binding reads (not a heartbeat) or (dis)connects, when an object it applied
// changes in the member (found by its labels), and when a member's Namespaces change (the
// perNamespace fan-out). Bindings of different members reconcile in parallel.
func setupBinding(mgr ctrl.Manager, access clusters.MemberAccess, sources *sourceReader, opts SetupOptions) error {
	hub := mgr.GetClient()
	// A member object event maps, by its labels, to the binding that applied it.
	kindSource, kinds := access.KindSource(func(_ context.Context, cluster string, o client.Object) []reconcile.Request {
		baseline := o.GetLabels()[fleetv1alpha1.LabelBaseline]
		if baseline == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: fleetv1alpha1.BindingName(baseline, cluster)}}}
	})
	bindingsOfCluster := func(ctx context.Context, cluster string) []reconcile.Request {
		return requestsFor(ctx, hub, &fleetv1alpha1.BaselineBindingList{}, client.MatchingLabels{fleetv1alpha1.LabelCluster: cluster})
	}
	bindingsOfBaseline := func(ctx context.Context, o client.Object) []reconcile.Request {
		return requestsFor(ctx, hub, &fleetv1alpha1.BaselineBindingList{}, client.MatchingLabels{fleetv1alpha1.LabelBaseline: o.GetName()})
	}
	r := &BindingReconciler{Client: hub, Sources: sources, Members: access, Kinds: kinds,
		Slots:    clusters.NewMemberSlots(opts.MaxConcurrentPerMember),
		Recorder: status.Events(mgr.GetEventRecorder("flotilla-propagation")), Resync: opts.Resync, Limits: opts.Limits,
		waiters: newMemberWaiters()}
	return ctrl.NewControllerManagedBy(mgr).
		Named("baselinebinding").
		// Not on its own status writes: each would bring one more reconcile that finds
		// nothing to do. Its spec (the revision released to it) and its deletion bump the
		// generation.
		For(&fleetv1alpha1.BaselineBinding{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Only a changed spec (or deletion, which bumps the generation too) concerns the
		// bindings; the Baseline's status changes with every binding's, and would otherwise
		// reconcile all of them on each.
		Watches(&fleetv1alpha1.Baseline{}, handler.EnqueueRequestsFromMapFunc(bindingsOfBaseline),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Only what a binding reads of its member (labels, spec, readiness, credentials), so
		// that a status heartbeat enqueues no binding.
		Watches(&fleetv1alpha1.MemberCluster{}, handler.EnqueueRequestsFromMapFunc(
			func(ctx context.Context, o client.Object) []reconcile.Request {
				return bindingsOfCluster(ctx, o.GetName())
			}), builder.WithPredicates(clusters.MemberStateChanged())).
		WatchesRawSource(kindSource).
		WatchesRawSource(access.WatchSource(namespaceMeta(), func(ctx context.Context, cluster string, _ client.Object) []reconcile.Request {
			return bindingsOfCluster(ctx, cluster)
		})).
		WatchesRawSource(access.ConnectionSource(bindingsOfCluster)).
		// No events: it hands the waiters the queue into which bindings waiting for a slot
		// of their member are woken.
		WatchesRawSource(source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
			r.waiters.setQueue(q)
			return nil
		})).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentApplies}).
		Complete(r)
}
