package clusters

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// ErrNotConnected is returned for a member that has no healthy connection. Callers should
// wait for the member's connect event rather than retry in a loop.
var ErrNotConnected = errors.New("member cluster is not connected")

// MemberAccess is what other controllers need from the connection manager: a member's
// client and cache, and events when members come and go. propagation and servicesync
// depend on this interface only.
type MemberAccess interface {
	// Client is a direct (uncached) client of a connected member, for writes and reads
	// that must be fresh.
	Client(cluster string) (client.Client, error)
	// Reader reads from the member's cache. It only serves kinds registered with
	// RegisterWatch; anything else fails instead of silently starting a new watch.
	Reader(cluster string) (client.Reader, error)
	// Connected lists the members connected now.
	Connected() []string
	// RegisterWatch declares that obj is to be cached in every member, scoped by opts.
	// A *metav1.PartialObjectMetadata with its kind set registers a metadata-only watch of
	// that kind; opts.Transform, if set, replaces the default transform (which trims
	// managedFields to what shows foreign writes, see trimManagedFields). Call it while
	// setting up controllers, before the manager starts.
	RegisterWatch(obj client.Object, opts cache.ByObject) error
	// RegisterOnDemand declares a kind that a member caches only while some holder needs
	// it there (see Demand), scoped by opts like RegisterWatch. Handlers of WatchSource for
	// it are attached whenever its kind runs. Call it before the manager starts.
	RegisterOnDemand(obj client.Object, opts cache.ByObject) error
	// RegisterFilter puts a filter in front of a registered kind's store in every
	// member cache: the cache holds only the objects it keeps (see filter.go). For kinds no
	// server-side selector can scope. Call it before the manager starts.
	RegisterFilter(obj client.Object, newFilter FilterFactory) error
	// Demand records whether holder needs the on-demand kind of obj cached in cluster. The
	// member's cache runs the kind while at least one holder needs it (also after a reconnect)
	// and is removed, with what it held, when the last holder lets go. Reads through
	// Reader wait for the kind's first list; without demand they fail.
	Demand(cluster string, obj client.Object, holder string, needed bool)
	// WatchSource delivers events for obj in every connected member (now and later),
	// mapped to hub requests by mapFn. obj must have been registered.
	WatchSource(obj client.Object, mapFn MapFunc) source.Source
	// ConnectionSource delivers a request set whenever a member connects or disconnects.
	ConnectionSource(mapFn func(ctx context.Context, cluster string) []reconcile.Request) source.Source
	// KindSource delivers metadata events of dynamically chosen kinds (see KindWatches)
	// in every connected member, scoped by Options.DynamicLabelSelector.
	KindSource(mapFn MapFunc) (source.Source, KindWatches)
	// ServedKinds returns the kinds a connected member serves in one group version (none
	// when it does not serve the group version), from that group version's discovery only.
	ServedKinds(cluster string, gv schema.GroupVersion) (map[string]bool, error)
}

// KindWatches adds kinds to a KindSource while the manager runs, for kinds known only at
// run time (whatever a Baseline applies).
type KindWatches interface {
	// EnsureKind watches gvk in every connected member, now and after reconnects.
	EnsureKind(gvk schema.GroupVersionKind)
}

// MapFunc maps an object event in a member to hub requests.
type MapFunc func(ctx context.Context, cluster string, obj client.Object) []reconcile.Request

// Options tune the connection manager; the zero value gets the defaults.
type Options struct {
	// ProbeInterval between health probes of a connected member.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe, so a hanging member costs at most this much.
	ProbeTimeout time.Duration
	// NodeCountInterval is how often a connected member's Nodes are counted (status.nodeCount);
	// the probes in between ask for the version only. Default one minute, and never more
	// often than ProbeInterval.
	NodeCountInterval time.Duration
	// FailureThreshold consecutive failed probes disconnect a member.
	FailureThreshold int
	// MaxBackoff caps the interval between probes of a member that has never answered
	// since it was registered (a wrong address). A member that was connected before is
	// probed every ProbeInterval while it is away, so that it is back within one interval
	// of answering again.
	MaxBackoff time.Duration
	// CacheSyncTimeout bounds the wait for a new member cache to sync; a member whose cache
	// does not sync in time is not connected (the next probe tries again).
	CacheSyncTimeout time.Duration
	// RequestTimeout bounds every call a controller makes to a member through Client or
	// Reader (and is the member clients' rest.Config Timeout), so a member that stops
	// answering holds a worker at most this long.
	RequestTimeout time.Duration
	// DynamicLabelSelector scopes the member cache's kinds added through KindSource (and
	// registered kinds without their own selector), so that a member cache never holds
	// objects Flotilla did not write. Nil means every object.
	DynamicLabelSelector labels.Selector
}

