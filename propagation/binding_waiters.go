package propagation

import (
	"sync"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// memberWaiters holds the bindings that found every slot of their member taken (see
// BindingReconciler.memberWork) and puts them back into the controller's queue as soon as
// a reconcile on that member gives its slot back: a busy member's bindings come back the
// moment they can run, and until then hold no worker and cost no retries. A hung member's
// slots come free when its calls reach their deadlines, and its bindings wait until then.
// Every waiter of the member is woken, not one: a woken binding may have nothing to do with
// the member any more (it was deleted), and must not leave the others waiting.
type memberWaiters struct {
	mu sync.Mutex
	// waiting are the bindings waiting for a slot, by member; an entry goes when it is woken.
	waiting map[string]map[reconcile.Request]bool
	queue   workqueue.TypedInterface[reconcile.Request]
}

func newMemberWaiters() *memberWaiters {
	return &memberWaiters{waiting: map[string]map[reconcile.Request]bool{}}
}

// setQueue gives the waiters the controller's queue; until then nobody waits (ready is false).
func (w *memberWaiters) setQueue(q workqueue.TypedInterface[reconcile.Request]) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = q
}

// wait makes req wait for a slot of member; false when there is no queue to wake it into
// (the reconciler runs without its controller's setup), and the caller requeues on a timer.
func (w *memberWaiters) wait(member string, req reconcile.Request) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.queue == nil {
		return false
	}
	if w.waiting[member] == nil {
		w.waiting[member] = map[reconcile.Request]bool{}
	}
	w.waiting[member][req] = true
	return true
}

// wake enqueues every binding waiting for a slot of member.
func (w *memberWaiters) wake(member string) {
	w.mu.Lock()
	reqs := w.waiting[member]
	delete(w.waiting, member)
	q := w.queue
	w.mu.Unlock()
	for req := range reqs {
		q.Add(req)
	}
}

// len is how many bindings wait, over all members.
func (w *memberWaiters) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, reqs := range w.waiting {
		n += len(reqs)
	}
	return n
}
