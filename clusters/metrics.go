package clusters

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// connectionMetrics are the connection manager's Prometheus metrics, served on the
// controller's metrics endpoint.
type connectionMetrics struct {
	members      *prometheus.GaugeVec
	probeLatency *prometheus.HistogramVec
	reconnects   *prometheus.CounterVec

	mu    sync.Mutex
	state map[string]string
}

var defaultMetrics = func() *connectionMetrics {
	m := &connectionMetrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flotilla_member_clusters",
			Help: "Member clusters by connection state (connected, disconnected).",
		}, []string{"state"}),
		probeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flotilla_member_probe_duration_seconds",
			Help:    "Duration of member health probes (server version and node count).",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"cluster"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flotilla_member_reconnects_total",
			Help: "Connections rebuilt or lost per member (credential change or disconnect).",
		}, []string{"cluster"}),
		state: map[string]string{},
	}
	metrics.Registry.MustRegister(m.members, m.probeLatency, m.reconnects)
	return m
}()

// setState moves a member into a state and recomputes the per-state gauge.
func (m *connectionMetrics) setState(cluster, state string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state[cluster] = state
	m.recount()
}

// forget drops a removed member from every metric.
func (m *connectionMetrics) forget(cluster string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.state, cluster)
	m.recount()
	m.probeLatency.DeleteLabelValues(cluster)
	m.reconnects.DeleteLabelValues(cluster)
}

func (m *connectionMetrics) recount() {
	counts := map[string]float64{"connected": 0, "disconnected": 0}
	for _, s := range m.state {
		counts[s]++
	}
	for s, n := range counts {
		m.members.WithLabelValues(s).Set(n)
	}
}

// memberReady is the per-member readiness gauge, set from each MemberCluster's Ready
// condition once its status is written, and deleted when the MemberCluster is gone: a
// platform team alerts on members that are not ready, and a member that left is not one.
var memberReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "flotilla_member_ready",
	Help: "1 while the MemberCluster's Ready condition is True, else 0 (not connected, credentials refused, connecting).",
}, []string{"cluster"})

func init() { metrics.Registry.MustRegister(memberReady) }

// observeMember sets the readiness gauge of mc from the status just computed for it.
func observeMember(mc *fleetv1alpha1.MemberCluster) {
	v := 0.0
	if meta.IsStatusConditionTrue(mc.Status.Conditions, fleetv1alpha1.ConditionReady) {
		v = 1
	}
	memberReady.WithLabelValues(mc.Name).Set(v)
}

// forgetMember deletes the readiness series of a member that is gone.
func forgetMember(cluster string) { memberReady.DeleteLabelValues(cluster) }
