package clusters

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Health is what the prober last learned about a member.
type Health struct {
	// Connected is true from the first successful probe until FailureThreshold failures in a row.
	Connected bool
	// Reason is a MemberCluster condition reason for the Connected condition.
	Reason string
	// Message explains Reason; it names the member's error, never credentials.
	Message string
	// Version is the member's Kubernetes version (last successful probe).
	Version string
	// Nodes is the member's node count (last successful probe).
	Nodes int32
	// LastProbe is when the last probe finished.
	LastProbe time.Time
	// Failures counts consecutive failed probes.
	Failures int
}

// memberConfig is what a member needs from the connection manager, handed to it by
// newMember instead of a pointer to the manager, so that a member cannot reach (or lock)
// the manager's state beyond these.
type memberConfig struct {
	opts    Options
	scheme  *runtime.Scheme
	metrics *connectionMetrics
	// registrations returns the registered kinds, read when a member cache is built
	// (registrations may still arrive before the manager starts).
	registrations func() []watchRegistration
	// watchers returns the event handlers and dynamic kinds to attach to a new cache.
	watchers func() ([]watchHandler, []kindWatch)
	// notify dispatches a connect, disconnect or probe event to the manager's listeners.
	notify func(cluster string, kind EventKind)
	// filters returns the registered filters (filter.go), read when a member cache is built.
	filters func() map[string]FilterFactory
}

// member is one member cluster's connection. Its own mutex guards its health and cache;
// nothing here holds the Connections lock.
type member struct {
	cfg  memberConfig
	name string
	// hash and connHash are the credentials' Hash and ConnectionHash (guarded by the
	// Connections lock); token is the bearer token every client of this member sends.
	hash     string
	connHash string
	token    *bearerToken
	config   *rest.Config
	// transport is the one HTTP transport of every client of this member (direct client,
	// probes, discovery, cache): HTTP/2 multiplexes all their requests and watches on one
	// connection, instead of one connection (and its read loop) per client.
	transport http.RoundTripper
	// watchHTTP is the HTTP client of the member cache: the shared transport without a
	// client timeout, which would cut every watch, and without gzip for watches (see
	// uncompressedWatches).
	watchHTTP *http.Client
	// mapper maps kinds for the direct client and the member cache; its discovery of new
	// kinds is bounded by the request timeout.
	mapper meta.RESTMapper
	// mapperHTTP serves discovery (ServedKinds), bounded by the request timeout.
	mapperHTTP *http.Client
	// client is the member's direct client (probes); deadlineClient bounds every call of
	// the other controllers (see withDeadline).
	client         client.Client
	deadlineClient client.Client
	// version is the health probe's request and nodes the Node count's (prober goroutine only).
	version *versionProbe
	nodes   *nodeCount
	// everConnected: a member that answered before is probed every ProbeInterval while it
	// is away (no backoff), so that it is back within one interval of answering again.
	everConnected bool
	// nodesCounted is when the prober last counted the member's Nodes (prober goroutine only).
	nodesCounted time.Time

	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	h           Health
	memberCache *memberCache
	// kinds are the dynamically watched kinds attached to the current cache.
	kinds map[schema.GroupVersionKind]bool
	// running are the on-demand kinds (by watchKey) that run in the current cache.
	running map[string]client.Object

	// demandMu serializes starting and removing on-demand kinds of this member (the
	// cache calls happen outside mu). demands holds, per on-demand kind, who needs it; it
	// outlives a cache, so that a reconnected member starts what is still needed.
	demandMu sync.Mutex
	demands  map[string]*demand
}

// demand is one on-demand kind of a member and the holders that need it.
type demand struct {
	obj      client.Object
	holders  map[string]bool
	handlers []watchHandler
}

