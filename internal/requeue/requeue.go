// Package requeue is the retry policy of every Flotilla controller's work queue: how long a
// request that failed waits before it is tried again.
//
// controller-runtime's default backs off per request from 5 ms, doubling up to ~16 minutes.
// Flotilla's failures are mostly a member or the hub answering late for a while (a hung
// member, a loaded API server); once it answers again, a binding, an export or a
// registration must not sit out a quarter of an hour with its workers idle — a fleet that
// looks stalled. Every reconcile here is cheap to repeat and bounded per member (slots,
// deadlines), so retrying at least every MaxDelay costs little.
package requeue

import (
	"time"

	"golang.org/x/time/rate"
	"k8s.io/client-go/util/workqueue"
)

// MaxDelay caps the backoff of a request that keeps failing.
const MaxDelay = 30 * time.Second

// Limiter is controller-runtime's default rate limiter (per-request exponential backoff from
// 5 ms, and an overall bucket of 10 retries a second with a burst of 100) with the
// per-request backoff capped at MaxDelay.
func Limiter[T comparable]() workqueue.TypedRateLimiter[T] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[T](5*time.Millisecond, MaxDelay),
		&workqueue.TypedBucketRateLimiter[T]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}
