package clusters

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// memberCache is Flotilla's cache of one member: the kinds registered with RegisterWatch
// (started with it), the on-demand kinds while demanded, and the kinds of KindSource. Each
// kind is a kindCache (memberwatch.go) with one goroutine; the cache is also the client.Reader
// controllers read the member through. It replaces controller-runtime's cache.Cache, whose
// informers cost 13–14 goroutines per kind and member (see README "Scale").
//
// Reads follow controller-runtime's cache with ReaderFailOnMissingInformer: a kind that is
// not running fails with cache.ErrResourceNotCached, a read of a kind that has not synced
// waits for its first list (bounded by the caller's context), and what a read returns is a
// deep copy.
type memberCache struct {
	cluster string
	// ctx is the member's context: every kind's loop stops with it (or with cancel). Kind
	// contexts derive from it, a cancelCtx, which costs no goroutine.
	ctx    context.Context
	cancel context.CancelFunc
	client client.WithWatch
	mapper meta.RESTMapper
	scheme *runtime.Scheme
	// defaultSelector scopes kinds registered without their own label selector.
	defaultSelector labels.Selector
	filters         map[string]FilterFactory // by watchKey
	// scopes are the registered kinds' selectors and transforms, by watchKey; a kind
	// without one (KindSource's) gets the default selector and transform.
	scopes map[string]cache.ByObject

	mu    sync.Mutex
	kinds map[string]*kindCache // by watchKey
	wg    sync.WaitGroup
}

var _ client.Reader = &memberCache{}

func newMemberCache(parent context.Context, cluster string, cl client.WithWatch, mapper meta.RESTMapper, scheme *runtime.Scheme,
	defaultSelector labels.Selector, filters map[string]FilterFactory) *memberCache {
	ctx, cancel := context.WithCancel(parent)
	return &memberCache{cluster: cluster, ctx: ctx, cancel: cancel, client: cl, mapper: mapper, scheme: scheme,
		defaultSelector: defaultSelector, filters: filters, kinds: map[string]*kindCache{}}
}

// start starts caching obj's kind, scoped as registered (Label, Transform; other scopes are
// not supported), unless it runs already. It fails for a kind the member does not serve.
func (c *memberCache) start(obj client.Object) (*kindCache, error) {
	key := watchKey(obj)
	opts := c.scopes[key]
	c.mu.Lock()
	k := c.kinds[key]
	c.mu.Unlock()
	if k != nil {
		return k, nil
	}
	if opts.Field != nil || len(opts.Namespaces) > 0 {
		return nil, fmt.Errorf("cache %T: only label selectors and transforms scope a member cache", obj)
	}
	gvk, err := apiutil.GVKForObject(obj, c.scheme)
	if err != nil {
		return nil, err
	}
	// Asked before anything starts: a kind the member does not serve is not started (the
	// mapper answers from discovery, bounded by the request timeout).
	mapping, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: kind %s: %w", c.cluster, gvk, err)
	}
	newList, err := c.listOf(obj, gvk)
	if err != nil {
		return nil, err
	}
	k = &kindCache{gvk: gvk, resource: mapping.Resource.GroupResource(), newList: newList,
		selector: opts.Label, transform: opts.Transform, client: c.client,
		synced: make(chan struct{}), done: make(chan struct{}), objs: map[string]client.Object{}}
	if k.selector == nil {
		k.selector = c.defaultSelector
	}
	if k.transform == nil {
		k.transform = trimManagedFields
	}
	if f := c.filters[key]; f != nil {
		k.keep = f(c.cluster, c)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if running := c.kinds[key]; running != nil {
		return running, nil // started meanwhile by another caller
	}
	if c.ctx.Err() != nil {
		return nil, fmt.Errorf("cluster %q: member cache stopped: %w", c.cluster, ErrNotConnected)
	}
	var ctx context.Context
	ctx, k.cancel = context.WithCancel(c.ctx)
	c.kinds[key] = k
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		k.run(ctx)
	}()
	return k, nil
}

// listOf returns the constructor of empty lists of obj's kind.
func (c *memberCache) listOf(obj client.Object, gvk schema.GroupVersionKind) (func() client.ObjectList, error) {
	listGVK := gvk.GroupVersion().WithKind(gvk.Kind + "List")
	if _, ok := obj.(*metav1.PartialObjectMetadata); ok {
		return func() client.ObjectList {
			l := &metav1.PartialObjectMetadataList{}
			l.SetGroupVersionKind(listGVK)
			return l
		}, nil
	}
	if _, err := c.scheme.New(listGVK); err != nil {
		return nil, fmt.Errorf("cache %T: %w", obj, err)
	}
	return func() client.ObjectList {
		l, _ := c.scheme.New(listGVK)
		return l.(client.ObjectList)
	}, nil
}

