package clusters

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Filtered watches: a kind no server-side selector can scope (an export is an annotation)
// is still listed and watched in full, but the member cache holds only the objects a filter
// keeps; everything else is dropped as it arrives, before it is decoded into the cache.
// The filter sits between the API server's answers and the informer (filteredListWatch),
// so the informer sees a member that has only the kept objects, and an object that stops
// being kept leaves it as if it were deleted there.

// KeepFunc says whether a member cache holds obj, as the member's API server sent it (before
// any cache transform). It runs on the informer's list and watch path: it must be quick and
// may block only on reads of the same member cache.
type KeepFunc func(ctx context.Context, obj client.Object) bool

// FilterFactory makes the KeepFunc of one kind in one member cache. cached reads that same
// cache (other registered kinds, waiting for their informers to sync), so that one kind's
// filter can follow what the cache holds of another: EndpointSlices of the Services kept.
type FilterFactory func(cluster string, cached client.Reader) KeepFunc

// RegisterFilter implements MemberAccess.
func (c *Connections) RegisterFilter(obj client.Object, newFilter FilterFactory) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cachesMade {
		return fmt.Errorf("filter %T: member caches already exist; register filters before the manager starts", obj)
	}
	if _, ok := c.registration(obj); !ok {
		return fmt.Errorf("filter %T: not registered with RegisterWatch", obj)
	}
	key := watchKey(obj)
	if c.filters == nil {
		c.filters = map[string]FilterFactory{}
	}
	if c.filters[key] != nil {
		// The kind's informer is shared: two filters would each hide what the other keeps.
		return fmt.Errorf("filter %T: the kind is filtered already", obj)
	}
	c.filters[key] = newFilter
	return nil
}

// informerFactory returns the informer constructor of a new member cache, which puts the
// registered filters in front of their kinds' informers, and bind, to be called with the
// cache once it exists (before it starts), which the filters read through.
func (c *Connections) informerFactory(cluster string) (
	newInformer func(toolscache.ListerWatcher, runtime.Object, time.Duration, toolscache.Indexers) toolscache.SharedIndexInformer,
	bind func(client.Reader)) {
	c.mu.Lock()
	factories := maps.Clone(c.filters)
	c.mu.Unlock()
	cached := &boundReader{}
	return func(lw toolscache.ListerWatcher, example runtime.Object, resync time.Duration, idx toolscache.Indexers) toolscache.SharedIndexInformer {
		if o, ok := example.(client.Object); ok && factories[watchKey(o)] != nil {
			lw = newFilteredListWatch(lw, factories[watchKey(o)](cluster, cached))
		}
		return toolscache.NewSharedIndexInformer(lw, example, resync, idx)
	}, cached.bind
}

// boundReader is a member cache's reader, set once the cache is built.
type boundReader struct {
	mu sync.Mutex
	r  client.Reader
}

func (b *boundReader) bind(r client.Reader) {
	b.mu.Lock()
	b.r = r
	b.mu.Unlock()
}

func (b *boundReader) reader() (client.Reader, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.r == nil {
		return nil, fmt.Errorf("member cache not built yet: %w", ErrNotConnected)
	}
	return b.r, nil
}

func (b *boundReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	r, err := b.reader()
	if err != nil {
		return err
	}
	return r.Get(ctx, key, obj, opts...)
}

func (b *boundReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r, err := b.reader()
	if err != nil {
		return err
	}
	return r.List(ctx, list, opts...)
}

// filterState is what one filtered informer was told: held are the keys of the objects it
// was handed and not told of a deletion since. An object the filter stops keeping is
// deleted from the informer only if it is held, so that nothing the informer never had
// makes an event.
type filterState struct {
	keep KeepFunc
	mu   sync.Mutex
	held map[string]struct{}
}