func newMember(mc memberConfig, name string, creds *Credentials) (*member, error) {
	cfg := memberRESTConfig(creds.Config, mc.opts.RequestTimeout)
	// The guarded dialer keeps client-go from sharing transports between configs, so every
	// client built from cfg alone would open a connection of its own: build one here.
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: build HTTP transport: %w", name, err)
	}
	withTimeout := func(d time.Duration) *http.Client { return &http.Client{Transport: transport, Timeout: d} }
	// One REST mapper serves the direct client and every cache of this member: each mapper
	// keeps its own copy of the discovery documents it fetched, so a client and a cache
	// with a mapper each held the same groups twice. It lives as long as the member (its
	// credentials); a kind it does not know yet is looked up again on first use. It
	// discovers group by group (see perGroupDiscovery).
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, &http.Client{Transport: perGroupDiscovery{next: transport}, Timeout: mc.opts.RequestTimeout})
	if err != nil {
		return nil, fmt.Errorf("cluster %q: build REST mapper: %w", name, err)
	}
	cl, err := client.NewWithWatch(cfg, client.Options{Scheme: mc.scheme, HTTPClient: withTimeout(mc.opts.RequestTimeout), Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("cluster %q: build client: %w", name, err)
	}
	version, err := newVersionProbe(cfg, withTimeout(mc.opts.ProbeTimeout))
	if err != nil {
		return nil, fmt.Errorf("cluster %q: build health probe: %w", name, err)
	}
	nodes, err := newNodeCount(cfg, withTimeout(mc.opts.ProbeTimeout))
	if err != nil {
		return nil, fmt.Errorf("cluster %q: build Node count: %w", name, err)
	}
	return &member{
		cfg: mc, name: name, hash: creds.Hash, connHash: creds.ConnectionHash, token: creds.token,
		config: cfg, client: cl, version: version, nodes: nodes,
		transport: transport, watchHTTP: &http.Client{Transport: uncompressedWatches{next: transport}},
		mapper: mapper, mapperHTTP: withTimeout(mc.opts.RequestTimeout),
		deadlineClient: withDeadline(cl, mc.opts.RequestTimeout),
		done:           make(chan struct{}),
		h:              Health{Reason: fleetv1alpha1.ReasonConnecting, Message: "waiting for the first health probe"},
	}, nil
}

// takeToken gives a connected member the bearer token of creds, if creds differ from the
// member's credentials in that token only, and tells whether it did. A member that is not
// connected is rebuilt instead, so that it is probed with the new token at once.
func (m *member) takeToken(creds *Credentials) bool {
	if m.token == nil || creds.token == nil || m.connHash != creds.ConnectionHash || !m.health().Connected {
		return false
	}
	m.token.set(creds.token.get())
	m.hash = creds.Hash
	return true
}

func (m *member) health() Health {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.h
}

func (m *member) reader() client.Reader {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.memberCache == nil {
		return nil
	}
	return m.memberCache
}

// run starts the prober. It probes at once, then every ProbeInterval while connected and
// with exponential backoff (up to MaxBackoff) while not.
func (m *member) run(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	m.cancel = cancel
	go func() {
		defer close(m.done)
		logger := log.FromContext(ctx).WithValues("cluster", m.name)
		for {
			wait := m.probeOnce(ctx, logger)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
}

func (m *member) stop() {
	if m.cancel != nil {
		m.cancel()
		<-m.done
	}
	m.stopCache()
	// The connection would otherwise stay open (and its read loop run) until it idles out.
	// Once more a little later: the HTTP/2 connection forgets the streams of the watches
	// just stopped asynchronously, and is not idle before it has.
	utilnet.CloseIdleConnectionsFor(m.transport)
	time.AfterFunc(closeIdleAgain, func() { utilnet.CloseIdleConnectionsFor(m.transport) })
}

// closeIdleAgain is when a stopped member's connection is closed once more (see stop).
const closeIdleAgain = 2 * time.Second

// probeOnce runs one health probe, updates health, starts or stops the cache on a
// transition, tells listeners, and returns how long to wait before the next probe.
func (m *member) probeOnce(ctx context.Context, logger interface {
	Info(string, ...any)
	Error(error, string, ...any)
}) time.Duration {
	opts := m.cfg.opts
	start := time.Now()
	version, nodes, err := m.probe(ctx)
	m.cfg.metrics.probeLatency.WithLabelValues(m.name).Observe(time.Since(start).Seconds())
	if err == nil && !m.health().Connected {
		// Connect only with a synced cache: controllers read members from it, and nothing
		// may be garbage-collected from a cache that has not synced.
		err = m.startCache(ctx)
	}
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return 0
	}

	m.mu.Lock()
	prev := m.h
	next := prev
	next.LastProbe = time.Now()
	if err == nil {
		next.Connected, next.Failures = true, 0
		next.Reason, next.Message = fleetv1alpha1.ReasonConnected, fmt.Sprintf("API server %s answers health probes", m.config.Host)
		next.Version, next.Nodes = version, nodes
	} else {
		next.Failures++
		next.Reason, next.Message = classifyProbeError(err, opts.ProbeTimeout)
		if next.Failures >= opts.FailureThreshold || !prev.Connected {
			next.Connected = false
		}
	}
	m.h = next
	m.mu.Unlock()
	if err != nil && prev.Reason != next.Reason {
		// The raw error may quote the member's answer: the hub's log only, never status.
		logger.Info("member probe failed", "reason", next.Reason, "error", err.Error())
	}

	switch {
	case next.Connected && !prev.Connected:
		logger.Info("member connected", "version", version, "nodes", nodes, "after", elapsed)
		m.everConnected = true
		m.cfg.metrics.setState(m.name, "connected")
		m.cfg.notify(m.name, EventConnected)
	case !next.Connected && prev.Connected:
		logger.Info("member disconnected", "failures", next.Failures, "reason", next.Reason)
		m.stopCache()
		m.cfg.metrics.setState(m.name, "disconnected")
		m.cfg.metrics.reconnects.WithLabelValues(m.name).Inc()
		m.cfg.notify(m.name, EventDisconnected)
	case prev.Reason != next.Reason || prev.Version != next.Version || prev.Nodes != next.Nodes:
		if !next.Connected {
			m.cfg.metrics.setState(m.name, "disconnected")
		}
		m.cfg.notify(m.name, EventProbed)
	}

	if next.Connected || m.everConnected {
		// Probes keep a fixed rate: a probe that waited for its timeout does not push the
		// next one back, so a hung member is detected within interval × threshold (plus
		// one timeout) and a returning one is seen within one interval.
		return max(opts.ProbeInterval-elapsed, 0)
	}
	backoff := opts.ProbeInterval
	for i := 1; i < next.Failures && backoff < opts.MaxBackoff; i++ {
		backoff *= 2
	}
	return min(backoff, opts.MaxBackoff)
}

// probe asks the member for its version, bounded by ProbeTimeout, and counts its nodes when
// the last count is older than NodeCountInterval (or the member is not connected): the
// version answers whether the member is healthy, and a list of every Node (in pages, for a
// big member) every probe would cost the hub and the member far more than the count is worth.
func (m *member) probe(ctx context.Context) (string, int32, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.opts.ProbeTimeout)
	defer cancel()
	v, err := m.version.get(ctx)
	if err != nil {
		return "", 0, err
	}
	h := m.health()
	if h.Connected && time.Since(m.nodesCounted) < m.cfg.opts.NodeCountInterval {
		return v, h.Nodes, nil
	}
	nodes, err := m.nodes.get(ctx)
	if err != nil {
		return "", 0, err
	}
	m.nodesCounted = time.Now()
	return v, nodes, nil
}