func (o *Options) defaults() {
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 10 * time.Second
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = 5 * time.Second
	}
	if o.NodeCountInterval <= 0 {
		o.NodeCountInterval = time.Minute
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = 3
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 2 * time.Minute
	}
	if o.CacheSyncTimeout <= 0 {
		o.CacheSyncTimeout = 30 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
}

// EventKind tells listeners what changed about a member.
type EventKind int

const (
	// EventConnected: the member became reachable (a new cache is syncing).
	EventConnected EventKind = iota
	// EventDisconnected: the member crossed the failure threshold or was removed.
	EventDisconnected
	// EventProbed: a probe changed something else worth reporting (version, nodes, error).
	EventProbed
)

type listener func(cluster string, kind EventKind)

// watchRegistration is one kind cached in every member plus the handlers attached to it.
type watchRegistration struct {
	obj  client.Object
	opts cache.ByObject
	// onDemand kinds are not started with a member cache, only on Demand.
	onDemand bool
}

// kindWatch is one dynamically watched kind and the handler of its KindSource.
type kindWatch struct {
	gvk     schema.GroupVersionKind
	handler watchHandler
}

type watchHandler struct {
	obj   client.Object
	mapFn MapFunc
	queue workqueue.TypedRateLimitingInterface[reconcile.Request]
	ctx   context.Context
	// onDemand: obj's kind runs only on Demand; the handler is attached when it starts.
	onDemand bool
}

// Connections keeps one connection per member cluster: a client, a scoped cache and a
// health prober. It is a manager.Runnable; its goroutines stop with the manager.
//
// Locking: mu guards the maps and slices only and is never held across a network call,
// so one slow member cannot delay another.
type Connections struct {
	opts   Options
	scheme *runtime.Scheme

	mu         sync.Mutex
	ctx        context.Context // set by Start
	members    map[string]*member
	registered []watchRegistration
	handlers   []watchHandler
	listeners  []listener
	kinds      []kindWatch
	filters    map[string]FilterFactory // by watchKey (filter.go)
	cachesMade bool
	metrics    *connectionMetrics
}

var _ MemberAccess = &Connections{}

// NewConnections returns a connection manager; add it to the controller manager with
// mgr.Add so it runs (on the leader only).
func NewConnections(scheme *runtime.Scheme, opts Options) *Connections {
	opts.defaults()
	return &Connections{opts: opts, scheme: scheme, members: map[string]*member{}, metrics: defaultMetrics}
}

// NeedLeaderElection: only the leader talks to members.
func (c *Connections) NeedLeaderElection() bool { return true }

// Start runs until ctx ends, then closes every member connection.
func (c *Connections) Start(ctx context.Context) error {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	<-ctx.Done()
	c.mu.Lock()
	members := c.members
	c.members = map[string]*member{}
	c.mu.Unlock()
	for _, m := range members {
		m.stop()
	}
	return nil
}

// Ensure makes sure a connection for cluster exists with these credentials. It rebuilds
// the connection only when the credential hash changed, and returns without waiting for
// the member: the first probe runs in the background and reports through listeners. A
// connected member whose kubeconfig changed in its bearer token only (a renewal) takes the
// new token in place: rebuilding would drop its cache and make every controller catch up
// with it again, once per renewal.
func (c *Connections) Ensure(cluster string, creds *Credentials) error {
	c.mu.Lock()
	if c.ctx == nil {
		c.mu.Unlock()
		return errors.New("connection manager is not started")
	}
	old := c.members[cluster]
	if old != nil && old.hash == creds.Hash {
		c.mu.Unlock()
		return nil
	}
	if old != nil && old.takeToken(creds) {
		ctx := c.ctx
		c.mu.Unlock()
		log.FromContext(ctx).V(1).Info("member token replaced in place", "cluster", cluster)
		return nil
	}
	m, err := newMember(c.memberConfig(), cluster, creds)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	c.members[cluster] = m
	ctx := c.ctx
	c.mu.Unlock()

	if old != nil {
		old.stop()
		c.metrics.reconnects.WithLabelValues(cluster).Inc()
		log.FromContext(ctx).Info("member credentials changed, reconnecting", "cluster", cluster)
	}
	m.run(ctx)
	return nil
}

// Remove closes the connection of cluster, if any, and tells listeners it is gone.
func (c *Connections) Remove(cluster string) {
	c.mu.Lock()
	m := c.members[cluster]
	delete(c.members, cluster)
	c.mu.Unlock()
	if m == nil {
		return
	}
	wasConnected := m.health().Connected
	m.stop()
	c.metrics.forget(cluster)
	if wasConnected {
		c.notify(cluster, EventDisconnected)
	}
}

