package propagation

import (
	"container/list"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// renderCacheObjects bounds the rendered revisions held in memory, counted in parsed objects
// (a Baseline of 50 objects costs 50): a few hundred revisions of typical Baselines, and at
// least the newest revision of any Baseline, however large.
const renderCacheObjects = 20000

// renderKey names one revision of one Baseline. The UID keeps a Baseline deleted and
// created again under the same name apart from its predecessor.
type renderKey struct {
	baseline types.UID
	revision string
}

// renderCache holds rendered revisions of Baselines, so that a revision is read and parsed
// once — by the Baseline controller, which reads the sources anyway to compute the revision —
// and every binding of it (one per member) reuses the parse: no binding reads a ConfigMap or
// Secret while the revision it was released is cached. A revision is named by the hash of
// everything it is rendered from (render.Revision), so an entry never goes stale: changed
// sources are a new revision, a new key. It is bounded by renderCacheObjects, least recently
// used first out; a miss (after a restart or an eviction) costs one read and parse, after
// which the revision is cached again. Entries are shared between bindings and never
// modified: render.ForCluster copies what it changes.
type renderCache struct {
	mu      sync.Mutex
	max     int
	objects int
	order   *list.List // of *renderEntry, most recently used first
	entries map[renderKey]*list.Element
	// current is each Baseline's revision as last read from its sources (one short string
	// per live Baseline; forget drops a deleted one's).
	current map[types.UID]string
}

type renderEntry struct {
	key  renderKey
	out  *rendered
	size int
}

func newRenderCache(maxObjects int) *renderCache {
	return &renderCache{max: maxObjects, order: list.New(), entries: map[renderKey]*list.Element{}, current: map[types.UID]string{}}
}

// get returns the cached revision of Baseline uid, or nil.
func (c *renderCache) get(uid types.UID, revision string) *rendered {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[renderKey{uid, revision}]
	if !ok {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*renderEntry).out
}

// put caches out as the revision out.revision of Baseline uid and evicts the least recently
// used revisions beyond the bound (never the one just put).
func (c *renderCache) put(uid types.UID, out *rendered) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := renderKey{uid, out.revision}
	if el, ok := c.entries[key]; ok {
		c.order.MoveToFront(el)
		return
	}
	e := &renderEntry{key: key, out: out, size: max(len(out.resources)+len(out.perNamespace), 1)}
	c.entries[key] = c.order.PushFront(e)
	c.objects += e.size
	for c.objects > c.max && c.order.Len() > 1 {
		last := c.order.Back()
		old := last.Value.(*renderEntry)
		c.order.Remove(last)
		delete(c.entries, old.key)
		c.objects -= old.size
	}
}

// setCurrent records revision as Baseline uid's current one.
func (c *renderCache) setCurrent(uid types.UID, revision string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current[uid] = revision
}

// currentOf is Baseline uid's current revision, empty when none was recorded.
func (c *renderCache) currentOf(uid types.UID) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current[uid]
}

// forget drops every revision of Baseline uid.
func (c *renderCache) forget(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.current, uid)
	for el := c.order.Front(); el != nil; {
		next := el.Next()
		if e := el.Value.(*renderEntry); e.key.baseline == uid {
			c.order.Remove(el)
			delete(c.entries, e.key)
			c.objects -= e.size
		}
		el = next
	}
}

// len is the number of cached revisions.
func (c *renderCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
