package servicesync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// bigProbes is how many exports are timed in the empty member and again in the big one.
const bigProbes = 3

// BenchmarkBigMember measures what a big member costs the hub and whether it slows an
// export down. One iteration: 2 members (no kube-controller-manager: nothing here needs it,
// and it would rewrite the hand-made Nodes); bigProbes exports with 30 endpoints timed in
// the still empty member-1; then member-1 fills up with FLOTILLA_BENCH_BIG_SERVICES
// (default 5,000) unexported Services with an EndpointSlice of 30 endpoints each and
// FLOTILLA_BENCH_BIG_NODES (default 500) Nodes with a realistic status (40 images, addresses,
// conditions, capacity); and bigProbes more exports are timed. Figures, medians over
// iterations (run with -benchtime 1x -count 3 for three fleets):
//
//   - MiB-heap/1000-unexported: growth of the live heap (after a full collection) of the
//     process, which runs the hub, from before the fill to after the member cache has seen
//     all of it, per 1,000 unexported Services (the Nodes included: the exports are PodIP,
//     whose addresses are checked against the Nodes' pod CIDRs, so the hub holds the Nodes,
//     trimmed, throughout). The fill's own client is built before the baseline and its
//     connection closed before the second reading, so the figure is what the hub holds
//     because of the fill. MiB-heapinuse/1000-unexported is the same with HeapInuse (the
//     figure before 2026-11-30), which also counts the spans the burst of dropped objects
//     left partly free;
//   - s-export-empty, s-export-big: from creating an exported Service and its slice until its
//     catalog entry reports it mirrored with 30 ready endpoints (median of bigProbes);
//   - ratio-export-big-vs-empty.
func BenchmarkBigMember(b *testing.B) {
	if os.Getenv("FLOTILLA_BENCH_PROFILE") != "" {
		runtime.MemProfileRate = 4 << 10 // the default (512 KiB) resolves a few MiB into a handful of samples
	}
	services, nodes := envInt(b, "FLOTILLA_BENCH_BIG_SERVICES", 5000), envInt(b, "FLOTILLA_BENCH_BIG_NODES", 500)
	var heap, inUse, empty, big []float64
	for i := 0; i < b.N; i++ {
		r := bigMemberRun(b, services, nodes)
		heap = append(heap, r.heapPer1000)
		inUse = append(inUse, r.inUsePer1000)
		empty = append(empty, r.empty)
		big = append(big, r.big)
	}
	b.ReportMetric(fleettest.Median(heap), "MiB-heap/1000-unexported")
	b.ReportMetric(fleettest.Median(inUse), "MiB-heapinuse/1000-unexported")
	b.ReportMetric(fleettest.Median(empty), "s-export-empty")
	b.ReportMetric(fleettest.Median(big), "s-export-big")
	b.ReportMetric(fleettest.Median(big)/fleettest.Median(empty), "ratio-export-big-vs-empty")
}

type bigMemberResult struct {
	heapPer1000  float64 // MiB of live heap
	inUsePer1000 float64 // MiB of HeapInuse, for comparison with earlier figures
	empty, big   float64 // seconds
}

