package scale

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/flotilla-dev/flotilla/clusters"
	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/floor"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation"
	"github.com/flotilla-dev/flotilla/servicesync"
)

const (
	hubNS = fleetv1alpha1.DefaultHubNamespace
	// exports is the number of exported Services in the fleet, each mirrored everywhere else.
	exports = 10
)

var must = fleettest.Must

// BenchmarkFleetScale runs the hub controller in process against FLOTILLA_FLEET_SIZES
// (default "10") real members — local control planes without kube-controller-manager and
// with memory-tuned etcd and kube-apiserver (localfleet Lean) — each fleet with the shared
// 50-object Baseline on every member and 10 exported Services (from members 1..10 in turn,
// each mirrored into every other member). Per size (sub-benchmark members=N):
//
//   - MiB-heap/member, goroutines/member: hub heap and goroutines once everything
//     converged, minus the same with the controller running and no member registered. The
//     heap is the live heap after a full collection (/gc/heap/live:bytes): what the process
//     holds. MiB-heapinuse/member is HeapInuse instead (the figure before 2026-11-30), which
//     also counts spans that garbage left partly free;
//   - watches/member: WATCH requests open at each member's API server, minus those open
//     before the hub connected (the members run no other client that watches);
//   - ms-cpu/member/min: the hub process's CPU (getrusage, user+system) over a steady window
//     of FLOTILLA_BENCH_STEADY (default 60s) in which nothing changes, minus the same window
//     of the hub running with no member (ms-cpu-idle-hub/min: leader election, the hub's own
//     watches), per member per minute;
//   - s-create, s-floor-create, ratio-create-vs-floor: the Baseline created until all 50
//     objects are present in every member, watched (floor.WaitPresent); the floor is the same objects
//     (fresh names) server-side applied to every member at once with warm clients;
//   - cpu-s-create-members, cpu-s-floor-create-members: CPU seconds the members' API
//     servers and etcds used during the create and the floor's create; cpu-s-create-hub and
//     cpu-s-floor-create-hub the same of the hub's API server and etcd and this process (the
//     hub controller, or the floor's clients). With the cores saturated, time follows work;
//     cores-members-idle is the members' own CPU when nothing changes (in the steady
//     window), and ...-over-idle a create's member CPU beyond that idle use over its time;
//   - s-change, s-floor-change, ratio-change-vs-floor: one object of the Baseline changed,
//     until every member shows it; the floor applies that one change to every member.
//
// The sub-benchmark projection-1000 fits a line through the sizes measured (and the hub
// with no member) and reports heap, goroutines and CPU per minute at 1,000 members. Check
// the machine first: a trimmed member costs ≈ 200 MiB.
func BenchmarkFleetScale(b *testing.B) {
	fineHeapProfile()
	sizes := fleetSizes(b)
	workload := floor.Workload(b)
	var points []fleetPoint
	for _, n := range sizes {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			var runs []fleetPoint
			for i := 0; i < b.N; i++ {
				runs = append(runs, fleetRun(b, n, workload))
			}
			p := medianPoint(runs)
			points = append(points, p)
			nf := float64(n)
			b.ReportMetric(p.heap/nf/(1<<20), "MiB-heap/member")
			b.ReportMetric(p.heapInUse/nf/(1<<20), "MiB-heapinuse/member")
			b.ReportMetric(p.goroutines/nf, "goroutines/member")
			b.ReportMetric(p.watches, "watches/member")
			b.ReportMetric(p.cpuPerMin/nf*1000, "ms-cpu/member/min")
			b.ReportMetric(p.cpuIdlePerMin*1000, "ms-cpu-idle-hub/min")
			b.ReportMetric(p.create, "s-create")
			b.ReportMetric(p.floorCreate, "s-floor-create")
			b.ReportMetric(p.create/p.floorCreate, "ratio-create-vs-floor")
			b.ReportMetric(p.createWork.members.Seconds(), "cpu-s-create-members")
			b.ReportMetric(p.floorWork.members.Seconds(), "cpu-s-floor-create-members")
			b.ReportMetric(p.createWork.members.Seconds()-p.membersIdle*p.create, "cpu-s-create-members-over-idle")
			b.ReportMetric(p.floorWork.members.Seconds()-p.membersIdle*p.floorCreate, "cpu-s-floor-create-members-over-idle")
			b.ReportMetric(p.membersIdle, "cores-members-idle")
			b.ReportMetric((p.createWork.hubPlane + p.createWork.self).Seconds(), "cpu-s-create-hub")
			b.ReportMetric((p.floorWork.hubPlane + p.floorWork.self).Seconds(), "cpu-s-floor-create-hub")
			b.ReportMetric(p.change, "s-change")
			b.ReportMetric(p.floorChange, "s-floor-change")
			b.ReportMetric(p.change/p.floorChange, "ratio-change-vs-floor")
		})
	}
	b.Run("projection-1000", func(b *testing.B) {
		if len(points) == 0 {
			b.Skip("no fleet size measured")
		}
		heapA, heapB := fit(points, func(p fleetPoint) float64 { return p.heap / (1 << 20) })
		gA, gB := fit(points, func(p fleetPoint) float64 { return p.goroutines })
		cA, cB := fit(points, func(p fleetPoint) float64 { return p.cpuPerMin })
		b.ReportMetric(heapA+1000*heapB, "MiB-heap-1000m")
		b.ReportMetric(gA+1000*gB, "goroutines-1000m")
		b.ReportMetric(cA+1000*cB, "s-cpu/min-1000m")
		b.ReportMetric(heapB, "MiB-heap/member-fit")
		b.ReportMetric(gB, "goroutines/member-fit")
		b.ReportMetric(cB*1000, "ms-cpu/member/min-fit")
		b.Logf("fit over %v members: heap %.2f + %.3f·N MiB, goroutines %.0f + %.1f·N, CPU %.3f + %.4f·N s/min",
			sizesOf(points), heapA, heapB, gA, gB, cA, cB)
	})
}

