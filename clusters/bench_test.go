package clusters

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// BenchmarkRegisterMembers registers 10 real members through kubeconfig Secrets and
// reports, as medians over iterations: seconds until every member is Ready (ns/op times only
// this), hub heap growth per connected member, and hub CPU per health probe in steady state
// — the process's CPU over a window divided by the probes that actually ran in it, counted
// from the probe-duration histogram (steady state is probes and the heartbeat status writes
// that report them). Run with `make bench`.
func BenchmarkRegisterMembers(b *testing.B) {
	const members = 10
	fleet := localfleet.StartForTest(b, localfleet.Options{Members: members, NoControllerManager: true})
	ctx := context.Background()
	probes := Options{ProbeInterval: time.Second, ProbeTimeout: 5 * time.Second}

	var readySecs, heapPerMember, cpuPerProbe, probeCounts []float64
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		r, stop := runRegistry(b, fleet, probes)
		// The hub cache is synced once a list succeeds; heap from here on is per member.
		eventually(b, 30*time.Second, "hub cache synced", func() error {
			return r.hub.List(ctx, &fleetv1alpha1.MemberClusterList{})
		})
		heapBefore := heapInUse()
		b.StartTimer()
		start := time.Now()
		for _, m := range fleet.Members {
			must(b, r.hub.Create(ctx, kubeconfigSecret(m.Name, m.Kubeconfig(),
				map[string]string{fleetv1alpha1.LabelKubeconfig: "true"}, nil)))
		}
		eventually(b, 2*time.Minute, "every member Ready", func() error {
			list := &fleetv1alpha1.MemberClusterList{}
			if err := r.hub.List(ctx, list); err != nil {
				return err
			}
			ready := 0
			for _, mc := range list.Items {
				if meta.IsStatusConditionTrue(mc.Status.Conditions, fleetv1alpha1.ConditionReady) {
					ready++
				}
			}
			if ready < members {
				return fmt.Errorf("%d of %d Ready", ready, members)
			}
			return nil
		})
		readySecs = append(readySecs, time.Since(start).Seconds())
		b.StopTimer()
		heapPerMember = append(heapPerMember, (float64(heapInUse())-float64(heapBefore))/members)

		// Steady state: only probes run (statuses are current).
		window := 5 * time.Second
		probes0, cpu0 := probesDone(fleet), processCPU()
		time.Sleep(window)
		n := probesDone(fleet) - probes0
		if n == 0 {
			b.Fatalf("no probe ran in %s of steady state", window)
		}
		cpuPerProbe = append(cpuPerProbe, (processCPU()-cpu0).Seconds()*1000/n)
		probeCounts = append(probeCounts, n)

		for _, m := range fleet.Members {
			must(b, client.IgnoreNotFound(r.hub.Delete(ctx, kubeconfigSecret(m.Name, nil, nil, nil))))
			must(b, client.IgnoreNotFound(r.hub.Delete(ctx, &fleetv1alpha1.MemberCluster{ObjectMeta: metav1.ObjectMeta{Name: m.Name}})))
		}
		stop()
	}
	b.ReportMetric(fleettest.Median(readySecs), "s-until-10-ready")
	b.ReportMetric(fleettest.Median(heapPerMember)/1024, "KiB-heap-growth/member")
	b.ReportMetric(fleettest.Median(cpuPerProbe), "cpu-ms/probe")
	b.ReportMetric(fleettest.Median(probeCounts), "probes/5s-window")
}

// probesDone counts the health probes run so far against the fleet's members: the sample
// count of the probe-duration histogram, which every probe observes.
func probesDone(fleet *localfleet.Fleet) float64 {
	total := 0.0
	for _, m := range fleet.Members {
		h, ok := defaultMetrics.probeLatency.WithLabelValues(m.Name).(prometheus.Histogram)
		if !ok {
			continue
		}
		var out dto.Metric
		if err := h.Write(&out); err == nil {
			total += float64(out.GetHistogram().GetSampleCount())
		}
	}
	return total
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