func bigMemberRun(b *testing.B, services, nodes int) bigMemberResult {
	b.Helper()
	ctx := context.Background()
	fleet, err := localfleet.Start(ctx, localfleet.Options{Members: 2, NoControllerManager: true})
	must(b, err)
	defer func() { must(b, fleet.Stop()) }()
	e := newEnvOn(b, fleet, 2*time.Second)
	defer e.stop()
	// The fill goes through a client of its own with a raised rate limit, from 32 workers.
	cfg := rest.CopyConfig(fleet.Member("member-1").Config)
	cfg.QPS, cfg.Burst = 1000, 2000
	fillHTTP, err := rest.HTTPClientFor(cfg)
	must(b, err)
	fill, err := client.New(cfg, client.Options{HTTPClient: fillHTTP})
	must(b, err)

	var out bigMemberResult
	out.empty = e.timeExports(b, "empty")
	before, beforeInUse := heapLive(), heapInUse()
	writeHeapProfile(b, "bigmember-heap-before.pprof")

	must(b, parallel(16, nodes, func(j int) error { return createNode(ctx, fill, j) }))
	must(b, parallel(16, services, func(j int) error {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("plain-%05d", j),
			Labels:      map[string]string{"app": fmt.Sprintf("plain-%05d", j), "team": "payments"},
			Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: fmt.Sprintf(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"plain-%05d","namespace":"shop"}}`, j)}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
		eps := map[string]bool{}
		for x := 0; x < 30; x++ {
			eps[fmt.Sprintf("10.%d.%d.%d", 64+j/250, j%250, 10+x)] = true
		}
		if err := retryBusy(func() error { return client.IgnoreAlreadyExists(fill.Create(ctx, podSlice(svc.Name, eps))) }); err != nil {
			return err
		}
		return retryBusy(func() error { return client.IgnoreAlreadyExists(fill.Create(ctx, svc.DeepCopy())) })
	}))
	// Watches deliver in order per kind: once this export's Service and slice are seen, so
	// is everything created before them.
	e.createWithSlice(b, exported("marker", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"}), 1)
	e.waitExported(b, "marker", 1)
	// The figure is what the hub holds because of the fill: the fill's own connection (its
	// HTTP/2 buffers) goes first, and the heap is the live heap after a collection, not
	// HeapInuse, which also counts spans the burst of dropped objects left partly free.
	fillHTTP.CloseIdleConnections()
	out.heapPer1000 = float64(int64(heapLive())-int64(before)) / float64(services) * 1000 / (1 << 20)
	out.inUsePer1000 = float64(int64(heapInUse())-int64(beforeInUse)) / float64(services) * 1000 / (1 << 20)
	writeHeapProfile(b, "bigmember-heap-after.pprof")

	out.big = e.timeExports(b, "big")
	return out
}

// timeExports exports bigProbes Services with 30 endpoints one after another from member-1
// and returns the median time until each is reported mirrored with all endpoints ready.
func (e *env) timeExports(b *testing.B, tag string) float64 {
	b.Helper()
	ctx := context.Background()
	var took []float64
	for p := 0; p < bigProbes; p++ {
		name := fmt.Sprintf("probe-%s-%d", tag, p)
		start := time.Now()
		must(b, e.createServiceWithSlice(ctx, e.members["member-1"], exported(name, map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"}), 30, 9000+p))
		fleettest.EventuallyEvery(b, 10*time.Millisecond, 5*time.Minute, "export "+name+" mirrored", func() error {
			es := &fleetv1alpha1.ExportedService{}
			if err := e.hub.Get(ctx, types.NamespacedName{Name: fleetv1alpha1.ExportedServiceName("member-1", "shop", name)}, es); err != nil {
				return err
			}
			if len(es.Status.MirroredInto) != 1 || es.Status.ReadyEndpoints != 30 {
				return fmt.Errorf("status %+v", es.Status)
			}
			return nil
		})
		took = append(took, time.Since(start).Seconds())
	}
	return fleettest.Median(took)
}

// createNode creates Node j with the status a kubelet reports: addresses, conditions,
// capacity, node info and 40 images (what makes a Node large).
func createNode(ctx context.Context, c client.Client, j int) error {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%04d", j), Labels: map[string]string{
		corev1.LabelHostname: fmt.Sprintf("node-%04d", j), corev1.LabelTopologyZone: fmt.Sprintf("zone-%d", j%3),
		corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64", corev1.LabelInstanceTypeStable: "m6i.2xlarge"}},
		Spec: corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.%d.%d.0/24", 128+j/256, j%256), ProviderID: fmt.Sprintf("aws:///eu-west-1a/i-%016x", j)}}
	if err := retryBusy(func() error { return client.IgnoreAlreadyExists(c.Create(ctx, n.DeepCopy())) }); err != nil {
		return fmt.Errorf("create Node %s: %w", n.Name, err)
	}
	now := metav1.Now()
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi"),
		corev1.ResourcePods: resource.MustParse("110"), corev1.ResourceEphemeralStorage: resource.MustParse("100Gi")}
	n.Status = corev1.NodeStatus{Capacity: res, Allocatable: res,
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("192.168.%d.%d", j/250, 1+j%250)},
			{Type: corev1.NodeHostName, Address: n.Name}, {Type: corev1.NodeInternalDNS, Address: n.Name + ".eu-west-1.compute.internal"}},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", ContainerRuntimeVersion: "containerd://2.1.4",
			OSImage: "Debian GNU/Linux 12 (bookworm)", KernelVersion: "6.1.0-40-cloud-amd64", OperatingSystem: "linux", Architecture: "amd64"}}
	for _, t := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		s := corev1.ConditionFalse
		if t == corev1.NodeReady {
			s = corev1.ConditionTrue
		}
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: t, Status: s, LastHeartbeatTime: now, LastTransitionTime: now,
			Reason: "KubeletReady", Message: "kubelet is posting ready status"})
	}
	for k := 0; k < 40; k++ {
		digest := strings.Repeat(fmt.Sprintf("%02x", (j+k)%256), 32)
		img := fmt.Sprintf("registry.example.com/platform/component-%02d", k)
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{
			Names: []string{img + "@sha256:" + digest, img + ":v1." + fmt.Sprint(k)}, SizeBytes: int64(20+k) << 20})
	}
	// A merge patch needs no resourceVersion (the create may have been a retried one).
	if err := retryBusy(func() error { return c.Status().Patch(ctx, n.DeepCopy(), client.Merge) }); err != nil {
		return fmt.Errorf("status of Node %s: %w", n.Name, err)
	}
	return nil
}

// retryBusy retries a call the API server, busy on these shared cores, timed out (callers
// make their calls idempotent: a timed-out create may have happened).
func retryBusy(create func() error) error {
	var err error
	for range 5 {
		err = create()
		switch {
		case err == nil:
			return nil
		case apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err), errors.Is(err, context.DeadlineExceeded):
			time.Sleep(time.Second)
		default:
			return err
		}
	}
	return err
}

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var n int
	_, err := fmt.Sscan(v, &n)
	must(b, err)
	return n
}

// writeHeapProfile writes the in-use heap profile to $FLOTILLA_BENCH_PROFILE/name (nothing
// when unset), for go tool pprof -base before after.
func writeHeapProfile(b *testing.B, name string) {
	b.Helper()
	dir := os.Getenv("FLOTILLA_BENCH_PROFILE")
	if dir == "" {
		return
	}
	must(b, os.MkdirAll(dir, 0o755))
	f, err := os.Create(filepath.Join(dir, name))
	must(b, err)
	defer f.Close()
	runtime.GC()
	must(b, pprof.Lookup("heap").WriteTo(f, 0))
}