// fleetPoint is what one fleet size measured; heap, goroutines and CPU are growth over the
// hub with no member (totals, not per member), watches are per member.
type fleetPoint struct {
	members                                  int
	heap, heapInUse, goroutines, watches     float64
	cpuPerMin, cpuIdlePerMin                 float64
	create, floorCreate, change, floorChange float64
	// createWork and floorWork: the CPU each create used, by whom (see work).
	createWork, floorWork work
	// membersIdle is the cores the members' processes use when nothing changes.
	membersIdle float64
}

func fleetRun(b *testing.B, n int, workload string) fleetPoint {
	b.Helper()
	ctx := context.Background()
	started := time.Now()
	// A fleet of 50 takes many minutes to start and converge: progress goes to stderr as it
	// happens (b.Logf prints only when the benchmark ends). Start refuses a fleet the machine
	// cannot hold (memory, inotify instances) before starting anything, and the watchdog
	// stops every process when this one ends, however it ends.
	progress := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "fleetscale members=%d %s: %s\n", n, time.Since(started).Round(time.Second), fmt.Sprintf(format, args...))
	}
	fleet, err := localfleet.Start(ctx, localfleet.Options{Members: n, NoControllerManager: true, Lean: true,
		Progress: func(line string) { progress("%s", line) }})
	must(b, err)
	defer func() { must(b, fleet.Stop()) }()
	b.Logf("%d members started in %s", n, time.Since(started).Round(time.Second))
	names := make([]string, n)
	members := map[string]client.Client{}
	for i, m := range fleet.Members {
		names[i] = m.Name
		members[m.Name] = fastClient(b, m.Config)
	}
	watches0 := openWatches(b, fleet)

	// The benchmark's own member connections are opened before the baseline is taken, so
	// that their goroutines (one HTTP/2 read loop per member) are not counted as the hub's.
	floor.WarmClients(b, members, floor.Decode(b, workload))

	hub, stop := runHub(b, fleet.Hub.Config, hubOptions{})
	defer stop()
	must(b, client.IgnoreAlreadyExists(hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hubNS}})))
	// The hub's own informers and workers start in the background: wait until their
	// goroutines are there, so that they are not counted as the members'.
	settleGoroutines()
	heap0, inUse0, g0 := heapLive(), heapInUse(), runtime.NumGoroutine()
	profiles := newProfiler(b, n)
	profiles.goroutines("empty")
	profiles.heap("empty")
	// The hub's own steady cost (lease renewals, its watches of the hub) is paid once, not
	// per member: measured here without members, over the same window as the steady state.
	window := envDuration(b, "FLOTILLA_BENCH_STEADY", 60*time.Second)
	progress("hub without members: %s steady CPU window", window)
	cpuIdle := steadyCPU(b, window)

	progress("registering members")
	registerMembers(b, hub, fleet, members)
	progress("members Ready; exporting")
	createExports(b, hub, members, names)
	progress("exports mirrored; creating the Baseline")

	var p fleetPoint
	p.members = n
	// The Baseline, created and then changed; each against its floor.
	bl := &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: "scale"}}
	bl.Spec.Resources = []fleetv1alpha1.ResourceSource{{Inline: floor.ForRun(workload, "", "flotilla")}}
	stopCPU := profiles.cpu("create")
	start, work0 := time.Now(), measureWork(b, fleet)
	must(b, hub.Create(ctx, bl))
	floor.WaitPresent(b, members, "flotilla", 50, 15*time.Minute)
	p.create = time.Since(start).Seconds()
	p.createWork = measureWork(b, fleet).sub(work0)
	stopCPU()
	waitApplied(b, hub, n, "")
	progress("Baseline applied in %.1fs; floor", p.create)

	floorObjs := floor.Decode(b, floor.ForRun(workload, "f-", "floor"))
	start, work0 = time.Now(), measureWork(b, fleet)
	floor.Apply(b, members, floorObjs)
	floor.WaitPresent(b, members, "floor", len(floorObjs), 15*time.Minute)
	p.floorCreate = time.Since(start).Seconds()
	p.floorWork = measureWork(b, fleet).sub(work0)

	must(b, hub.Get(ctx, client.ObjectKeyFromObject(bl), bl))
	before := bl.Status.Revision
	start = time.Now()
	fleettest.Update(b, hub, bl, func() {
		bl.Spec.Resources[0].Inline = strings.Replace(bl.Spec.Resources[0].Inline, `pods: "20"`, `pods: "30"`, 1)
	})
	floor.WaitQuotaPods(b, members, "bench-ns-00", "bench-quota", "30", 15*time.Minute)
	p.change = time.Since(start).Seconds()
	waitApplied(b, hub, n, before)

	var quota *unstructured.Unstructured
	for _, o := range floorObjs {
		if o.GetKind() == "ResourceQuota" && o.GetNamespace() == "f-bench-ns-00" {
			quota = o.DeepCopy()
		}
	}
	must(b, unstructured.SetNestedField(quota.Object, "30", "spec", "hard", "pods"))
	start = time.Now()
	floor.Apply(b, members, []*unstructured.Unstructured{quota})
	floor.WaitQuotaPods(b, members, "f-bench-ns-00", "f-bench-quota", "30", 15*time.Minute)
	p.floorChange = time.Since(start).Seconds()
	progress("changes measured; steady state")

	// Steady state: nothing changes from here on.
	time.Sleep(envDuration(b, "FLOTILLA_BENCH_SETTLE", 15*time.Second))
	p.heap = float64(heapLive()) - float64(heap0)
	p.heapInUse = float64(heapInUse()) - float64(inUse0)
	// The benchmark's own member clients (their REST mappers hold the members' discovery,
	// 0.17 MiB each) are in the baseline: they must be alive at this reading too, or the
	// collector frees them after their last use and the hub's figure comes out that much
	// too small.
	runtime.KeepAlive(members)
	p.goroutines = float64(runtime.NumGoroutine() - g0)
	profiles.goroutines("steady")
	profiles.heap("steady")
	watches1 := openWatches(b, fleet)
	for _, m := range names {
		p.watches += float64(watches1[m]-watches0[m]) / float64(n)
	}
	stopCPU = profiles.cpu("steady")
	steady0 := measureWork(b, fleet)
	p.cpuPerMin = steadyCPU(b, window) - cpuIdle
	p.membersIdle = measureWork(b, fleet).sub(steady0).members.Seconds() / window.Seconds()
	p.cpuIdlePerMin = cpuIdle
	stopCPU()
	b.Logf("%d members: heap +%.1f MiB, goroutines +%.0f, %.1f watches/member, CPU %.3f s/min; create %.1fs (floor %.1fs), change %.1fs (floor %.1fs)",
		n, p.heap/(1<<20), p.goroutines, p.watches, p.cpuPerMin, p.create, p.floorCreate, p.change, p.floorChange)
	return p
}

