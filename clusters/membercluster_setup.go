package clusters

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/requeue"
)

// secretRefIndex indexes MemberClusters by "<namespace>/<name>" of their kubeconfig Secret.
const secretRefIndex = "spec.kubeconfigSecretRef"

// SetupWithManager registers the controller: MemberClusters, the metadata of Secrets they
// reference (a rotated Secret reconnects at once), and every connection event.
func (r *MemberClusterReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Heartbeat <= 0 {
		r.Heartbeat = DefaultHeartbeat
	}
	if r.CleanupTimeout <= 0 {
		r.CleanupTimeout = 2 * time.Minute
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &fleetv1alpha1.MemberCluster{}, secretRefIndex,
		func(o client.Object) []string {
			ref := o.(*fleetv1alpha1.MemberCluster).Spec.KubeconfigSecretRef
			return []string{ref.Namespace + "/" + ref.Name}
		}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("membercluster").
		For(&fleetv1alpha1.MemberCluster{}).
		WithOptions(controller.Options{RateLimiter: requeue.Limiter[reconcile.Request]()}).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(clustersForSecret(r.Client))).
		WatchesRawSource(r.Connections.eventSource(func(EventKind) bool { return true },
			func(_ context.Context, cluster string) []reconcile.Request {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: cluster}}}
			})).
		Complete(r)
}

// clustersForSecret maps a Secret to the MemberClusters whose kubeconfig it is (the index
// is registered by the MemberCluster controller's SetupWithManager).
func clustersForSecret(c client.Client) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		list := &fleetv1alpha1.MemberClusterList{}
		if err := c.List(ctx, list, client.MatchingFields{secretRefIndex: o.GetNamespace() + "/" + o.GetName()}); err != nil {
			log.FromContext(ctx).Error(err, "list MemberClusters for Secret", "secret", o.GetNamespace()+"/"+o.GetName())
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, mc := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: mc.Name}})
		}
		return reqs
	}
}
