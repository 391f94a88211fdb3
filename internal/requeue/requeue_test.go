package requeue

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// A request that failed for a while (a member or the hub not answering) must not wait
// controller-runtime's default cap of ~16 minutes once the cause is gone.
func TestRetriesAtMostEvery30Seconds(t *testing.T) {
	limiter := Limiter[reconcile.Request]()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Name: "eu-1"}}
	var last time.Duration
	for range 30 { // 5 ms doubled 30 times would be years
		last = limiter.When(req)
	}
	if last != MaxDelay || MaxDelay > 30*time.Second {
		t.Errorf("after 30 failures the next retry waits %s; want the cap %s (at most 30s)", last, MaxDelay)
	}
	limiter.Forget(req)
	if first := limiter.When(req); first > 10*time.Millisecond {
		t.Errorf("after a success the first retry waits %s; want the backoff to start over", first)
	}
	other := reconcile.Request{NamespacedName: types.NamespacedName{Name: "eu-2"}}
	if first := limiter.When(other); first > 10*time.Millisecond {
		t.Errorf("another request's first retry waits %s; backoff is per request", first)
	}
}