// hubOptions are what tests change of fleet-controller's defaults.
type hubOptions struct {
	// Heartbeat is the MemberCluster status heartbeat and ProbeInterval the members' health
	// probe interval (default: fleet-controller's).
	Heartbeat, ProbeInterval time.Duration
}

// runHub runs the hub controller's three domains in process with fleet-controller's
// defaults (probe interval, heartbeat, resync, workers) and its hub cache scoping; the
// log goes to the test's log at info level.
func runHub(tb testing.TB, cfg *rest.Config, opts hubOptions) (client.Client, func()) {
	tb.Helper()
	scheme := k8sruntime.NewScheme()
	must(tb, clientgoscheme.AddToScheme(scheme))
	must(tb, fleetv1alpha1.AddToScheme(scheme))
	logger := zap.New(zap.WriteTo(fleettest.LogWriter{TB: tb}))
	ctrl.SetLogger(logger)
	clusterOpts := clusters.SetupOptions{
		HubNamespace: hubNS,
		Policy:       clusters.CredentialPolicy{AllowLoopback: true}, // local members listen on loopback
		Connections: clusters.Options{ProbeInterval: opts.ProbeInterval,
			DynamicLabelSelector: labels.SelectorFromSet(labels.Set{fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue})},
		Heartbeat: opts.Heartbeat,
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Logger: logger, Scheme: scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{hubNS: {}}},
			&corev1.Secret{}:    clusters.SecretCacheOptions(clusterOpts),
		}},
	})
	must(tb, err)
	conns, err := clusters.Setup(mgr, clusterOpts)
	must(tb, err)
	must(tb, propagation.Setup(mgr, conns, propagation.SetupOptions{HubNamespace: hubNS}))
	must(tb, servicesync.Setup(mgr, conns, servicesync.SetupOptions{}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("manager: %v", err)
			}
		})
	}
	return mgr.GetClient(), stop
}

