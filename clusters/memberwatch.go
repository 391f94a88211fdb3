package clusters

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// One kind of a member cache (membercache.go): a store and the one goroutine that keeps it.
// The goroutine lists the kind in pages, watches from the list's resourceVersion, applies
// each event to the store (filter and transform inline) and hands it to the handlers itself.
// Compared with a client-go informer (reflector, resync timer, DeltaFIFO, processor, one
// goroutine pair per handler) a kind costs three goroutines: this loop, the watch's HTTP/2
// stream and client-go's StreamWatcher decoder. That is possible because every handler
// here only maps an object to requests and adds them to a work queue: it never blocks.

const (
	// listPageSize bounds one list request, so that a big member is read in pages.
	listPageSize = 500
	// listPageTimeout bounds one page: the watch client has no timeout (it would cut every
	// watch), and a member that stops answering must not hold the loop forever.
	listPageTimeout = time.Minute
	// minWatchTimeout is the shortest server-side timeout of a watch, which is spread over
	// [min, 2×min) like client-go's reflector does, so that a member's watches do not all
	// end at once.
	minWatchTimeout = 5 * time.Minute
	// maxRetryBackoff caps the wait between failed lists or watches of a kind.
	maxRetryBackoff = 30 * time.Second
)

// kindHandler hears of a change of one kind: old is nil for an object added (also for one
// already held when the handler was attached), cur is nil for one deleted.
type kindHandler func(old, cur client.Object)

// kindCache is one kind of a member cache: what it holds, and how it is kept.
type kindCache struct {
	gvk      schema.GroupVersionKind
	resource schema.GroupResource
	// newList returns an empty list of the kind, for the client's List and Watch.
	newList   func() client.ObjectList
	selector  labels.Selector // server-side; nil means every object
	transform toolscache.TransformFunc
	keep      KeepFunc // nil keeps everything
	client    client.WithWatch

	cancel context.CancelFunc
	// synced is closed once the first list is in the store and delivered to the handlers;
	// done when the loop has returned.
	synced chan struct{}
	done   chan struct{}

	mu   sync.RWMutex
	objs map[string]client.Object // by objectKey

	// dispatchMu serializes delivery, so that each handler sees a kind's changes in order,
	// and attaching a handler (which replays what the store holds) does not interleave.
	dispatchMu sync.Mutex
	handlers   []kindHandler
}

// change is one change of the store: old is nil for an add, cur nil for a delete.
type change struct{ old, cur client.Object }

// run keeps the store until ctx ends: list, watch from the list's resourceVersion,
// watch again from the last one seen when a watch ends, and list again (a relist, which
// also finds what was deleted meanwhile) when the member no longer has that version.
func (k *kindCache) run(ctx context.Context) {
	defer close(k.done)
	logger := log.FromContext(ctx).WithValues("kind", k.gvk.String())
	backoff := time.Duration(0)
	retry := func(err error) bool {
		backoff = min(max(2*backoff, 500*time.Millisecond), maxRetryBackoff)
		logger.V(1).Info("member watch failed, retrying", "error", err.Error(), "after", backoff)
		return sleep(ctx, backoff)
	}
	rv := ""
	for ctx.Err() == nil {
		if rv == "" {
			var err error
			if rv, err = k.relist(ctx); err != nil {
				if ctx.Err() != nil || !retry(err) {
					return
				}
				continue
			}
		}
		started := time.Now()
		next, err := k.watch(ctx, rv)
		switch {
		case ctx.Err() != nil:
			return
		case isExpired(err):
			rv = "" // the member compacted past rv: only a new list tells what changed
		case err != nil:
			rv = next
			if !retry(err) {
				return
			}
		case time.Since(started) < time.Second:
			// A watch the member ends at once, again and again, is not to be hammered.
			rv = next
			if !retry(errors.New("watch ended at once")) {
				return
			}
		default:
			rv, backoff = next, 0
		}
	}
}

// relist lists the kind in pages, replaces the store with what was found (and kept), and
// delivers the differences: adds, updates and the deletes of what is gone.
func (k *kindCache) relist(ctx context.Context) (string, error) {
	var items []client.Object
	var rv string
	for cont := ""; ; {
		list := k.newList()
		pageCtx, cancel := context.WithTimeout(ctx, listPageTimeout)
		err := k.client.List(pageCtx, list, &client.ListOptions{LabelSelector: k.selector, Limit: listPageSize, Continue: cont})
		cancel()
		if err != nil {
			return "", fmt.Errorf("list %s: %w", k.gvk.Kind, err)
		}
		objs, err := meta.ExtractList(list)
		if err != nil {
			return "", fmt.Errorf("list %s: %w", k.gvk.Kind, err)
		}
		for _, o := range objs {
			if co, ok := o.(client.Object); ok {
				items = append(items, co)
			}
		}
		rv, cont = list.GetResourceVersion(), list.GetContinue()
		if cont == "" {
			break
		}
	}
	k.dispatch(k.replace(ctx, items))
	select {
	case <-k.synced:
	default:
		close(k.synced)
	}
	return rv, nil
}