// startCache builds the member's cache (membercache.go), starts each registered kind,
// waits (at most CacheSyncTimeout) until those have synced, and attaches the registered
// handlers. Dynamically watched kinds are attached without waiting: a kind the hub's
// identity may not list must not keep the member from connecting.
func (m *member) startCache(parent context.Context) error {
	m.stopCache() // a cache left by an earlier, failed attempt
	// Discovery for new kinds (a Baseline's) goes through the member's mapper, with the
	// request timeout; only the watches themselves run without one. Both use the member's
	// one transport. The watch client: the shared transport without a client timeout,
	// which would cut every watch; its Watch serves typed and metadata-only kinds alike.
	wc, err := client.NewWithWatch(cacheRESTConfig(m.config), client.Options{Scheme: m.cfg.scheme, HTTPClient: m.watchHTTP, Mapper: m.mapper})
	if err != nil {
		return fmt.Errorf("cluster %q: build watch client: %w", m.name, err)
	}
	regs := m.cfg.registrations()
	c := newMemberCache(parent, m.name, wc, m.mapper, m.cfg.scheme, m.cfg.opts.DynamicLabelSelector, m.cfg.filters())
	c.scopes = map[string]cache.ByObject{}
	var started []*kindCache
	for _, r := range regs {
		c.scopes[watchKey(r.obj)] = r.opts
		if r.onDemand {
			continue // started on Demand
		}
		k, err := c.start(r.obj)
		if err != nil {
			c.stop()
			return fmt.Errorf("cluster %q: cache %T: %w", m.name, r.obj, err)
		}
		started = append(started, k)
	}
	timer := time.NewTimer(m.cfg.opts.CacheSyncTimeout)
	defer timer.Stop()
	for _, k := range started {
		select {
		case <-k.synced:
		case <-parent.Done():
			c.stop()
			return parent.Err()
		case <-timer.C:
			c.stop()
			return fmt.Errorf("cluster %q: member cache did not sync within %s: %w", m.name, m.cfg.opts.CacheSyncTimeout, context.DeadlineExceeded)
		}
	}
	m.mu.Lock()
	m.memberCache = c
	m.kinds = map[schema.GroupVersionKind]bool{}
	m.running = map[string]client.Object{}
	m.mu.Unlock()
	m.startDemanded()
	// Handlers registered while the cache synced attached nothing (there was no cache);
	// take them now that the cache is set. One registered meanwhile may attach twice,
	// which costs a duplicate enqueue, never a lost one.
	handlers, kinds := m.cfg.watchers()
	for _, h := range handlers {
		m.attach(h)
	}
	for _, k := range kinds {
		m.attachKind(k)
	}
	return nil
}

