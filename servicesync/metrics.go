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

// dirtyTimes remembers when a source change was first seen, so that the reconcile that
// writes its mirrors can observe the propagation latency. Level-triggered reconciles do
// not depend on it: it only feeds the metric.
type dirtyTimes struct {
	mu    sync.Mutex
	since map[string]time.Time
}

func newDirtyTimes() *dirtyTimes { return &dirtyTimes{since: map[string]time.Time{}} }

func (d *dirtyTimes) mark(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.since[key]; !ok {
		d.since[key] = time.Now()
	}
}

func (d *dirtyTimes) observe(key string) {
	d.mu.Lock()
	t, ok := d.since[key]
	delete(d.since, key)
	d.mu.Unlock()
	if ok {
		propagationLatency.Observe(time.Since(t).Seconds())
	}
}
