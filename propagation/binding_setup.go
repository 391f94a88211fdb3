package propagation

import (
	"context"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
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

// setupBinding adds the BaselineBinding controller: a binding is reconciled when it or its
// Baseline's spec changes, when its MemberCluster changes what a binding reads (not a heartbeat) or (dis)connects, when an object it applied
// changes in the member (found by its labels), and when a member's Namespaces change (the
// perNamespace fan-out, and bindings that wait for a Namespace). Bindings of different members reconcile in parallel.
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
		// A changed spec concerns the bindings once the Baseline controller has taken it in
		// (baselineObserved); the Baseline's status changes with every binding's, and would
		// otherwise reconcile all of them on each.
		Watches(&fleetv1alpha1.Baseline{}, handler.EnqueueRequestsFromMapFunc(bindingsOfBaseline),
			builder.WithPredicates(baselineObserved())).
		// Only what a binding reads of its member (labels, spec, readiness, credentials), so
		// that a status heartbeat enqueues no binding.
		Watches(&fleetv1alpha1.MemberCluster{}, handler.EnqueueRequestsFromMapFunc(
			func(ctx context.Context, o client.Object) []reconcile.Request {
				return bindingsOfCluster(ctx, o.GetName())
			}), builder.WithPredicates(clusters.MemberStateChanged())).
		WatchesRawSource(kindSource).
		WatchesRawSource(access.WatchSource(namespaceMeta(), func(ctx context.Context, cluster string, _ client.Object) []reconcile.Request {
			return bindingsNeedingNamespaces(ctx, hub, cluster)
		})).
		WatchesRawSource(access.ConnectionSource(bindingsOfCluster)).
		// No events: it hands the waiters the queue into which bindings waiting for a slot
		// of their member are woken, and the sources the queue into which the bindings of a
		// Baseline are put as soon as it renders a new revision (a Baseline that releases at
		// once applies it without waiting for the release: releasedAtOnce).
		WatchesRawSource(source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
			r.waiters.setQueue(q)
			sources.onNewRevision(func(b *fleetv1alpha1.Baseline) {
				if !releasedAtOnce(b) {
					return // its bindings wait for their release
				}
				for _, req := range requestsFor(ctx, hub, &fleetv1alpha1.BaselineBindingList{}, client.MatchingLabels{fleetv1alpha1.LabelBaseline: b.Name}) {
					q.Add(req)
				}
			})
			return nil
		})).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentApplies, RateLimiter: requeue.Limiter[reconcile.Request]()}).
		Complete(r)
}

// baselineObserved passes the Baseline events that concern its bindings: a spec the Baseline
// controller has reconciled (status.observedGeneration moved) that kept the revision — a
// change of policy, pausing, conflict or deletion policy — or that pauses or unpauses it,
// and a deletion. Not the spec change itself: a binding reconciled before the Baseline
// controller has rendered the new spec finds its Baseline at a revision it was not released
// yet, writes "waiting for the rollout" to its status and holds its worker and member slot
// while the release comes, which then waits for it. A new revision brings the bindings it
// is released to by their own spec (the release); those it is not released to yet have
// nothing new to do.
func baselineObserved() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false }, // its bindings do not exist yet
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			old, ok1 := e.ObjectOld.(*fleetv1alpha1.Baseline)
			b, ok2 := e.ObjectNew.(*fleetv1alpha1.Baseline)
			if !ok1 || !ok2 {
				return true
			}
			if old.Status.ObservedGeneration == b.Status.ObservedGeneration {
				return false
			}
			// The spec's own update event came first, so old already holds the new spec: a
			// pause is told by the new spec, an unpause by the old status.
			return old.Status.Revision == b.Status.Revision || b.Spec.Paused || wasPaused(old)
		},
	}
}

// wasPaused tells whether the Baseline controller last reported b paused.
func wasPaused(b *fleetv1alpha1.Baseline) bool {
	c := meta.FindStatusCondition(b.Status.Conditions, fleetv1alpha1.ConditionProgressing)
	return c != nil && c.Reason == fleetv1alpha1.ReasonPaused
}

// bindingsNeedingNamespaces are the bindings of cluster that a change of its Namespaces
// concerns: those whose Baseline fans out into namespaces (perNamespace), and those not
// applied (their objects may wait for a Namespace to appear). Not the others: a member's
// Namespaces change often (each one that terminates changes its status several times), and
// every such event would hold all of the member's bindings in a full reconcile, which a
// drift event or a new revision of any of them then waits for.
func bindingsNeedingNamespaces(ctx context.Context, hub client.Reader, cluster string) []reconcile.Request {
	list := &fleetv1alpha1.BaselineBindingList{}
	if err := hub.List(ctx, list, client.MatchingLabels{fleetv1alpha1.LabelCluster: cluster}); err != nil {
		log.FromContext(ctx).Error(err, "list the bindings of a member whose Namespaces changed", "cluster", cluster)
		return nil
	}
	var reqs []reconcile.Request
	fansOut := map[string]bool{}
	for i := range list.Items {
		bb := &list.Items[i]
		name := bb.Spec.BaselineName
		if _, known := fansOut[name]; !known {
			b := &fleetv1alpha1.Baseline{}
			// A Baseline that cannot be read counts as fanning out: the binding is reconciled.
			err := hub.Get(ctx, types.NamespacedName{Name: name}, b)
			fansOut[name] = err != nil || b.Spec.PerNamespace != nil
		}
		if fansOut[name] || !meta.IsStatusConditionTrue(bb.Status.Conditions, fleetv1alpha1.ConditionApplied) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(bb)})
		}
	}
	return reqs
}