// watch watches the kind from rv until the watch ends, and returns the last resourceVersion
// seen (of an event or a bookmark) and the error that ended it, if any.
func (k *kindCache) watch(ctx context.Context, rv string) (string, error) {
	timeout := int64((minWatchTimeout + rand.N(minWatchTimeout)).Seconds())
	w, err := k.client.Watch(ctx, k.newList(), &client.ListOptions{LabelSelector: k.selector, Raw: &metav1.ListOptions{
		ResourceVersion: rv, AllowWatchBookmarks: true, TimeoutSeconds: &timeout}})
	if err != nil {
		return rv, fmt.Errorf("watch %s: %w", k.gvk.Kind, err)
	}
	defer w.Stop()
	for {
		var ev watch.Event
		var ok bool
		select {
		case <-ctx.Done():
			return rv, nil
		case ev, ok = <-w.ResultChan():
		}
		if !ok {
			return rv, nil
		}
		switch ev.Type {
		case watch.Error:
			return rv, fmt.Errorf("watch %s: %w", k.gvk.Kind, apierrors.FromObject(ev.Object))
		case watch.Bookmark:
			if o, err := meta.Accessor(ev.Object); err == nil {
				rv = o.GetResourceVersion()
			}
		case watch.Added, watch.Modified, watch.Deleted:
			o, isObj := ev.Object.(client.Object)
			if !isObj {
				continue
			}
			rv = o.GetResourceVersion()
			if ch, ok := k.apply(ctx, ev.Type, o); ok {
				k.dispatch([]change{ch})
			}
		}
	}
}

// isExpired: the member no longer has the resourceVersion a watch asked for (410 Gone,
// "too old resource version").
func isExpired(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err) ||
		apierrors.ReasonForError(err) == metav1.StatusReasonExpired ||
		func() bool {
			var status apierrors.APIStatus
			return errors.As(err, &status) && status.Status().Code == http.StatusGone
		}()
}

// apply applies one watch event to the store. The filter decides on the object as the
// member sent it: kept, it is stored (transformed); not kept but held, it leaves the store
// as a deletion; neither, it makes no change at all.
func (k *kindCache) apply(ctx context.Context, typ watch.EventType, o client.Object) (change, bool) {
	key := objectKey(o)
	if typ != watch.Deleted && (k.keep == nil || k.keep(ctx, o)) {
		stored := k.store(o)
		k.mu.Lock()
		old := k.objs[key]
		k.objs[key] = stored
		k.mu.Unlock()
		return change{old: old, cur: stored}, true
	}
	k.mu.Lock()
	old, held := k.objs[key]
	delete(k.objs, key)
	k.mu.Unlock()
	return change{old: old}, held
}

// replace makes items (as a list found them) the store's content and returns the changes:
// what is new, what changed (by resourceVersion) and what is gone.
func (k *kindCache) replace(ctx context.Context, items []client.Object) []change {
	next := make(map[string]client.Object, len(items))
	for _, o := range items {
		if k.keep == nil || k.keep(ctx, o) {
			// A copy: a list item shares its list's array, which holds every object the
			// filter dropped too.
			next[objectKey(o)] = k.store(o).DeepCopyObject().(client.Object)
		}
	}
	k.mu.Lock()
	prev := k.objs
	k.objs = next
	k.mu.Unlock()
	var changes []change
	for key, o := range next {
		switch old := prev[key]; {
		case old == nil:
			changes = append(changes, change{cur: o})
		case old.GetResourceVersion() != o.GetResourceVersion():
			changes = append(changes, change{old: old, cur: o})
		}
	}
	for key, old := range prev {
		if next[key] == nil {
			changes = append(changes, change{old: old})
		}
	}
	return changes
}

// store is o as the store holds it: transformed, with its kind set (a metadata watch
// decodes objects without it, and handlers of several kinds tell them apart by it).
func (k *kindCache) store(o client.Object) client.Object {
	if k.transform != nil {
		if t, err := k.transform(o); err == nil {
			if to, ok := t.(client.Object); ok {
				o = to
			}
		}
	}
	o.GetObjectKind().SetGroupVersionKind(k.gvk)
	return o
}

func (k *kindCache) dispatch(changes []change) {
	if len(changes) == 0 {
		return
	}
	k.dispatchMu.Lock()
	defer k.dispatchMu.Unlock()
	for _, h := range k.handlers {
		for _, ch := range changes {
			h(ch.old, ch.cur)
		}
	}
}

// addHandler attaches h and hands it everything the store holds, as adds.
func (k *kindCache) addHandler(h kindHandler) {
	k.dispatchMu.Lock()
	defer k.dispatchMu.Unlock()
	k.handlers = append(k.handlers, h)
	k.mu.RLock()
	held := make([]client.Object, 0, len(k.objs))
	for _, o := range k.objs {
		held = append(held, o)
	}
	k.mu.RUnlock()
	for _, o := range held {
		h(nil, o)
	}
}

// sleep waits d, or less if ctx ends first; it tells whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
