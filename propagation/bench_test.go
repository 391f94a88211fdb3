package propagation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// benchSetLabel marks every object of the workload; its value names one run, so that a
// run's objects are counted apart from earlier runs'.
const benchSetLabel = "benchmark.flotilla.dev/set"

// benchPoll is how often the benchmark looks into members for the workload: the observable
// is the same for Flotilla and for the floor (objects present in every member).
const benchPoll = 250 * time.Millisecond

// BenchmarkBaseline50 propagates the shared 50-object workload (10 Namespaces with a
// default-deny NetworkPolicy and a ResourceQuota each, 10 ClusterRoles and bindings) to 1, 5
// and 10 real members. Every figure is a median over b.N iterations, measured on what a user
// of the members sees — all 50 objects present in every selected member, polled every 250ms:
//
//   - s-create-<n>m: from Baseline creation until the objects are present;
//   - s-applied-<n>m: until every binding also says Applied (the controller's own report);
//   - s-floor-<n>m: the floor — the same objects server-side applied by one goroutine per
//     member with warm clients, no diff and no status — and ratio-create-vs-floor-<n>m;
//   - s-update-<n>m: one object changed, until its new value is present in every member;
//   - writes/member-create-<n>m, writes/member-update-<n>m: objects the controller wrote;
//   - dryruns/member-create-<n>m: server-side dry runs the controller sent per member while
//     creating, counted in the members' audit logs (a fresh object needs none).
//
// Each run uses fresh object names and is deleted (and waited for) before the next, so no
// earlier Baseline is alive during a measurement. Then, with 10 members and one Baseline:
// drift-restore latency (FLOTILLA_BENCH_DRIFT_SAMPLES deletions, default 20; the tail is
// reported as max below 100 samples), objects written during a steady-state window
// (FLOTILLA_BENCH_STEADY, default 60s) and hub heap growth per member since before the
// members were registered. ns/op is the time of the timed Flotilla creations only (fleet
// start-up, floors and clean-up are outside the timer). Run with `make bench`; on a small
// machine run one fleet size at a time, FLOTILLA_BENCH_MEMBERS=1 (or 5, 10; the sizes up to
// it are measured, default 10), for example
//
//	FLOTILLA_BENCH_MEMBERS=1 FLOTILLA_BENCH_STEADY=10s go test -p 1 ./propagation/ \
//	  -run '^$' -bench BenchmarkBaseline50 -benchtime 3x -timeout 60m
func BenchmarkBaseline50(b *testing.B) {
	workload, err := os.ReadFile("testdata/workload-50.yaml")
	must(b, err)
	fleetSize := 10
	if v := os.Getenv("FLOTILLA_BENCH_MEMBERS"); v != "" {
		fleetSize, err = strconv.Atoi(v)
		must(b, err)
	}
	e := newEnvWith(b, localfleet.Options{Members: fleetSize, AuditLog: true})
	ctx := context.Background()
	var names []string
	for i, m := range e.fleet.Members {
		// Label members by index so a Baseline can select the first N.
		setLabelsB(b, e, m.Name, fmt.Sprintf("env=test,name=%s,idx=%02d", m.Name, i+1))
		names = append(names, m.Name)
	}
	warmFloorClients(b, e, string(workload))
	b.ResetTimer()
	b.StopTimer()

	run := 0
	for _, n := range []int{1, 5, 10} {
		if n > fleetSize {
			break
		}
		members := names[:n]
		var create, applied, floor, changed, writes, updateWrites, dryRuns []float64
		for i := 0; i < b.N; i++ {
			run++
			name, set := fmt.Sprintf("bench-%d", run), fmt.Sprintf("run-%d", run)
			bl := baseline(name, runWorkload(string(workload), fmt.Sprintf("r%d-", run), set))
			bl.Spec.ClusterSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "idx", Operator: metav1.LabelSelectorOpIn, Values: firstN(n)}}}

			w0 := writtenTotal(e)
			marks := auditMarks(b, e, members)
			b.StartTimer()
			start := time.Now()
			must(b, e.hub.Create(ctx, bl))
			waitPresent(b, e, members, set)
			create = append(create, time.Since(start).Seconds())
			b.StopTimer()
			waitAllApplied(b, e, name, n, "")
			applied = append(applied, time.Since(start).Seconds())
			writes = append(writes, (writtenTotal(e)-w0)/float64(n))
			dryRuns = append(dryRuns, float64(countDryRuns(b, e, marks))/float64(n))

			// One object changes: a new revision, one write per member.
			must(b, e.hub.Get(ctx, types.NamespacedName{Name: name}, bl))
			oldRevision := bl.Status.Revision
			w0 = writtenTotal(e)
			start = time.Now()
			update(b, e.hub, bl, func() {
				bl.Spec.Resources[0].Inline = strings.Replace(bl.Spec.Resources[0].Inline, "pods: \"20\"", "pods: \"30\"", 1)
			})
			waitQuotaPods(b, e, members, fmt.Sprintf("r%d-bench-ns-00", run), "30")
			changed = append(changed, time.Since(start).Seconds())
			waitAllApplied(b, e, name, n, oldRevision)
			updateWrites = append(updateWrites, (writtenTotal(e)-w0)/float64(n))
			deleteRun(b, e, bl, fmt.Sprintf("r%d-", run))

			// The floor: the same objects, fresh names, raw server-side apply in parallel.
			fset := fmt.Sprintf("floor-%d", run)
			objs := decodeWorkload(b, runWorkload(string(workload), fmt.Sprintf("f%d-", run), fset))
			start = time.Now()
			applyFloor(b, e, members, objs)
			waitPresent(b, e, members, fset)
			floor = append(floor, time.Since(start).Seconds())
			deleteFloor(b, e, members, objs)
		}
		b.ReportMetric(fleettest.Median(create), fmt.Sprintf("s-create-%dm", n))
		b.ReportMetric(fleettest.Median(applied), fmt.Sprintf("s-applied-%dm", n))
		b.ReportMetric(fleettest.Median(floor), fmt.Sprintf("s-floor-%dm", n))
		b.ReportMetric(fleettest.Median(create)/fleettest.Median(floor), fmt.Sprintf("ratio-create-vs-floor-%dm", n))
		b.ReportMetric(fleettest.Median(writes), fmt.Sprintf("writes/member-create-%dm", n))
		b.ReportMetric(fleettest.Median(dryRuns), fmt.Sprintf("dryruns/member-create-%dm", n))
		b.ReportMetric(fleettest.Median(changed), fmt.Sprintf("s-update-%dm", n))
		b.ReportMetric(fleettest.Median(updateWrites), fmt.Sprintf("writes/member-update-%dm", n))
	}

	// One Baseline in all 10 members for drift, steady state and heap.
	bl := baseline("bench-drift", runWorkload(string(workload), "d-", "drift"))
	must(b, e.hub.Create(ctx, bl))
	waitPresent(b, e, names, "drift")
	waitAllApplied(b, e, "bench-drift", len(names), "")
	benchDriftRestore(b, e)

	// Steady state: nothing changes, nothing may be written.
	window := envDuration(b, "FLOTILLA_BENCH_STEADY", 60*time.Second)
	w0 := writtenTotal(e)
	time.Sleep(window)
	b.ReportMetric(writtenTotal(e)-w0, fmt.Sprintf("writes-steady-%s", window))

	b.ReportMetric(float64(heapInUse()-e.heapBeforeMembers)/float64(len(names))/(1<<20), "MiB-heap-growth/member")
}