// newFilteredListWatch puts keep in front of lw: lists return only the kept objects, and
// watch events are passed on for kept objects, turned into deletions for held objects no
// longer kept, and dropped otherwise. Bookmarks and errors pass unchanged.
func newFilteredListWatch(lw toolscache.ListerWatcher, keep KeepFunc) *toolscache.ListWatch {
	inner := toolscache.ToListerWatcherWithContext(lw)
	f := &filterState{keep: keep, held: map[string]struct{}{}}
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			list, err := inner.ListWithContext(ctx, opts)
			if err != nil {
				return list, err
			}
			// The first page of a list starts a new picture of the member (a relist).
			if err := f.filterList(ctx, list, opts.Continue == ""); err != nil {
				return nil, err
			}
			return list, nil
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			w, err := inner.WatchWithContext(ctx, opts)
			if err != nil {
				return w, err
			}
			// A watch that starts with the initial state (watch-list) is a relist too.
			if opts.SendInitialEvents != nil && *opts.SendInitialEvents {
				f.reset()
			}
			return f.watch(ctx, w), nil
		},
	}
}

func (f *filterState) reset() {
	f.mu.Lock()
	f.held = map[string]struct{}{}
	f.mu.Unlock()
}

// filterList removes from list every object keep rejects and records the rest as held.
func (f *filterState) filterList(ctx context.Context, list runtime.Object, relist bool) error {
	items, err := meta.ExtractList(list)
	if err != nil {
		return fmt.Errorf("filter list: %w", err)
	}
	kept := make([]runtime.Object, 0)
	var keys []string
	for _, item := range items {
		o, ok := item.(client.Object)
		if !ok || !f.keep(ctx, o) {
			continue
		}
		kept = append(kept, item)
		keys = append(keys, objectKey(o))
	}
	f.mu.Lock()
	if relist {
		f.held = map[string]struct{}{}
	}
	for _, k := range keys {
		f.held[k] = struct{}{}
	}
	f.mu.Unlock()
	if err := meta.SetList(list, kept); err != nil {
		return fmt.Errorf("filter list: %w", err)
	}
	return nil
}

// event decides what becomes of one watch event: passed (possibly as a deletion) or dropped.
func (f *filterState) event(ctx context.Context, ev watch.Event) (watch.Event, bool) {
	if ev.Type != watch.Added && ev.Type != watch.Modified && ev.Type != watch.Deleted {
		return ev, true
	}
	o, ok := ev.Object.(client.Object)
	if !ok {
		return ev, true
	}
	key := objectKey(o)
	// Outside the lock: keep may wait for another informer of the cache.
	keep := ev.Type != watch.Deleted && f.keep(ctx, o)
	f.mu.Lock()
	defer f.mu.Unlock()
	_, held := f.held[key]
	switch {
	case keep:
		f.held[key] = struct{}{}
		return ev, true
	case held:
		// Deleted in the member, or no longer kept: either way it leaves the cache.
		delete(f.held, key)
		ev.Type = watch.Deleted
		return ev, true
	}
	return ev, false
}

// watch passes in's events through event. One goroutine per watch: the price of not
// holding what is dropped.
func (f *filterState) watch(ctx context.Context, in watch.Interface) watch.Interface {
	w := &filteredWatch{in: in, out: make(chan watch.Event), stopped: make(chan struct{})}
	go func() {
		defer close(w.out)
		for {
			select {
			case <-w.stopped:
				return
			case ev, ok := <-in.ResultChan():
				if !ok {
					return
				}
				if ev, ok = f.event(ctx, ev); !ok {
					continue
				}
				select {
				case w.out <- ev:
				case <-w.stopped:
					return
				}
			}
		}
	}()
	return w
}

type filteredWatch struct {
	in      watch.Interface
	out     chan watch.Event
	once    sync.Once
	stopped chan struct{}
}

func (w *filteredWatch) Stop() {
	w.once.Do(func() {
		close(w.stopped)
		w.in.Stop()
	})
}

func (w *filteredWatch) ResultChan() <-chan watch.Event { return w.out }

func objectKey(o client.Object) string {
	if o.GetNamespace() == "" {
		return o.GetName()
	}
	return o.GetNamespace() + "/" + o.GetName()
}
