package clusters

import (
	"context"
	"fmt"
	"maps"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Filtered kinds: a kind no server-side selector can scope (an export is an annotation)
// is still listed and watched in full, but the member cache holds only the objects a filter
// keeps; everything else is dropped as it arrives, before it reaches the store or a handler.
// The filter runs in the kind's loop (memberwatch.go, apply and replace): the store looks
// like a member that has only the kept objects, an object that stops being kept leaves it
// as if it were deleted there, and a relist forgets what is no longer kept.

// KeepFunc says whether a member cache holds obj, as the member's API server sent it (before
// any cache transform). It runs in the kind's list and watch loop: it must be quick and may
// block only on reads of other kinds of the same member cache.
type KeepFunc func(ctx context.Context, obj client.Object) bool

// FilterFactory makes the KeepFunc of one kind in one member cache. cached reads that same
// cache (other registered kinds, waiting for their first list), so that one kind's
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
		// The kind's store is shared: two filters would each hide what the other keeps.
		return fmt.Errorf("filter %T: the kind is filtered already", obj)
	}
	c.filters[key] = newFilter
	return nil
}

// memberFilters are the registered filters, for a new member cache.
func (c *Connections) memberFilters() map[string]FilterFactory {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.filters)
}

// objectKey is the key of o in a member cache's store.
func objectKey(o client.Object) string { return storeKey(o.GetNamespace(), o.GetName()) }

func storeKey(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}
