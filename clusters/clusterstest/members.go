package clusterstest

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/flotilla-dev/flotilla/clusters"
)

// Member is one connected member as the code under test sees it.
type Member struct {
	// Reader stands in for the member's cache; nil means Client serves reads too.
	Reader client.Reader
	// Client stands in for the member's direct client; nil makes Client fail as if the
	// member were not connected.
	Client client.Client
	// Served are the kinds the member serves, by group version (ServedKinds); nil serves
	// none.
	Served map[schema.GroupVersion][]string
}

// Members is a clusters.MemberAccess over a fixed set of connected members. A name not in
// the map is a member that is not connected: Client and Reader return
// clusters.ErrNotConnected, as the real connection manager does.
type Members struct {
	members map[string]Member

	mu         sync.Mutex
	registered []client.Object
	kinds      []schema.GroupVersionKind
	demands    map[string]map[string]bool
}

var _ clusters.MemberAccess = (*Members)(nil)

// New returns a fake with members connected, keyed by cluster name.
func New(members map[string]Member) *Members {
	return &Members{members: members}
}

// Client returns the member's Client, or clusters.ErrNotConnected.
func (f *Members) Client(cluster string) (client.Client, error) {
	m, ok := f.members[cluster]
	if !ok || m.Client == nil {
		return nil, fmt.Errorf("member cluster %q: %w", cluster, clusters.ErrNotConnected)
	}
	return m.Client, nil
}

// Reader returns the member's Reader (or its Client), or clusters.ErrNotConnected.
func (f *Members) Reader(cluster string) (client.Reader, error) {
	m, ok := f.members[cluster]
	switch {
	case ok && m.Reader != nil:
		return m.Reader, nil
	case ok && m.Client != nil:
		return m.Client, nil
	}
	return nil, fmt.Errorf("member cluster %q: %w", cluster, clusters.ErrNotConnected)
}

// ServedKinds returns the member's Served kinds of gv, or clusters.ErrNotConnected.
func (f *Members) ServedKinds(cluster string, gv schema.GroupVersion) (map[string]bool, error) {
	m, ok := f.members[cluster]
	if !ok || m.Client == nil {
		return nil, fmt.Errorf("member cluster %q: %w", cluster, clusters.ErrNotConnected)
	}
	kinds := map[string]bool{}
	for _, k := range m.Served[gv] {
		kinds[k] = true
	}
	return kinds, nil
}

// Connected lists the members in name order (the real manager promises no order; a sorted
// list keeps tests deterministic without hiding order dependence in the code under test
// any more than the real one would).
func (f *Members) Connected() []string {
	names := make([]string, 0, len(f.members))
	for name := range f.members {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// RegisterWatch records obj; see Registered.
func (f *Members) RegisterWatch(obj client.Object, _ cache.ByObject) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registered = append(f.registered, obj)
	return nil
}

// RegisterOnDemand records obj like RegisterWatch; see Registered.
func (f *Members) RegisterOnDemand(obj client.Object, opts cache.ByObject) error {
	return f.RegisterWatch(obj, opts)
}

// RegisterFilter accepts any filter: the fake's readers serve whatever the test put there.
func (f *Members) RegisterFilter(client.Object, clusters.FilterFactory) error { return nil }

// Demand records whether holder needs obj's kind in cluster; see Demanded.
func (f *Members) Demand(cluster string, obj client.Object, holder string, needed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := fmt.Sprintf("%s/%T", cluster, obj)
	if f.demands == nil {
		f.demands = map[string]map[string]bool{}
	}
	if f.demands[key] == nil {
		f.demands[key] = map[string]bool{}
	}
	if needed {
		f.demands[key][holder] = true
	} else {
		delete(f.demands[key], holder)
	}
}

// Demanded lists, in name order, the holders that need obj's kind in cluster now.
func (f *Members) Demanded(cluster string, obj client.Object) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for h := range f.demands[fmt.Sprintf("%s/%T", cluster, obj)] {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// Registered returns the objects passed to RegisterWatch, in call order.
func (f *Members) Registered() []client.Object {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]client.Object(nil), f.registered...)
}

// WatchSource returns a source that delivers nothing.
func (f *Members) WatchSource(client.Object, clusters.MapFunc) source.Source { return silent() }

// ConnectionSource returns a source that delivers nothing.
func (f *Members) ConnectionSource(func(context.Context, string) []reconcile.Request) source.Source {
	return silent()
}

// KindSource returns a source that delivers nothing and a KindWatches that records kinds
// (see Kinds).
func (f *Members) KindSource(clusters.MapFunc) (source.Source, clusters.KindWatches) {
	return silent(), kindRecorder{f}
}

// Kinds returns the kinds passed to EnsureKind of any KindSource, in call order.
func (f *Members) Kinds() []schema.GroupVersionKind {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]schema.GroupVersionKind(nil), f.kinds...)
}

type kindRecorder struct{ f *Members }

func (k kindRecorder) EnsureKind(gvk schema.GroupVersionKind) {
	k.f.mu.Lock()
	defer k.f.mu.Unlock()
	k.f.kinds = append(k.f.kinds, gvk)
}

// silent is a source that starts and delivers no event.
func silent() source.Source {
	return source.Func(func(context.Context, workqueue.TypedRateLimitingInterface[reconcile.Request]) error { return nil })
}
