package servicesync

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

const (
	benchServices   = 500
	benchPerService = 10
	// benchChanges endpoint changes per iteration: enough for an honest p99.
	benchChanges = 100
)

// BenchmarkExport500 exports 500 Services with 10 endpoints each from one of 3 real members.
// Every iteration starts its own fleet and controller and tears both down before the next,
// so no iteration's state or counters leak into another's; every figure is a median over
// iterations:
//
//   - s-converge-500x10-into-2: from the first create until every mirror in both other
//     members holds all endpoints (ns/op times only this);
//   - ms-endpoint-change-p50/-p99: one address replaced, until both members' mirrors show it
//     (100 changes per iteration; the pooled samples of all iterations give the percentiles);
//   - writes-steady-<window>: mirror writes during a steady-state window after the last
//     change settled (FLOTILLA_BENCH_STEADY, default 60s);
//   - KiB-heap-growth/export: hub heap growth from before the exports to after convergence.
//
// Run with `make bench`.
func BenchmarkExport500(b *testing.B) {
	window := 60 * time.Second
	if v := os.Getenv("FLOTILLA_BENCH_STEADY"); v != "" {
		var err error
		window, err = time.ParseDuration(v)
		must(b, err)
	}
	var converge, steady, heap, latencies []float64
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		r := exportRun(b, window)
		converge = append(converge, r.converge.Seconds())
		steady = append(steady, r.steadyWrites)
		heap = append(heap, r.heapGrowth/benchServices/1024)
		latencies = append(latencies, r.latencies...)
	}
	b.ReportMetric(fleettest.Median(converge), "s-converge-500x10-into-2")
	fleettest.ReportLatencies(b, "endpoint-change", latencies)
	b.ReportMetric(fleettest.Median(steady), fmt.Sprintf("writes-steady-%s", window))
	b.ReportMetric(fleettest.Median(heap), "KiB-heap-growth/export")
}

type exportResult struct {
	converge     time.Duration
	latencies    []float64
	steadyWrites float64
	heapGrowth   float64
}

// exportRun is one iteration on a fleet of its own, stopped (controller first) on return.
func exportRun(b *testing.B, window time.Duration) exportResult {
	b.Helper()
	ctx := context.Background()
	fleet, err := localfleet.Start(ctx, localfleet.Options{Members: 3})
	must(b, err)
	defer func() { must(b, fleet.Stop()) }()
	e := newEnvOn(b, fleet, 2*time.Second)
	defer e.stop()
	writes := func() float64 { return mirrorWritesTotal(e) }
	src := e.members["member-1"]
	ip := func(svc, ep int) string { return fmt.Sprintf("10.%d.%d.%d", 100+svc/250, svc%250, 10+ep) }
	endpoints := func(svc int, shift int) map[string]bool {
		m := map[string]bool{}
		for ep := 0; ep < benchPerService; ep++ {
			m[ip(svc, ep+shift)] = true
		}
		return m
	}

	var out exportResult
	heap0 := heapInUse()
	b.StartTimer()
	start := time.Now()
	for s := 0; s < benchServices; s++ {
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
			if len(es.Status.MirroredInto) == 2 && es.Status.ReadyEndpoints == benchPerService {
				done++
			}
		}
		if done < benchServices {
			return fmt.Errorf("%d of %d", done, benchServices)
		}
		return nil
	})
	// The catalog is written after the mirrors, so all mirrors exist now.
	out.converge = time.Since(start)
	b.StopTimer()
	out.heapGrowth = float64(heapInUse()) - float64(heap0)

	// Endpoint changes: one address replaced, until both members' mirrors show it.
	for c := 0; c < benchChanges; c++ {
		s := c * 7 % benchServices
		name := fmt.Sprintf("svc-%03d", s)
		slice := &discoveryv1.EndpointSlice{}
		must(b, src.Get(ctx, types.NamespacedName{Namespace: "shop", Name: name + "-pods"}, slice))
		setEndpoints(slice, endpoints(s, c+1))
		want := ip(s, c+1+benchPerService-1)
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
		out.latencies = append(out.latencies, time.Since(t0).Seconds())
	}

	// Let the last change finish (its EndpointSlices follow its Endpoints) before counting.
	for prev := -1.0; prev != writes(); {
		prev = writes()
		time.Sleep(2 * time.Second)
	}
	w0 := writes()
	time.Sleep(window)
	out.steadyWrites = writes() - w0
	return out
}