// benchDriftRestore deletes one applied object at a time in a member, times its return and
// reports the latencies.
func benchDriftRestore(b *testing.B, e *env) {
	b.Helper()
	ctx := context.Background()
	samples := 20
	if v := os.Getenv("FLOTILLA_BENCH_DRIFT_SAMPLES"); v != "" {
		var err error
		samples, err = strconv.Atoi(v)
		must(b, err)
	}
	var restore []float64
	for i := 0; i < samples; i++ {
		m := e.fleet.Members[i%len(e.fleet.Members)].Name
		q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("d-bench-ns-0%d", i%10), Name: "d-bench-quota"}}
		must(b, e.members[m].Get(ctx, client.ObjectKeyFromObject(q), q))
		uid := q.UID
		start := time.Now()
		must(b, e.members[m].Delete(ctx, q))
		fleettest.EventuallyEvery(b, 5*time.Millisecond, time.Minute, "quota restored in "+m, func() error {
			got := &corev1.ResourceQuota{}
			if err := e.members[m].Get(ctx, client.ObjectKeyFromObject(q), got); err != nil {
				return err
			}
			if got.UID == uid {
				return fmt.Errorf("not deleted yet")
			}
			return nil
		})
		restore = append(restore, time.Since(start).Seconds())
	}
	fleettest.ReportLatencies(b, "drift-restore", restore)
}