// Health is the last observed health of a member; ok is false when there is no connection.
func (c *Connections) Health(cluster string) (Health, bool) {
	c.mu.Lock()
	m := c.members[cluster]
	c.mu.Unlock()
	if m == nil {
		return Health{}, false
	}
	return m.health(), true
}

// Client implements MemberAccess.
func (c *Connections) Client(cluster string) (client.Client, error) {
	m, err := c.connected(cluster)
	if err != nil {
		return nil, err
	}
	return m.deadlineClient, nil
}

// Reader implements MemberAccess.
func (c *Connections) Reader(cluster string) (client.Reader, error) {
	m, err := c.connected(cluster)
	if err != nil {
		return nil, err
	}
	r := m.reader()
	if r == nil {
		return nil, fmt.Errorf("cluster %q: %w (cache not started)", cluster, ErrNotConnected)
	}
	// A cache read of a kind that has not synced waits for it: bounded too.
	return deadlineReader{Reader: r, timeout: c.opts.RequestTimeout}, nil
}

// Connected implements MemberAccess.
func (c *Connections) Connected() []string {
	c.mu.Lock()
	ms := make([]*member, 0, len(c.members))
	for _, m := range c.members {
		ms = append(ms, m)
	}
	c.mu.Unlock()
	var names []string
	for _, m := range ms {
		if m.health().Connected {
			names = append(names, m.name)
		}
	}
	return names
}

func (c *Connections) connected(cluster string) (*member, error) {
	c.mu.Lock()
	m := c.members[cluster]
	c.mu.Unlock()
	if m == nil || !m.health().Connected {
		return nil, fmt.Errorf("cluster %q: %w", cluster, ErrNotConnected)
	}
	return m, nil
}

// RegisterWatch implements MemberAccess.
func (c *Connections) RegisterWatch(obj client.Object, opts cache.ByObject) error {
	return c.register(obj, opts, false)
}

// RegisterOnDemand implements MemberAccess.
func (c *Connections) RegisterOnDemand(obj client.Object, opts cache.ByObject) error {
	return c.register(obj, opts, true)
}

func (c *Connections) register(obj client.Object, opts cache.ByObject, onDemand bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cachesMade {
		// Scoping is fixed when a member cache is built; a late registration would be
		// unscoped in caches that already exist.
		return fmt.Errorf("register %T: member caches already exist; register watches before the manager starts", obj)
	}
	for _, r := range c.registered {
		if watchKey(r.obj) != watchKey(obj) {
			continue
		}
		// Two controllers may need the same kind (Namespaces, Services); they share one
		// store, so they must agree on its scope.
		if fmt.Sprint(r.opts.Label) != fmt.Sprint(opts.Label) || fmt.Sprint(r.opts.Field) != fmt.Sprint(opts.Field) {
			return fmt.Errorf("register %T: already registered with another scope (label %v, field %v)", obj, r.opts.Label, r.opts.Field)
		}
		if r.onDemand != onDemand {
			return fmt.Errorf("register %T: already registered, on demand %v", obj, r.onDemand)
		}
		return nil
	}
	c.registered = append(c.registered, watchRegistration{obj: obj, opts: opts, onDemand: onDemand})
	return nil
}

// Demand implements MemberAccess. A cluster without a connection records nothing: its
// holders demand again when it connects (its connect event reaches them).
func (c *Connections) Demand(cluster string, obj client.Object, holder string, needed bool) {
	c.mu.Lock()
	m := c.members[cluster]
	reg, ok := c.registration(obj)
	var handlers []watchHandler
	for _, h := range c.handlers {
		if watchKey(h.obj) == watchKey(obj) {
			handlers = append(handlers, h)
		}
	}
	c.mu.Unlock()
	if m == nil || !ok || !reg.onDemand {
		return
	}
	m.demand(reg.obj, holder, needed, handlers)
}

// WatchSource implements MemberAccess.
func (c *Connections) WatchSource(obj client.Object, mapFn MapFunc) source.Source {
	return source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		c.mu.Lock()
		reg, ok := c.registration(obj)
		if !ok {
			c.mu.Unlock()
			return fmt.Errorf("watch %T: not registered with RegisterWatch", obj)
		}
		h := watchHandler{obj: obj, mapFn: mapFn, queue: q, ctx: ctx, onDemand: reg.onDemand}
		c.handlers = append(c.handlers, h)
		ms := make([]*member, 0, len(c.members))
		for _, m := range c.members {
			ms = append(ms, m)
		}
		c.mu.Unlock()
		for _, m := range ms {
			m.attach(h)
		}
		return nil
	})
}

// KindSource implements MemberAccess.
func (c *Connections) KindSource(mapFn MapFunc) (source.Source, KindWatches) {
	ks := &kindSource{owner: c, mapFn: mapFn, started: make(chan struct{})}
	return source.Func(ks.start), ks
}

