package clusters

import (
	"context"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// secretRefIndex indexes MemberClusters by "<namespace>/<name>" of their kubeconfig Secret.
const secretRefIndex = "spec.kubeconfigSecretRef"

// maxRetryDelay caps the backoff of the registry's controllers after an error. A failed
// read of a kubeconfig Secret (a hub API server hiccup, a permission briefly missing) is
// retried with backoff; with controller-runtime's default cap of ~16 minutes, a member not
// yet connected would wait that long after the hub recovered. The registry's work is one
// read and one status write per object, so retrying every 30 s at worst costs nothing.
const maxRetryDelay = 30 * time.Second

// retryLimiter is controller-runtime's default rate limiter (per-item exponential backoff
// from 5 ms, and an overall 10 qps bucket) with the per-item backoff capped at maxRetryDelay.
func retryLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, maxRetryDelay),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}

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
		WithOptions(controller.Options{RateLimiter: retryLimiter()}).
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
