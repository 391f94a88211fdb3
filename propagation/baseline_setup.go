package propagation

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flotilla-dev/flotilla/clusters"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/requeue"
	"github.com/flotilla-dev/flotilla/internal/status"
)

// sourceRefIndex indexes Baselines by "ConfigMap/<name>" and "Secret/<name>" of their sources.
const sourceRefIndex = "spec.sourceRefs"

// setupBaseline adds the Baseline controller: a Baseline is reconciled when it, one of its
// bindings, any MemberCluster (selection may change) or one of its source ConfigMaps or
// Secrets in the hub namespace changes. A source that does not exist yet is found by name,
// so creating it brings a Stalled Baseline back.
func setupBaseline(mgr ctrl.Manager, sources *sourceReader, opts SetupOptions) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &fleetv1alpha1.Baseline{}, sourceRefIndex, sourceRefs); err != nil {
		return err
	}
	hub := mgr.GetClient()
	inHubNamespace := builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == opts.HubNamespace
	}))
	baselinesForSource := func(kind string) handler.MapFunc {
		return func(ctx context.Context, o client.Object) []reconcile.Request {
			return requestsFor(ctx, hub, &fleetv1alpha1.BaselineList{}, client.MatchingFields{sourceRefIndex: kind + "/" + o.GetName()})
		}
	}
	allBaselines := func(ctx context.Context, _ client.Object) []reconcile.Request {
		return requestsFor(ctx, hub, &fleetv1alpha1.BaselineList{})
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("baseline").
		WithOptions(controller.Options{RateLimiter: requeue.Limiter[reconcile.Request]()}).
		For(&fleetv1alpha1.Baseline{}).
		Owns(&fleetv1alpha1.BaselineBinding{}).
		// Selection reads members' labels only: a status heartbeat enqueues nothing.
		Watches(&fleetv1alpha1.MemberCluster{}, handler.EnqueueRequestsFromMapFunc(allBaselines),
			builder.WithPredicates(clusters.MemberSelectionChanged())).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(baselinesForSource("ConfigMap")), inHubNamespace).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(baselinesForSource("Secret")), inHubNamespace).
		Complete(&BaselineReconciler{Client: hub, Sources: sources, Recorder: status.Events(mgr.GetEventRecorder("flotilla-propagation"))})
}

// sourceRefs is the sourceRefIndex of a Baseline.
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
