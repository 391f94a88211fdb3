package propagation

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flotilla-dev/flotilla/clusters"
)

// A binding that finds its member's slots taken holds no worker and is not retried on a
// timer: it is put back into the queue when a reconcile on that member gives its slot back,
// and only then; bindings of other members are not woken.
func TestBusyMemberWakesItsBindingsWhenASlotIsFree(t *testing.T) {
	q := workqueue.NewTypedRateLimitingQueue[reconcile.Request](workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	r := &BindingReconciler{Slots: clusters.NewMemberSlots(1), waiters: newMemberWaiters()}
	r.waiters.setQueue(q)
	ctx := context.Background()
	req := func(name string) ctrl.Request { return ctrl.Request{NamespacedName: types.NamespacedName{Name: name}} }

	_, done, _, ok := r.memberWork(ctx, "eu-1", req("first-eu-1"))
	if !ok {
		t.Fatal("the first binding of a free member did not get a slot")
	}
	_, _, busy, ok := r.memberWork(ctx, "eu-1", req("second-eu-1"))
	if ok || busy.RequeueAfter != 0 {
		t.Fatalf("second binding of a busy member: ok %t, requeue after %s; want no slot and no timed requeue", ok, busy.RequeueAfter)
	}
	_, otherDone, _, ok := r.memberWork(ctx, "us-1", req("first-us-1"))
	if !ok {
		t.Fatal("a busy member held back a binding of another member")
	}
	otherDone()
	if q.Len() != 0 {
		t.Fatalf("a slot of another member woke %d bindings, want none", q.Len())
	}
	done()
	if q.Len() != 1 {
		t.Fatalf("the slot given back woke %d bindings, want the one waiting", q.Len())
	}
	got, _ := q.Get()
	if got != req("second-eu-1") {
		t.Errorf("woke %v, want second-eu-1", got)
	}
	q.Done(got)
	if r.waiters.len() != 0 {
		t.Errorf("%d bindings still wait after the wake-up", r.waiters.len())
	}
}

// Without a queue to wake into (a reconciler used without its setup), a busy member's
// binding is retried on a short timer.
func TestBusyMemberWithoutQueueRequeuesOnATimer(t *testing.T) {
	r := &BindingReconciler{Slots: clusters.NewMemberSlots(1)}
	_, done, _, ok := r.memberWork(context.Background(), "eu-1", ctrl.Request{})
	if !ok {
		t.Fatal("no slot in a free member")
	}
	defer done()
	_, _, busy, ok := r.memberWork(context.Background(), "eu-1", ctrl.Request{})
	if ok || busy.RequeueAfter != busyRequeue {
		t.Errorf("busy member without a queue: ok %t, requeue after %s; want a requeue after %s", ok, busy.RequeueAfter, busyRequeue)
	}
}