// mirrorWritesTotal sums the package's mirror-writes counter over e's members. The counter
// is package-wide, but only one fleet and one controller run at a time (each iteration stops
// its own before the next starts), so a delta taken within an iteration is that iteration's.
func mirrorWritesTotal(e *env) float64 {
	total := 0.0
	for c := range e.members {
		total += testutil.ToFloat64(mirrorWrites.WithLabelValues(c))
	}
	return total
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// heapLive is the heap the objects still reachable after a full garbage collection take:
// what the process holds, without the spans that the collector freed only partly or has
// not returned yet (HeapInuse counts those; after a burst of short-lived objects they can
// exceed what is held by megabytes).
func heapLive() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkUnexportedServices measures what a member's unexported Services cost the hub:
// hub heap after the member cache has seen FLOTILLA_BENCH_UNEXPORTED (default 3000)
// Services, each with one EndpointSlice of 30 endpoints, minus the heap before, reported
// per 1,000 Services. Nothing exports them; the hub should hold next to nothing for them.
// Run with -benchtime=1x -count=3 and take the median.
func BenchmarkUnexportedServices(b *testing.B) {
	n := 3000
	if v := os.Getenv("FLOTILLA_BENCH_UNEXPORTED"); v != "" {
		_, err := fmt.Sscan(v, &n)
		must(b, err)
	}
	for i := 0; i < b.N; i++ {
		e := newEnvTB(b, localfleet.Options{Members: 2}, 2*time.Second)
		ctx := context.Background()
		src := e.members["member-1"]
		// A marker export proves the member caches are synced and running before the baseline.
		e.createWithSlice(b, exported("marker-0", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"}), 1)
		e.waitExported(b, "marker-0", 1)
		before := heapInUse()

		created := parallel(16, n, func(j int) error {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("plain-%05d", j),
				Labels: map[string]string{"app": fmt.Sprintf("plain-%05d", j), "team": "payments"}},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
			return e.createServiceWithSlice(ctx, src, svc, 30, j)
		})
		must(b, created)
		// Watches deliver in order per kind: once the last export's Service and slice are
		// seen, so are the unexported ones created before them.
		e.createWithSlice(b, exported("marker-1", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"}), 1)
		e.waitExported(b, "marker-1", 1)
		after := heapInUse()
		b.ReportMetric(float64(int64(after)-int64(before))/float64(n)*1000/(1<<20), "MiB-heap/1000-unexported")
		e.stop()
	}
}

// createWithSlice creates svc in member-1 with one ready endpoint slice of k endpoints.
func (e *env) createWithSlice(tb testing.TB, svc *corev1.Service, k int) {
	tb.Helper()
	must(tb, e.createServiceWithSlice(context.Background(), e.members["member-1"], svc, k, 4000))
}

func (e *env) createServiceWithSlice(ctx context.Context, c client.Client, svc *corev1.Service, k, seq int) error {
	eps := map[string]bool{}
	for x := 0; x < k; x++ {
		eps[fmt.Sprintf("10.%d.%d.%d", 64+seq/250, seq%250, 10+x)] = true
	}
	if err := c.Create(ctx, podSlice(svc.Name, eps)); err != nil {
		return fmt.Errorf("create slice of %s: %w", svc.Name, err)
	}
	if err := c.Create(ctx, svc); err != nil {
		return fmt.Errorf("create Service %s: %w", svc.Name, err)
	}
	return nil
}

// waitExported waits until member-1's export name is mirrored with want ready endpoints.
func (e *env) waitExported(tb testing.TB, name string, want int32) {
	tb.Helper()
	eventually(tb, 5*time.Minute, "export "+name+" mirrored", func() error {
		es := &fleetv1alpha1.ExportedService{}
		if err := e.hub.Get(context.Background(), types.NamespacedName{Name: fleetv1alpha1.ExportedServiceName("member-1", "shop", name)}, es); err != nil {
			return err
		}
		if len(es.Status.MirroredInto) != 1 || es.Status.ReadyEndpoints != want {
			return fmt.Errorf("status %+v", es.Status)
		}
		return nil
	})
}

// parallel runs do(0..n-1) on w workers and returns the first error.
func parallel(w, n int, do func(int) error) error {
	jobs := make(chan int)
	errs := make(chan error, w)
	var wg sync.WaitGroup
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := do(j); err != nil {
					errs <- err
					for range jobs { // drain
					}
					return
				}
			}
		}()
	}
	for j := 0; j < n; j++ {
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	close(errs)
	return <-errs
}