// kindSource is a KindSource. EnsureKind calls made before the controller started the
// source wait for it, so that no kind is added without a queue to deliver to.
type kindSource struct {
	owner   *Connections
	mapFn   MapFunc
	once    sync.Once
	started chan struct{}
	handler watchHandler
	mu      sync.Mutex
	seen    map[schema.GroupVersionKind]bool
}

func (k *kindSource) start(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	k.once.Do(func() {
		k.handler = watchHandler{mapFn: k.mapFn, queue: q, ctx: ctx}
		close(k.started)
	})
	return nil
}

// EnsureKind implements KindWatches.
func (k *kindSource) EnsureKind(gvk schema.GroupVersionKind) {
	<-k.started
	k.mu.Lock()
	if k.seen == nil {
		k.seen = map[schema.GroupVersionKind]bool{}
	}
	known := k.seen[gvk]
	k.seen[gvk] = true
	k.mu.Unlock()
	c := k.owner
	kw := kindWatch{gvk: gvk, handler: k.handler}
	c.mu.Lock()
	if !known {
		c.kinds = append(c.kinds, kw)
	}
	ms := make([]*member, 0, len(c.members))
	for _, m := range c.members {
		ms = append(ms, m)
	}
	c.mu.Unlock()
	// Also for a known kind: a member that could not serve it before may serve it now.
	// In the background: asking a member about a new kind must not make the caller (one
	// member's reconcile) wait for another member that stopped answering.
	for _, m := range ms {
		go m.attachKind(kw)
	}
}

// ConnectionSource implements MemberAccess.
func (c *Connections) ConnectionSource(mapFn func(ctx context.Context, cluster string) []reconcile.Request) source.Source {
	return c.eventSource(func(kind EventKind) bool { return kind != EventProbed }, mapFn)
}

// eventSource delivers the member events accepted by filter.
func (c *Connections) eventSource(filter func(EventKind) bool, mapFn func(ctx context.Context, cluster string) []reconcile.Request) source.Source {
	return source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		c.mu.Lock()
		c.listeners = append(c.listeners, func(cluster string, kind EventKind) {
			if !filter(kind) || ctx.Err() != nil {
				return
			}
			for _, r := range mapFn(ctx, cluster) {
				q.Add(r)
			}
		})
		c.mu.Unlock()
		return nil
	})
}

func (c *Connections) registration(obj client.Object) (watchRegistration, bool) {
	for _, r := range c.registered {
		if watchKey(r.obj) == watchKey(obj) {
			return r, true
		}
	}
	return watchRegistration{}, false
}

// watchKey identifies a registered watch: its Go type, and for a metadata-only watch
// (a *metav1.PartialObjectMetadata with its kind set) the kind, so that metadata-only
// watches of different kinds are distinct registrations.
func watchKey(obj client.Object) string {
	if p, ok := obj.(*metav1.PartialObjectMetadata); ok {
		return "metadata:" + p.GroupVersionKind().String()
	}
	return fmt.Sprintf("%T", obj)
}

// memberConfig is what a member of this manager is given (see member.go).
func (c *Connections) memberConfig() memberConfig {
	return memberConfig{opts: c.opts, scheme: c.scheme, metrics: c.metrics,
		registrations: c.registrations, watchers: c.watchers, notify: c.notify, filters: c.memberFilters}
}

func (c *Connections) notify(cluster string, kind EventKind) {
	c.mu.Lock()
	ls := append([]listener(nil), c.listeners...)
	c.mu.Unlock()
	for _, l := range ls {
		l(cluster, kind)
	}
}

// registrations are the registered kinds, for a new member cache; from now on no
// registration is accepted (scoping is fixed when a member cache is built).
func (c *Connections) registrations() []watchRegistration {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cachesMade = true
	return append([]watchRegistration(nil), c.registered...)
}

// watchers are the handlers and dynamic kinds to attach to a new member cache.
func (c *Connections) watchers() ([]watchHandler, []kindWatch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]watchHandler(nil), c.handlers...), append([]kindWatch(nil), c.kinds...)
}

// memberRESTConfig copies a credential config with the timeouts and rate limits the hub
// uses for every member's direct client. The member cache gets the same config without
// the timeout (see cacheRESTConfig): an HTTP client timeout would cut every watch.
func memberRESTConfig(cfg *rest.Config, timeout time.Duration) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "fleet-controller"
	cfg.Timeout = timeout
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	return cfg
}

// cacheRESTConfig is the member config of the member cache: long-running watches, no
// timeout. A hung member's watches are stopped when it disconnects.
func cacheRESTConfig(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 0
	return cfg
}