// remove stops obj's kind, if it runs, and drops what it held.
func (c *memberCache) remove(obj client.Object) {
	c.mu.Lock()
	k := c.kinds[watchKey(obj)]
	delete(c.kinds, watchKey(obj))
	c.mu.Unlock()
	if k != nil {
		k.cancel()
		<-k.done
	}
}

// stop stops every kind and waits for their goroutines.
func (c *memberCache) stop() {
	c.cancel()
	c.wg.Wait()
}

// kind returns obj's running kind; nil if it does not run.
func (c *memberCache) kind(key string) *kindCache {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kinds[key]
}

// readable returns the running kind of key, once it has synced.
func (c *memberCache) readable(ctx context.Context, key string, gvk schema.GroupVersionKind) (*kindCache, error) {
	k := c.kind(key)
	if k == nil {
		return nil, &cache.ErrResourceNotCached{GVK: gvk}
	}
	select {
	case <-k.synced:
		return k, nil
	case <-k.done:
		return nil, &cache.ErrResourceNotCached{GVK: gvk}
	case <-ctx.Done():
		return nil, fmt.Errorf("cluster %q: wait for the member cache of %s to sync: %w", c.cluster, gvk.Kind, ctx.Err())
	}
}

// Get implements client.Reader.
func (c *memberCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	gvk, err := apiutil.GVKForObject(obj, c.scheme)
	if err != nil {
		return err
	}
	k, err := c.readable(ctx, watchKey(obj), gvk)
	if err != nil {
		return err
	}
	k.mu.RLock()
	held := k.objs[storeKey(key.Namespace, key.Name)]
	k.mu.RUnlock()
	if held == nil {
		return apierrors.NewNotFound(k.resource, key.Name)
	}
	out := reflect.ValueOf(obj)
	in := reflect.ValueOf(held.DeepCopyObject())
	if out.Type() != in.Type() {
		return fmt.Errorf("cluster %q: cache holds %s as %T, not %T", c.cluster, gvk, held, obj)
	}
	out.Elem().Set(in.Elem())
	obj.GetObjectKind().SetGroupVersionKind(k.gvk)
	return nil
}

// List implements client.Reader. It honours the namespace and the label selector.
func (c *memberCache) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	lo := (&client.ListOptions{}).ApplyOptions(opts)
	if lo.FieldSelector != nil && !lo.FieldSelector.Empty() {
		return fmt.Errorf("cluster %q: member cache lists support no field selector", c.cluster)
	}
	listGVK, err := apiutil.GVKForObject(list, c.scheme)
	if err != nil {
		return err
	}
	gvk := listGVK.GroupVersion().WithKind(strings.TrimSuffix(listGVK.Kind, "List"))
	var key string
	if _, ok := list.(*metav1.PartialObjectMetadataList); ok {
		key = "metadata:" + gvk.String()
	} else {
		example, err := c.scheme.New(gvk)
		if err != nil {
			return fmt.Errorf("cluster %q: list %T: %w", c.cluster, list, err)
		}
		key = fmt.Sprintf("%T", example)
	}
	k, err := c.readable(ctx, key, gvk)
	if err != nil {
		return err
	}
	k.mu.RLock()
	var items []client.Object
	for _, o := range k.objs {
		if lo.Namespace != "" && o.GetNamespace() != lo.Namespace {
			continue
		}
		if lo.LabelSelector != nil && !lo.LabelSelector.Matches(labels.Set(o.GetLabels())) {
			continue
		}
		items = append(items, o)
	}
	k.mu.RUnlock()
	slices.SortFunc(items, func(a, b client.Object) int { return strings.Compare(objectKey(a), objectKey(b)) })
	copies := make([]runtime.Object, len(items))
	for i, o := range items {
		copies[i] = o.DeepCopyObject()
	}
	if err := meta.SetList(list, copies); err != nil {
		return fmt.Errorf("cluster %q: list %s: %w", c.cluster, gvk.Kind, err)
	}
	list.GetObjectKind().SetGroupVersionKind(listGVK)
	return nil
}
