package clusters

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// BenchmarkRegisterMembers registers 10 real members through kubeconfig Secrets and
// reports: seconds until every member is Ready, hub heap per connected member, and hub
// CPU per health probe in steady state. Run with `make bench`.
func BenchmarkRegisterMembers(b *testing.B) {
	const members = 10
	fleet := localfleet.StartForTest(b, localfleet.Options{Members: members, NoControllerManager: true})
	ctx := context.Background()
	probes := Options{ProbeInterval: time.Second, ProbeTimeout: 5 * time.Second}

	var readySecs, heapPerMember, cpuPerProbe []float64
	for i := 0; i < b.N; i++ {
		r, stop := runRegistry(b, fleet, probes)
		// The hub cache is synced once a list succeeds; heap from here on is per member.
		eventually(b, 30*time.Second, "hub cache synced", func() error {
			return r.hub.List(ctx, &fleetv1alpha1.MemberClusterList{})
		})
		heapBefore := heapInUse()
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
		heapPerMember = append(heapPerMember, float64(heapInUse()-heapBefore)/members)

		// Steady state: only probes run (statuses are current); hub CPU over a window
		// divided by the probes in it.
		window := 5 * time.Second
		cpu0 := processCPU()
		time.Sleep(window)
		cpuPerProbe = append(cpuPerProbe, (processCPU()-cpu0).Seconds()*1000/(window.Seconds()/probes.ProbeInterval.Seconds()*members))

		stop()
		for _, m := range fleet.Members {
			must(b, client.IgnoreNotFound(r.hub.Delete(ctx, kubeconfigSecret(m.Name, nil, nil, nil))))
			must(b, client.IgnoreNotFound(r.hub.Delete(ctx, &fleetv1alpha1.MemberCluster{ObjectMeta: metav1.ObjectMeta{Name: m.Name}})))
		}
	}
	b.ReportMetric(median(readySecs), "s-until-10-ready")
	b.ReportMetric(median(heapPerMember)/1024, "KiB-heap/member")
	b.ReportMetric(median(cpuPerProbe), "cpu-ms/probe")
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

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}
