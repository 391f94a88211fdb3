package servicesync

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	"k8s.io/client-go/util/workqueue"

	"github.com/flotilla-dev/flotilla/clusters"
)

// An export's reconcile talks to several members: it reads its source and writes or
// collects mirrors in every other member. Export workers serve the whole fleet, so none of
// that work may hold a worker longer than a healthy member needs. memberWork runs each
// member's part of a reconcile in its own goroutine, under one of that member's
// clusters.MemberSlots, and waits for it only a short while (patience): a part that could
// not get a slot (a busy or hung member), that outlasts the patience, or whose previous run
// for the same export still hangs is deferred. The reconcile then reports what it has and
// returns its worker; a deferred export is enqueued again as soon as its member frees a
// slot — a healthy member within milliseconds, a hung one when its calls reach their
// deadline (clusters' RequestTimeout) — with deferredResync as a backstop.
//
// A part that outlasts the patience keeps running in the background, bounded by timeout,
// and holds its slot meanwhile; it is the only run of that export in that member until it
// ends, so two reconciles of one export never write into one member at the same time.
type memberWork struct {
	slots    *clusters.MemberSlots
	timeout  time.Duration
	patience time.Duration

	mu sync.Mutex
	// running are the parts under way, by export and member.
	running map[memberPart]bool
	// waiting are the exports deferred on a member, enqueued when any part in it ends.
	waiting map[string]map[exportRequest]bool
	queue   workqueue.TypedInterface[exportRequest]
}

// memberPart is one export's work in one member.
type memberPart struct {
	req    exportRequest
	member string
}

const (
	// slotWait is how long a part waits for a slot of its member before it is deferred.
	slotWait = 100 * time.Millisecond
	// memberPatience is how long a reconcile waits for its parts. A healthy member answers
	// a mirror write well within it; longer would hold the worker, and the next change of
	// the same export, behind a member that stopped answering.
	memberPatience = 500 * time.Millisecond
	// deferredResync brings a deferred export back even if no wake-up came.
	deferredResync = 5 * time.Second
)

func newMemberWork(perMember int, timeout time.Duration) *memberWork {
	return &memberWork{
		slots:    clusters.NewMemberSlots(perMember),
		timeout:  timeout,
		patience: memberPatience,
		running:  map[memberPart]bool{},
		waiting:  map[string]map[exportRequest]bool{},
	}
}

// setQueue gives memberWork the controller's queue, into which deferred exports are woken.
func (w *memberWork) setQueue(q workqueue.TypedInterface[exportRequest]) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = q
}

// partResult is what one member's part returned.
type partResult[T any] struct {
	member string
	value  T
	err    error
	busy   bool // no slot came free: not run
}

// onMembers runs work for req in each of members at once and returns the results of the
// parts that ended within the patience, the members whose part was deferred, and the
// errors of the parts that ended, aggregated.
func onMembers[T any](ctx context.Context, w *memberWork, req exportRequest, members []string,
	work func(ctx context.Context, member string) (T, error)) (done map[string]T, deferred []string, err error) {
	results := make(chan partResult[T], len(members)) // late parts never block
	started := map[string]bool{}
	for _, m := range members {
		if !w.start(memberPart{req, m}) {
			deferred = append(deferred, m) // its previous run is still under way
			w.waitFor(memberPart{req, m})
			continue
		}
		started[m] = true
		go func() { results <- runPart(ctx, w, memberPart{req, m}, work) }()
	}

	done = map[string]T{}
	var errs *multierror.Error
	timer := time.NewTimer(w.patience)
	defer timer.Stop()
	for len(started) > 0 {
		select {
		case r := <-results:
			delete(started, r.member)
			switch {
			case r.busy:
				deferred = append(deferred, r.member)
			case r.err != nil:
				errs = multierror.Append(errs, r.err)
			default:
				done[r.member] = r.value
			}
		case <-timer.C:
			for m := range started {
				deferred = append(deferred, m)
				w.waitFor(memberPart{req, m})
			}
			return done, deferred, errs.ErrorOrNil()
		}
	}
	return done, deferred, errs.ErrorOrNil()
}

// runPart runs one part under a slot of its member, bounded by the timeout and detached
// from the reconcile, which may have returned before the part ends.
func runPart[T any](ctx context.Context, w *memberWork, p memberPart, work func(context.Context, string) (T, error)) partResult[T] {
	release, ok := w.slots.Acquire(ctx, p.member, slotWait)
	if !ok {
		w.end(p, false)
		w.wait(p)
		// A slot freed between the failed wait and the line above woke nobody: look again.
		if release, ok := w.slots.Acquire(ctx, p.member, 0); ok {
			release()
			w.wake(p.member)
		}
		return partResult[T]{member: p.member, busy: true}
	}
	partCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.timeout)
	v, err := work(partCtx, p.member)
	cancel()
	release()
	w.end(p, true)
	return partResult[T]{member: p.member, value: v, err: err}
}

// start marks p as running; false if it already is.
func (w *memberWork) start(p memberPart) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running[p] {
		return false
	}
	w.running[p] = true
	return true
}

// end marks p as no longer running and, if it ran, wakes the exports waiting on its member.
func (w *memberWork) end(p memberPart, ran bool) {
	w.mu.Lock()
	delete(w.running, p)
	w.mu.Unlock()
	if ran {
		w.wake(p.member)
	}
}

// wait defers p's export until a part in p's member ends.
func (w *memberWork) wait(p memberPart) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waitLocked(p)
}

// waitFor defers p's export until p, still running, ends; if it ended in the meantime,
// the export is enqueued at once.
func (w *memberWork) waitFor(p memberPart) {
	w.mu.Lock()
	if w.running[p] {
		w.waitLocked(p)
		w.mu.Unlock()
		return
	}
	q := w.queue
	w.mu.Unlock()
	if q != nil {
		q.Add(p.req)
	}
}

func (w *memberWork) waitLocked(p memberPart) {
	if w.waiting[p.member] == nil {
		w.waiting[p.member] = map[exportRequest]bool{}
	}
	w.waiting[p.member][p.req] = true
}

// wake enqueues every export waiting on member.
func (w *memberWork) wake(member string) {
	w.mu.Lock()
	reqs := w.waiting[member]
	delete(w.waiting, member)
	q := w.queue
	w.mu.Unlock()
	if q == nil {
		return
	}
	for r := range reqs {
		q.Add(r)
	}
}