// registerMembers gives every member the namespace the exports live in, registers it
// with a labelled kubeconfig Secret and waits until every MemberCluster is Ready.
func registerMembers(tb testing.TB, hub client.Client, fleet *localfleet.Fleet, members map[string]client.Client) {
	tb.Helper()
	ctx := context.Background()
	must(tb, forEach(keys(members), func(m string) error {
		if err := members[m].Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
			return err
		}
		return hub.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: m, Namespace: hubNS,
				Labels:      map[string]string{fleetv1alpha1.LabelKubeconfig: "true"},
				Annotations: map[string]string{fleetv1alpha1.AnnotationClusterLabels: "env=bench,name=" + m}},
			Data: map[string][]byte{"value": fleettest.MemberKubeconfig(tb, fleet.Member(m))},
		})
	}))
	n := len(members)
	fleettest.EventuallyEvery(tb, time.Second, 15*time.Minute, fmt.Sprintf("%d members Ready", n), func() error {
		list := &fleetv1alpha1.MemberClusterList{}
		if err := hub.List(ctx, list); err != nil {
			return err
		}
		ready := 0
		for _, mc := range list.Items {
			if meta.IsStatusConditionTrue(mc.Status.Conditions, fleetv1alpha1.ConditionReady) {
				ready++
			}
		}
		if ready < n {
			return fmt.Errorf("%d of %d Ready", ready, n)
		}
		return nil
	})
}