// auditMarks marks the end of the members' audit logs, for countDryRuns.
func auditMarks(b *testing.B, e *env, members []string) map[*localfleet.ControlPlane]localfleet.AuditMark {
	b.Helper()
	marks := map[*localfleet.ControlPlane]localfleet.AuditMark{}
	for _, m := range e.fleet.Members {
		if slices.Contains(members, m.Name) {
			mark, err := m.AuditMark()
			must(b, err)
			marks[m] = mark
		}
	}
	return marks
}

// countDryRuns counts the server-side dry runs the controller sent to the members since marks.
func countDryRuns(b *testing.B, e *env, marks map[*localfleet.ControlPlane]localfleet.AuditMark) int {
	b.Helper()
	n := 0
	for m, mark := range marks {
		reqs, err := m.Writes(mark, fleettest.HubUser)
		must(b, err)
		for _, r := range reqs {
			if r.DryRun {
				n++
			}
		}
	}
	return n
}

// runWorkload gives the workload's objects a run's name prefix and set label.
func runWorkload(workload, prefix, set string) string {
	y := strings.ReplaceAll(workload, "bench-", prefix+"bench-")
	return strings.ReplaceAll(y, benchSetLabel+": workload-50", benchSetLabel+": "+set)
}

func decodeWorkload(b *testing.B, y string) []*unstructured.Unstructured {
	b.Helper()
	var objs []*unstructured.Unstructured
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(y), 4096)
	for {
		obj := &unstructured.Unstructured{}
		err := dec.Decode(&obj.Object)
		if errors.Is(err, io.EOF) {
			return objs
		}
		must(b, err)
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}

// benchKinds are the kinds of the workload, listed to see which objects a member holds.
var benchKinds = []schema.GroupVersionKind{
	{Version: "v1", Kind: "NamespaceList"},
	{Version: "v1", Kind: "ResourceQuotaList"},
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicyList"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleList"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBindingList"},
}

