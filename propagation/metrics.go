package propagation

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Propagation metrics, served on the controller's metrics endpoint.
var (
	applies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flotilla_baseline_applies_total",
		Help: "Baseline applies to a member, by result (succeeded, failed).",
	}, []string{"cluster", "result"})
	objectsWritten = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flotilla_baseline_objects_written_total",
		Help: "Objects created or updated in a member by Baseline applies (zero in steady state).",
	}, []string{"cluster"})
	driftCorrections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flotilla_baseline_drift_corrections_total",
		Help: "Objects a Baseline restored in a member after they drifted.",
	}, []string{"cluster"})
	prunes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flotilla_baseline_prunes_total",
		Help: "Objects deleted from a member because they left a Baseline (or their Baseline was deleted).",
	}, []string{"cluster"})
	applyLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "flotilla_baseline_apply_duration_seconds",
		Help:    "Duration of one Baseline apply to a member (dry-run diff, writes, prune, health).",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
	}, []string{"cluster"})
)

func init() {
	metrics.Registry.MustRegister(applies, objectsWritten, driftCorrections, prunes, applyLatency)
}