// createExports exports Services svc-00..09 in shop, from members 1..10 in turn, each with a
// slice of 3 endpoints, and waits until each is mirrored into every other member.
func createExports(tb testing.TB, hub client.Client, members map[string]client.Client, names []string) {
	tb.Helper()
	ctx := context.Background()
	// Pod IPs are mirrored only from inside the source's pod CIDRs: each source member gets
	// a Node holding 10.64.0.0/16 (members without kube-controller-manager have none).
	for _, m := range names[:min(len(names), exports)] {
		must(tb, members[m].Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
			Spec: corev1.NodeSpec{PodCIDR: "10.64.0.0/16", PodCIDRs: []string{"10.64.0.0/16"}}}))
	}
	for j := 0; j < exports; j++ {
		src := members[names[j%len(names)]]
		name := fmt.Sprintf("svc-%02d", j)
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name + "-pods", Labels: map[string]string{
				discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "bench.flotilla.dev"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		for k := 0; k < 3; k++ {
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.64.%d.%d", j, 10+k)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
		}
		must(tb, src.Create(ctx, slice))
		must(tb, src.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: map[string]string{
				fleetv1alpha1.AnnotationExport: "true", fleetv1alpha1.AnnotationAddressMode: "PodIP"}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
		}))
	}
	want := len(names) - 1
	fleettest.EventuallyEvery(tb, time.Second, 15*time.Minute, fmt.Sprintf("%d exports mirrored into %d members", exports, want), func() error {
		list := &fleetv1alpha1.ExportedServiceList{}
		if err := hub.List(ctx, list); err != nil {
			return err
		}
		done := 0
		var behind []string
		for _, es := range list.Items {
			if len(es.Status.MirroredInto) == want && es.Status.ReadyEndpoints == 3 {
				done++
				continue
			}
			// What a stalled export says, so that a timeout tells which input it lacks.
			behind = append(behind, fmt.Sprintf("%s: mirroredInto %d %v, readyEndpoints %d, conditions %+v",
				es.Name, len(es.Status.MirroredInto), es.Status.MirroredInto, es.Status.ReadyEndpoints, es.Status.Conditions))
		}
		if done < exports {
			return fmt.Errorf("%d of %d; not there yet:\n%s", done, exports, strings.Join(behind, "\n"))
		}
		return nil
	})
}

// waitApplied waits until every binding of the Baseline "scale" holds its current revision,
// applied and healthy, and that revision is not notRevision.
func waitApplied(tb testing.TB, hub client.Client, n int, notRevision string) {
	tb.Helper()
	ctx := context.Background()
	fleettest.EventuallyEvery(tb, time.Second, 15*time.Minute, fmt.Sprintf("%d bindings applied", n), func() error {
		bl := &fleetv1alpha1.Baseline{}
		if err := hub.Get(ctx, types.NamespacedName{Name: "scale"}, bl); err != nil {
			return err
		}
		if bl.Status.Revision == "" || bl.Status.Revision == notRevision {
			return errors.New("new revision not observed yet")
		}
		list := &fleetv1alpha1.BaselineBindingList{}
		if err := hub.List(ctx, list, client.MatchingLabels{fleetv1alpha1.LabelBaseline: "scale"}); err != nil {
			return err
		}
		done := 0
		for _, bb := range list.Items {
			if bb.Status.Revision == bl.Status.Revision && meta.IsStatusConditionTrue(bb.Status.Conditions, fleetv1alpha1.ConditionApplied) &&
				meta.IsStatusConditionTrue(bb.Status.Conditions, fleetv1alpha1.ConditionHealthy) {
				done++
			}
		}
		if done < n {
			return fmt.Errorf("%d of %d", done, n)
		}
		return nil
	})
}

// fastClient is a member client with a raised rate limit, for the floor and the probes.
func fastClient(tb testing.TB, cfg *rest.Config) client.Client {
	tb.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 500, 1000
	// With watch: floor.WaitQuotaPods watches the changed object in every member (the
	// same observable for Flotilla and the floor) instead of polling.
	c, err := client.NewWithWatch(cfg, client.Options{})
	must(tb, err)
	return c
}

// openWatches sums, per member, the WATCH requests its API server holds open
// (apiserver_longrunning_requests).
func openWatches(b *testing.B, fleet *localfleet.Fleet) map[string]int {
	b.Helper()
	out := map[string]int{}
	var mu sync.Mutex
	must(b, forEach(memberNames(fleet), func(m string) error {
		cfg := rest.CopyConfig(fleet.Member(m).Config)
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			return err
		}
		resp, err := hc.Get(cfg.Host + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		n := 0
		s := bufio.NewScanner(resp.Body)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			line := s.Text()
			if !strings.HasPrefix(line, "apiserver_longrunning_requests{") || !strings.Contains(line, `verb="WATCH"`) {
				continue
			}
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return fmt.Errorf("metrics of %s: %q: %w", m, line, err)
			}
			n += int(v)
		}
		mu.Lock()
		out[m] = n
		mu.Unlock()
		return s.Err()
	}))
	return out
}

