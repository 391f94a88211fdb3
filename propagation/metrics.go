package propagation

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Propagation metrics, served on the controller's metrics endpoint. Per-binding series carry
// the Baseline and the member (one set per BaselineBinding, as many as `kubectl get
// baselinebindings` lists) and are deleted with the binding; per-Baseline gauges are
// deleted with the Baseline, so that nothing reports on what is gone.
var (
	applies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flotilla_baseline_applies_total",
		Help: "Baseline applies to a member, by result (succeeded, failed).",
	}, []string{"baseline", "cluster", "result"})
	objectsWritten = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flotilla_baseline_objects_written_total",
		Help: "Objects created or updated in a member by Baseline applies (zero in steady state).",
	}, []string{"baseline", "cluster"})
	driftCorrections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flotilla_baseline_drift_corrections_total",
		Help: "Objects a Baseline restored in a member after someone else deleted or changed them (not the Baseline's own changes).",
	}, []string{"baseline", "cluster"})
	prunes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flotilla_baseline_prunes_total",
		Help: "Objects deleted from a member because they left a Baseline (or their Baseline was deleted).",
	}, []string{"baseline", "cluster"})
	applyLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "flotilla_baseline_apply_duration_seconds",
		Help:    "Duration of one Baseline apply to a member (dry-run diff, writes, prune, health).",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
	}, []string{"baseline", "cluster"})
	bindingDrifted = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "flotilla_baseline_binding_drifted",
		Help: "1 while a member differs from its Baseline and the difference is not corrected (Drifted=True: policy Inform, or a correction that fails), else 0.",
	}, []string{"baseline", "cluster"})
	baselineReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "flotilla_baseline_ready",
		Help: "1 while the Baseline's Ready condition is True, else 0.",
	}, []string{"baseline"})
	baselineStalled = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "flotilla_baseline_stalled",
		Help: "1 while the Baseline is Stalled (a person must act: sources that do not render, a rollout stopped at maxFailures), else 0.",
	}, []string{"baseline"})
	baselineMembers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "flotilla_baseline_members",
		Help: "Members of a Baseline by state, as its status counts them (selected, applied, healthy, failed, unreachable, drifted, conflicted).",
	}, []string{"baseline", "state"})
)

func init() {
	metrics.Registry.MustRegister(applies, objectsWritten, driftCorrections, prunes, applyLatency,
		bindingDrifted, baselineReady, baselineStalled, baselineMembers)
}

// bindingSeries are the vectors with a series per binding.
var bindingSeries = []*prometheus.MetricVec{applies.MetricVec, objectsWritten.MetricVec, driftCorrections.MetricVec,
	prunes.MetricVec, applyLatency.MetricVec, bindingDrifted.MetricVec}

// forgetBinding deletes a binding's series: it was removed (its member left, its Baseline
// was deleted or no longer selects the member) and its clean-up is done.
func forgetBinding(baseline, cluster string) {
	for _, v := range bindingSeries {
		v.DeletePartialMatch(prometheus.Labels{"baseline": baseline, "cluster": cluster})
	}
}

// observeBaseline sets a Baseline's gauges from the status just computed for it.
func observeBaseline(b *fleetv1alpha1.Baseline) {
	baselineReady.WithLabelValues(b.Name).Set(conditionGauge(b.Status.Conditions, fleetv1alpha1.ConditionReady))
	baselineStalled.WithLabelValues(b.Name).Set(conditionGauge(b.Status.Conditions, fleetv1alpha1.ConditionStalled))
	s := b.Status
	for state, n := range map[string]int32{"selected": s.Selected, "applied": s.Applied, "healthy": s.Healthy, "failed": s.Failed,
		"unreachable": s.Unreachable, "drifted": s.Drifted, "conflicted": s.Conflicted} {
		baselineMembers.WithLabelValues(b.Name, state).Set(float64(n))
	}
}

// forgetBaseline deletes every series of a deleted Baseline (its bindings' as well, in case
// one was left behind).
func forgetBaseline(name string) {
	for _, v := range append([]*prometheus.MetricVec{baselineReady.MetricVec, baselineStalled.MetricVec, baselineMembers.MetricVec}, bindingSeries...) {
		v.DeletePartialMatch(prometheus.Labels{"baseline": name})
	}
}

// conditionGauge is 1 when the condition is True, else 0.
func conditionGauge(conds []metav1.Condition, typ string) float64 {
	if meta.IsStatusConditionTrue(conds, typ) {
		return 1
	}
	return 0
}
