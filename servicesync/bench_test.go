package servicesync

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"

	"github.com/prometheus/client_golang/prometheus/testutil"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// BenchmarkExport500 exports 500 Services with 10 endpoints each from one of 3 real
// members and reports: seconds until every mirror in both other members holds all
// endpoints, endpoint-change propagation latency to both members (p50, p99 over 40
// changes), mirror writes during a steady-state window (FLOTILLA_BENCH_STEADY, default
// 60s) and hub heap per exported Service. Run with `make bench`.
func BenchmarkExport500(b *testing.B) {
	const services, perService = 500, 10
	for i := 0; i < b.N; i++ {
		e := newEnvTB(b, 3)
		ctx := context.Background()
		src := e.members["member-1"]
		ip := func(svc, ep int) string { return fmt.Sprintf("10.%d.%d.%d", 100+svc/250, svc%250, 10+ep) }
		endpoints := func(svc int, shift int) map[string]bool {
			m := map[string]bool{}
			for ep := 0; ep < perService; ep++ {
				m[ip(svc, ep+shift)] = true
			}
			return m
		}

		start := time.Now()
		for s := 0; s < services; s++ {
			name := fmt.Sprintf("svc-%03d", s)
			must(b, src.Create(ctx, exported(name, map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
			must(b, src.Create(ctx, podSlice(name, endpoints(s, 0))))
		}
		eventually(b, 10*time.Minute, "every export mirrored into 2 members with 10 ready endpoints", func() error {
			list := &fleetv1alpha1.ExportedServiceList{}
			if err := e.hub.List(ctx, list); err != nil {
				return err
			}
			done := 0
			for _, es := range list.Items {
				if len(es.Status.MirroredInto) == 2 && es.Status.ReadyEndpoints == perService {
					done++
				}
			}
			if done < services {
				return fmt.Errorf("%d of %d", done, services)
			}
			return nil
		})
		// The catalog is written after the mirrors, so all mirrors exist now.
		converge := time.Since(start)

		// Endpoint changes: one address replaced, until both members' mirrors show it.
		var lat []float64
		for c := 0; c < 40; c++ {
			s := c * 12 % services
			name := fmt.Sprintf("svc-%03d", s)
			slice := &discoveryv1.EndpointSlice{}
			must(b, src.Get(ctx, types.NamespacedName{Namespace: "shop", Name: name + "-pods"}, slice))
			setEndpoints(slice, endpoints(s, c+1))
			want := ip(s, c+1+perService-1)
			t0 := time.Now()
			must(b, src.Update(ctx, slice))
			for _, target := range []string{"member-2", "member-3"} {
				fleettest.EventuallyEvery(b, 5*time.Millisecond, time.Minute, "changed endpoint in "+target, func() error {
					ready, _, err := e.mirrorEndpoints(target, mirror.Name(name, "member-1"))
					if err != nil {
						return err
					}
					for _, a := range ready {
						if a == want {
							return nil
						}
					}
					return fmt.Errorf("not yet")
				})
			}
			lat = append(lat, time.Since(t0).Seconds())
		}
		sort.Float64s(lat)

		window := 60 * time.Second
		if v := os.Getenv("FLOTILLA_BENCH_STEADY"); v != "" {
			var err error
			window, err = time.ParseDuration(v)
			must(b, err)
		}
		// Let the last change finish (its EndpointSlices follow its Endpoints) before counting.
		for prev := -1.0; prev != mirrorWritesTotal(); {
			prev = mirrorWritesTotal()
			time.Sleep(2 * time.Second)
		}
		w0 := mirrorWritesTotal()
		time.Sleep(window)
		steady := mirrorWritesTotal() - w0

		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(converge.Seconds(), "s-converge-500x10-into-2")
		b.ReportMetric(lat[len(lat)/2]*1000, "ms-endpoint-change-p50")
		b.ReportMetric(lat[len(lat)*99/100]*1000, "ms-endpoint-change-p99")
		b.ReportMetric(steady, fmt.Sprintf("writes-steady-%s", window))
		b.ReportMetric(float64(ms.HeapInuse)/services/1024, "KiB-heap/export")
	}
}

func mirrorWritesTotal() float64 {
	total := 0.0
	for _, c := range []string{"member-1", "member-2", "member-3"} {
		total += testutil.ToFloat64(mirrorWrites.WithLabelValues(c))
	}
	return total
}