// cpuTime is the user and system CPU time this process (the hub controller and the
// benchmark, which is idle while it is read) has used; members are other processes.
// steadyCPU is the process's CPU over window, in seconds per minute.
func steadyCPU(b *testing.B, window time.Duration) float64 {
	b.Helper()
	cpu0 := cpuTime(b)
	time.Sleep(window)
	return (cpuTime(b) - cpu0).Seconds() / window.Minutes()
}

func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	must(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// settleGoroutines waits (at most 30s) until the number of goroutines has not changed for
// two seconds.
func settleGoroutines() {
	last, same := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(30 * time.Second); same < 4 && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		if g := runtime.NumGoroutine(); g == last {
			same++
		} else {
			last, same = g, 0
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// heapLive is the heap the objects still reachable after a full collection take.
func heapLive() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// fit is the least-squares line y = a + b·N through the hub with no member (0, 0) and the
// points measured.
func fit(points []fleetPoint, y func(fleetPoint) float64) (a, slope float64) {
	xs, ys := []float64{0}, []float64{0}
	for _, p := range points {
		xs, ys = append(xs, float64(p.members)), append(ys, y(p))
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	k := float64(len(xs))
	slope = (k*sxy - sx*sy) / (k*sxx - sx*sx)
	return (sy - slope*sx) / k, slope
}

// medianPoint is the per-field median of runs of one size.
func medianPoint(runs []fleetPoint) fleetPoint {
	med := func(f func(fleetPoint) float64) float64 {
		var xs []float64
		for _, r := range runs {
			xs = append(xs, f(r))
		}
		return fleettest.Median(xs)
	}
	return fleetPoint{members: runs[0].members,
		heap:          med(func(p fleetPoint) float64 { return p.heap }),
		heapInUse:     med(func(p fleetPoint) float64 { return p.heapInUse }),
		goroutines:    med(func(p fleetPoint) float64 { return p.goroutines }),
		watches:       med(func(p fleetPoint) float64 { return p.watches }),
		cpuPerMin:     med(func(p fleetPoint) float64 { return p.cpuPerMin }),
		cpuIdlePerMin: med(func(p fleetPoint) float64 { return p.cpuIdlePerMin }),
		create:        med(func(p fleetPoint) float64 { return p.create }),
		floorCreate:   med(func(p fleetPoint) float64 { return p.floorCreate }),
		change:        med(func(p fleetPoint) float64 { return p.change }),
		floorChange:   med(func(p fleetPoint) float64 { return p.floorChange }),
		createWork:    medWork(runs, func(p fleetPoint) work { return p.createWork }),
		floorWork:     medWork(runs, func(p fleetPoint) work { return p.floorWork }),
		membersIdle:   med(func(p fleetPoint) float64 { return p.membersIdle }),
	}
}

// medWork is the median of each part of a work figure over runs.
func medWork(runs []fleetPoint, f func(fleetPoint) work) work {
	part := func(g func(work) time.Duration) time.Duration {
		var xs []float64
		for _, r := range runs {
			xs = append(xs, float64(g(f(r))))
		}
		return time.Duration(fleettest.Median(xs))
	}
	return work{members: part(func(w work) time.Duration { return w.members }),
		hubPlane: part(func(w work) time.Duration { return w.hubPlane }),
		self:     part(func(w work) time.Duration { return w.self })}
}

func fleetSizes(b *testing.B) []int {
	b.Helper()
	v := os.Getenv("FLOTILLA_FLEET_SIZES")
	if v == "" {
		return []int{10}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		must(b, err)
		out = append(out, n)
	}
	return out
}

func sizesOf(points []fleetPoint) []int {
	var out []int
	for _, p := range points {
		out = append(out, p.members)
	}
	return out
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	must(b, err)
	return d
}

func memberNames(fleet *localfleet.Fleet) []string {
	var out []string
	for _, m := range fleet.Members {
		out = append(out, m.Name)
	}
	return out
}

// forEach runs do for every name at once and returns the first error.
func forEach(names []string, do func(string) error) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() { errs[i] = do(n) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// keys are the names of members.
func keys(members map[string]client.Client) []string {
	out := make([]string, 0, len(members))
	for k := range members {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