// stopCache stops the member cache, if any, and waits for its goroutines: a member that
// disconnects or goes leaves nothing running.
func (m *member) stopCache() {
	m.mu.Lock()
	c := m.memberCache
	m.memberCache = nil
	m.mu.Unlock()
	if c != nil {
		c.stop()
	}
}

// attach adds a handler to the member's cache of h.obj's kind. Events are mapped to hub
// requests; the event type is not passed on, since reconcilers are level-triggered.
func (m *member) attach(h watchHandler) {
	m.mu.Lock()
	c := m.memberCache
	idle := h.onDemand && m.running[watchKey(h.obj)] == nil
	m.mu.Unlock()
	if c == nil || idle {
		return // attached when the member connects, or when its kind is demanded
	}
	k := c.kind(watchKey(h.obj))
	if k == nil {
		log.FromContext(h.ctx).Error(fmt.Errorf("%T is not cached", h.obj), "attach member watch", "cluster", m.name)
		return
	}
	m.addHandler(k, h)
}

// attachKind starts caching the metadata of a dynamically watched kind (scoped by the
// default label selector) and attaches its handler. A kind the member does not serve is
// skipped; the next EnsureKind after its CRD appears picks it up.
func (m *member) attachKind(k kindWatch) {
	m.mu.Lock()
	c := m.memberCache
	if c == nil || m.kinds[k.gvk] {
		m.mu.Unlock()
		return
	}
	m.kinds[k.gvk] = true
	m.mu.Unlock()
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(k.gvk)
	kc, err := c.start(obj)
	if err != nil {
		m.mu.Lock()
		delete(m.kinds, k.gvk)
		m.mu.Unlock()
		log.FromContext(k.handler.ctx).V(1).Info("cannot watch kind in member", "cluster", m.name, "kind", k.gvk.String(), "error", err.Error())
		return
	}
	m.addHandler(kc, k.handler)
}

func (m *member) addHandler(k *kindCache, h watchHandler) {
	enqueue := func(obj client.Object) {
		for _, r := range h.mapFn(h.ctx, m.name, obj) {
			h.queue.Add(r)
		}
	}
	// Both versions of an update: an update can remove what the map function keys on (a
	// namespace editor stripping fleet.flotilla.dev/baseline), and the owner of the old
	// version must still hear of it (the queue merges duplicate requests).
	k.addHandler(func(old, cur client.Object) {
		if h.ctx.Err() != nil {
			return
		}
		if old != nil {
			enqueue(old)
		}
		if cur != nil {
			enqueue(cur)
		}
	})
}

// demand records whether holder needs obj's on-demand kind, and starts or removes the
// kind in the current cache when that turns the kind needed or unneeded.
func (m *member) demand(obj client.Object, holder string, needed bool, handlers []watchHandler) {
	key := watchKey(obj)
	m.demandMu.Lock()
	defer m.demandMu.Unlock()
	if m.demands == nil {
		m.demands = map[string]*demand{}
	}
	d := m.demands[key]
	switch {
	case needed && d == nil:
		d = &demand{obj: obj, holders: map[string]bool{}}
		m.demands[key] = d
		fallthrough
	case needed:
		d.holders[holder] = true
		d.handlers = handlers
	case d != nil:
		delete(d.holders, holder)
		if len(d.holders) == 0 {
			delete(m.demands, key)
		}
	}
	m.syncDemand(key, d)
}

// startDemanded starts, in a new cache, every on-demand kind some holder still needs.
func (m *member) startDemanded() {
	m.demandMu.Lock()
	defer m.demandMu.Unlock()
	for key, d := range m.demands {
		m.syncDemand(key, d)
	}
}

// syncDemand makes the current cache run key's kind exactly while d has holders.
// Called with demandMu held.
func (m *member) syncDemand(key string, d *demand) {
	m.mu.Lock()
	c, obj := m.memberCache, m.running[key]
	m.mu.Unlock()
	needed := d != nil && len(d.holders) > 0
	if c == nil || needed == (obj != nil) {
		return
	}
	if !needed {
		// The kind stops and its store goes: nothing of the kind stays in the hub.
		m.mu.Lock()
		delete(m.running, key)
		m.mu.Unlock()
		c.remove(obj)
		return
	}
	if _, err := c.start(d.obj); err != nil {
		log.FromContext(c.ctx).Error(err, "start on-demand member watch", "cluster", m.name, "kind", key)
		return
	}
	m.mu.Lock()
	m.running[key] = d.obj
	m.mu.Unlock()
	for _, h := range d.handlers {
		m.attach(h)
	}
}
