package clusters

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// A kubeconfig Secret that cannot be read for a while (a hub hiccup) is retried with
// backoff; once the hub recovers, the member must not wait controller-runtime's default
// cap of ~16 minutes for the next attempt.
func TestRegistryRetriesAtMostEvery30Seconds(t *testing.T) {
	limiter := retryLimiter()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Name: "eu-1"}}
	var last time.Duration
	for range 30 { // 5 ms doubled 30 times would be years
		last = limiter.When(req)
	}
	if last != maxRetryDelay || maxRetryDelay > 30*time.Second {
		t.Errorf("after 30 failures the next retry waits %s; want the cap %s (at most 30s)", last, maxRetryDelay)
	}
	limiter.Forget(req)
	if first := limiter.When(req); first > 10*time.Millisecond {
		t.Errorf("after a success the first retry waits %s; want the backoff to start over", first)
	}
}
