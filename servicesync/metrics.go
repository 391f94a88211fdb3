package servicesync

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Service-sync metrics, served on the controller's metrics endpoint.
var (
	exportMirrors = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "flotilla_service_mirrors",
		Help: "Members holding a current mirror of an exported Service.",
	}, []string{"export"})
	exportConflicts = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "flotilla_service_mirror_conflicts",
		Help: "Members where an exported Service's mirror is blocked by an object Flotilla does not own.",
	}, []string{"export"})
	mirrorWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flotilla_service_mirror_writes_total",
		Help: "Mirror objects created, updated or deleted in a member (zero in steady state).",
	}, []string{"cluster"})
	propagationLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "flotilla_service_endpoint_propagation_seconds",
		Help:    "From a source Service or EndpointSlice change seen by the hub to its mirrors written in every target.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	})
)

func init() {
	metrics.Registry.MustRegister(exportMirrors, exportConflicts, mirrorWrites, propagationLatency)
}

// dirtyLimit bounds dirtyTimes: past it, new changes are not timed (the metric samples).
const dirtyLimit = 10000

// dirtyTimes remembers when a change to an exported source was first seen, so that the
// reconcile that writes its mirrors can observe the propagation latency. Level-triggered
// reconciles do not depend on it: it only feeds the metric. Only exported sources are
// marked, every reconcile ends its source's entry, and the map never holds more than
// limit entries.
type dirtyTimes struct {
	mu    sync.Mutex
	limit int
	since map[exportRequest]time.Time
}

func newDirtyTimes(limit int) *dirtyTimes {
	return &dirtyTimes{limit: limit, since: map[exportRequest]time.Time{}}
}

// mark records that a change of req was seen now, unless an earlier one is pending.
func (d *dirtyTimes) mark(req exportRequest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.since[req]; !ok && len(d.since) < d.limit {
		d.since[req] = time.Now()
	}
}

// observe records the latency of req's pending change: its mirrors were just written.
func (d *dirtyTimes) observe(req exportRequest) {
	d.mu.Lock()
	t, ok := d.since[req]
	delete(d.since, req)
	d.mu.Unlock()
	if ok {
		propagationLatency.Observe(time.Since(t).Seconds())
	}
}

// done ends a reconcile of req that started at started: a change seen before it is
// settled (observed if the reconcile wrote, else nothing to time); one seen since stays for
// the reconcile it enqueued.
func (d *dirtyTimes) done(req exportRequest, started time.Time, wrote bool) {
	if wrote {
		d.observe(req)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.since[req]; ok && t.Before(started) {
		delete(d.since, req)
	}
}

// len is the number of pending changes.
func (d *dirtyTimes) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.since)
}