// waitPresent polls every member, one goroutine each, every benchPoll until it holds all 50
// objects labelled with set (metadata-only lists).
func waitPresent(b *testing.B, e *env, members []string, set string) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(members))
	for i, m := range members {
		wg.Go(func() {
			deadline := time.Now().Add(5 * time.Minute)
			for {
				n, err := countSet(e.members[m], set)
				if err == nil && n >= 50 {
					return
				}
				if time.Now().After(deadline) {
					errs[i] = fmt.Errorf("member %s holds %d of 50 objects of %s (last error: %w)", m, n, set, err)
					return
				}
				time.Sleep(benchPoll)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

func countSet(c client.Client, set string) (int, error) {
	n := 0
	for _, gvk := range benchKinds {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk)
		if err := c.List(context.Background(), list, client.MatchingLabels{benchSetLabel: set}); err != nil {
			return n, err
		}
		n += len(list.Items)
	}
	return n, nil
}

// waitQuotaPods polls every member until the quota of namespace ns says pods: want.
func waitQuotaPods(b *testing.B, e *env, members []string, ns, want string) {
	b.Helper()
	for _, m := range members {
		fleettest.EventuallyEvery(b, benchPoll, 5*time.Minute, "changed quota in "+m, func() error {
			q := &corev1.ResourceQuota{}
			if err := e.members[m].Get(context.Background(), types.NamespacedName{Namespace: ns, Name: strings.TrimSuffix(ns, "ns-00") + "quota"}, q); err != nil {
				return err
			}
			if got := q.Spec.Hard.Pods().String(); got != want {
				return fmt.Errorf("pods %s", got)
			}
			return nil
		})
	}
}

// warmFloorClients makes the floor's clients (the members' direct clients) warm: REST
// mappings resolved and connections open, as a long-running applier's would be.
func warmFloorClients(b *testing.B, e *env, workload string) {
	b.Helper()
	for _, c := range e.members {
		for _, obj := range decodeWorkload(b, workload) {
			gvk := obj.GroupVersionKind()
			_, err := c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
			must(b, err)
		}
		_, err := countSet(c, "warm-up")
		must(b, err)
	}
}

// applyFloor server-side applies objs to every member at once, one goroutine per member,
// in the workload's order (Namespaces first): no diff, no status, no health checks.
func applyFloor(b *testing.B, e *env, members []string, objs []*unstructured.Unstructured) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(members))
	for i, m := range members {
		wg.Go(func() {
			for _, obj := range objs {
				err := e.members[m].Apply(context.Background(), client.ApplyConfigurationFromUnstructured(obj.DeepCopy()),
					client.FieldOwner("bench-floor"), client.ForceOwnership)
				if err != nil {
					errs[i] = fmt.Errorf("apply %s to %s: %w", render.ObjectRef(obj), m, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// deleteRun deletes a run's Baseline and waits until it is gone (its finalizer deleted its
// objects), then deletes the Namespaces it leaves behind (never pruned) without waiting.
func deleteRun(b *testing.B, e *env, bl *fleetv1alpha1.Baseline, prefix string) {
	b.Helper()
	ctx := context.Background()
	must(b, e.hub.Delete(ctx, bl))
	eventually(b, 5*time.Minute, "Baseline "+bl.Name+" deleted", func() error {
		err := e.hub.Get(ctx, client.ObjectKeyFromObject(bl), &fleetv1alpha1.Baseline{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%w)", err)
	})
	for _, c := range e.members {
		for i := 0; i < 10; i++ {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%sbench-ns-%02d", prefix, i)}}
			must(b, client.IgnoreNotFound(c.Delete(ctx, ns)))
		}
	}
}

// deleteFloor deletes the floor's objects (Namespaces take their contents) without waiting.
func deleteFloor(b *testing.B, e *env, members []string, objs []*unstructured.Unstructured) {
	b.Helper()
	for _, m := range members {
		for _, obj := range objs {
			if obj.GetNamespace() != "" {
				continue
			}
			must(b, client.IgnoreNotFound(e.members[m].Delete(context.Background(), obj.DeepCopy())))
		}
	}
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

func firstN(n int) []string {
	out := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("%02d", i))
	}
	return out
}

// writtenTotal sums the controller's objects-written counter over the members; deltas are
// taken within one fleet and one controller, so other fleets never mix in.
func writtenTotal(e *env) float64 {
	total := 0.0
	for name := range e.members {
		total += testutil.ToFloat64(objectsWritten.WithLabelValues(name))
	}
	return total
}

// waitAllApplied waits until n bindings of the Baseline hold its current revision, applied,
// and that revision is not notRevision (the one before an update).
func waitAllApplied(b *testing.B, e *env, name string, n int, notRevision string) {
	b.Helper()
	ctx := context.Background()
	eventually(b, 5*time.Minute, fmt.Sprintf("%d bindings of %s applied", n, name), func() error {
		bl := &fleetv1alpha1.Baseline{}
		if err := e.hub.Get(ctx, types.NamespacedName{Name: name}, bl); err != nil {
			return err
		}
		if bl.Status.ObservedGeneration != bl.Generation || bl.Status.Revision == "" || bl.Status.Revision == notRevision {
			return fmt.Errorf("baseline not observed yet")
		}
		list := &fleetv1alpha1.BaselineBindingList{}
		if err := e.hub.List(ctx, list, client.MatchingLabels{fleetv1alpha1.LabelBaseline: name}); err != nil {
			return err
		}
		done := 0
		for _, bb := range list.Items {
			if bb.Status.Revision == bl.Status.Revision && meta.IsStatusConditionTrue(bb.Status.Conditions, fleetv1alpha1.ConditionApplied) {
				done++
			}
		}
		if done < n {
			return fmt.Errorf("%d of %d applied", done, n)
		}
		return nil
	})
}

// setLabelsB sets a member's labels through its kubeconfig Secret's annotation.
func setLabelsB(b *testing.B, e *env, cluster, labels string) {
	b.Helper()
	ctx := context.Background()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: cluster}}
	update(b, e.hub, s, func() { s.Annotations[fleetv1alpha1.AnnotationClusterLabels] = labels })
	want := strings.Split(labels, ",")
	eventually(b, 20*time.Second, "labels on "+cluster, func() error {
		mc := &fleetv1alpha1.MemberCluster{}
		must(b, e.hub.Get(ctx, types.NamespacedName{Name: cluster}, mc))
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if mc.Labels[k] != v {
				return fmt.Errorf("labels %v", mc.Labels)
			}
		}
		return nil
	})
}
