package propagation

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/floor"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// BenchmarkBaseline50 propagates the shared 50-object workload (e2e/floor: 10 Namespaces
// with a default-deny NetworkPolicy and a ResourceQuota each, 10 ClusterRoles and bindings)
// to 1, 5 and 10 real members. Every figure is a median over b.N iterations, measured on
// what a user of the members sees — all 50 objects present in every selected member, or one
// object changed — watched in every member (floor.WaitPresent, floor.WaitQuotaPods):
//
//   - s-create-<n>m: from Baseline creation until the objects are present;
//   - s-applied-<n>m, s-healthy-<n>m: until every binding also says Applied, and Applied and
//     Healthy (the controller's own report);
//   - s-floor-<n>m: the floor (floor.Apply) — the same objects server-side applied by one
//     goroutine per member with warm clients, no diff and no status — and
//     ratio-create-vs-floor-<n>m;
//   - s-update-<n>m: one object changed, until its new value is present in every member,
//     watched in every member (floor.WaitQuotaPods); s-update-floor-<n>m: the same object
//     changed by the floor (server-side applied to every member at once), watched the same
//     way, and ratio-update-vs-floor-<n>m;
//   - writes/member-create-<n>m, writes/member-update-<n>m: objects the controller wrote;
//   - dryruns/member-create-<n>m, reqs/member-create-<n>m, reqs/member-update-<n>m:
//     server-side dry runs, and requests of any verb, the controller sent per member while
//     creating (until Healthy) and changing, counted in the members' audit logs (a fresh
//     object needs no dry run; the log line says which verbs).
//
// The hub probes members as fleet-controller does by default (newBenchEnv). Each run uses
// fresh object names and is deleted (and waited for) before the next, so no
// earlier Baseline is alive during a measurement. Then, with every member and one Baseline:
// drift-restore latency (FLOTILLA_BENCH_DRIFT_SAMPLES deletions of a ResourceQuota, default
// 100 so that the p99 is one; below 100 the tail is reported as max; each from the deletion
// until a watch opened before it sees the object again: floor.WaitRestored), objects written during
// a steady-state window (FLOTILLA_BENCH_STEADY, default 60s) and hub heap growth per member
// since before the members were registered. ns/op is the time of the timed Flotilla
// creations only (fleet start-up, floors and clean-up are outside the timer). Run with `make
// bench`; on a small machine run one fleet size at a time: FLOTILLA_BENCH_MEMBERS=1 (or 5,
// 10; the sizes 1, 5, 10 up to it are measured, default 10) and FLOTILLA_BENCH_SIZES (a
// comma-separated list of sizes, to measure only some), for example
//
//	FLOTILLA_BENCH_MEMBERS=10 FLOTILLA_BENCH_SIZES=10 FLOTILLA_BENCH_STEADY=10s go test -p 1 ./propagation/ \
//	  -run '^$' -bench BenchmarkBaseline50 -benchtime 1x -count 3 -timeout 60m
func BenchmarkBaseline50(b *testing.B) {
	workload := floor.Workload(b)
	fleetSize := 10
	if v := os.Getenv("FLOTILLA_BENCH_MEMBERS"); v != "" {
		var err error
		fleetSize, err = strconv.Atoi(v)
		must(b, err)
	}
	e := newBenchEnv(b, localfleet.Options{Members: fleetSize, AuditLog: true})
	ctx := context.Background()
	var names []string
	for i, m := range e.fleet.Members {
		// Label members by index so a Baseline can select the first N.
		setLabelsB(b, e, m.Name, fmt.Sprintf("env=test,name=%s,idx=%02d", m.Name, i+1))
		names = append(names, m.Name)
	}
	floor.WarmClients(b, e.members, floor.Decode(b, workload))
	b.ResetTimer()
	b.StopTimer()

	run := 0
	for _, n := range benchSizes(b, fleetSize) {
		members := e.clientsOf(names[:n])
		var create, applied, healthy, floorCreate, floorChanged, changed, writes, updateWrites, dryRuns, reqs, updateReqs []float64
		for i := 0; i < b.N; i++ {
			run++
			name, set, prefix := fmt.Sprintf("bench-%d", run), fmt.Sprintf("run-%d", run), fmt.Sprintf("r%d-", run)
			objs := floor.Decode(b, floor.ForRun(workload, prefix, set))
			bl := baseline(name, floor.ForRun(workload, prefix, set))
			bl.Spec.ClusterSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "idx", Operator: metav1.LabelSelectorOpIn, Values: firstN(n)}}}

			w0 := writtenTotal(e)
			marks := auditMarks(b, e, names[:n])
			b.StartTimer()
			start := time.Now()
			must(b, e.hub.Create(ctx, bl))
			floor.WaitPresent(b, members, set, len(objs), 5*time.Minute)
			create = append(create, time.Since(start).Seconds())
			b.StopTimer()
			waitAllApplied(b, e, name, n, "", false)
			applied = append(applied, time.Since(start).Seconds())
			waitAllApplied(b, e, name, n, "", true)
			healthy = append(healthy, time.Since(start).Seconds())
			writes = append(writes, (writtenTotal(e)-w0)/float64(n))
			dry, all := countRequests(b, e, marks, fmt.Sprintf("create %d members", n))
			dryRuns, reqs = append(dryRuns, float64(dry)/float64(n)), append(reqs, float64(all)/float64(n))

			// One object changes: a new revision, one write per member.
			must(b, e.hub.Get(ctx, types.NamespacedName{Name: name}, bl))
			oldRevision := bl.Status.Revision
			w0 = writtenTotal(e)
			marks = auditMarks(b, e, names[:n])
			start = time.Now()
			update(b, e.hub, bl, func() {
				bl.Spec.Resources[0].Inline = strings.Replace(bl.Spec.Resources[0].Inline, "pods: \"20\"", "pods: \"30\"", 1)
			})
			floor.WaitQuotaPods(b, members, prefix+"bench-ns-00", prefix+"bench-quota", "30", 5*time.Minute)
			changed = append(changed, time.Since(start).Seconds())
			waitAllApplied(b, e, name, n, oldRevision, true)
			updateWrites = append(updateWrites, (writtenTotal(e)-w0)/float64(n))
			_, all = countRequests(b, e, marks, fmt.Sprintf("change %d members", n))
			updateReqs = append(updateReqs, float64(all)/float64(n))
			deleteRun(b, e, bl, prefix)
			floor.WaitGone(b, members, objs, 5*time.Minute)

			// The floor: the same objects, fresh names, raw server-side apply in parallel.
			fset := fmt.Sprintf("floor-%d", run)
			fobjs := floor.Decode(b, floor.ForRun(workload, fmt.Sprintf("f%d-", run), fset))
			start = time.Now()
			floor.Apply(b, members, fobjs)
			floor.WaitPresent(b, members, fset, len(fobjs), 5*time.Minute)
			floorCreate = append(floorCreate, time.Since(start).Seconds())
			// The floor of a change: the one changed object applied to every member at once.
			fquota := floor.Decode(b, strings.Replace(floor.ForRun(workload, fmt.Sprintf("f%d-", run), fset), "pods: \"20\"", "pods: \"30\"", 1))
			fquota = slices.DeleteFunc(fquota, func(o *unstructured.Unstructured) bool {
				return o.GetKind() != "ResourceQuota" || o.GetNamespace() != fmt.Sprintf("f%d-bench-ns-00", run)
			})
			start = time.Now()
			floor.Apply(b, members, fquota)
			floor.WaitQuotaPods(b, members, fmt.Sprintf("f%d-bench-ns-00", run), fmt.Sprintf("f%d-bench-quota", run), "30", 5*time.Minute)
			floorChanged = append(floorChanged, time.Since(start).Seconds())
			floor.Delete(b, members, fobjs)
			floor.WaitGone(b, members, fobjs, 5*time.Minute)
		}
		b.ReportMetric(fleettest.Median(create), fmt.Sprintf("s-create-%dm", n))
		b.ReportMetric(fleettest.Median(applied), fmt.Sprintf("s-applied-%dm", n))
		b.ReportMetric(fleettest.Median(healthy), fmt.Sprintf("s-healthy-%dm", n))
		b.ReportMetric(fleettest.Median(floorCreate), fmt.Sprintf("s-floor-%dm", n))
		b.ReportMetric(fleettest.Median(create)/fleettest.Median(floorCreate), fmt.Sprintf("ratio-create-vs-floor-%dm", n))
		b.ReportMetric(fleettest.Median(writes), fmt.Sprintf("writes/member-create-%dm", n))
		b.ReportMetric(fleettest.Median(dryRuns), fmt.Sprintf("dryruns/member-create-%dm", n))
		b.ReportMetric(fleettest.Median(reqs), fmt.Sprintf("reqs/member-create-%dm", n))
		b.ReportMetric(fleettest.Median(changed), fmt.Sprintf("s-update-%dm", n))
		b.ReportMetric(fleettest.Median(floorChanged), fmt.Sprintf("s-update-floor-%dm", n))
		b.ReportMetric(fleettest.Median(changed)/fleettest.Median(floorChanged), fmt.Sprintf("ratio-update-vs-floor-%dm", n))
		b.ReportMetric(fleettest.Median(updateWrites), fmt.Sprintf("writes/member-update-%dm", n))
		b.ReportMetric(fleettest.Median(updateReqs), fmt.Sprintf("reqs/member-update-%dm", n))
	}

	// One Baseline in every member for drift, steady state and heap.
	bl := baseline("bench-drift", floor.ForRun(workload, "d-", "drift"))
	must(b, e.hub.Create(ctx, bl))
	floor.WaitPresent(b, e.members, "drift", 50, 5*time.Minute)
	waitAllApplied(b, e, "bench-drift", len(names), "", true)
	w0 := writtenTotal(e)
	samples := benchDriftRestore(b, e)
	// The watch sees a restored object as soon as the member has it, before the controller
	// counts the write: the last restores are waited for, lest they count in the window.
	eventually(b, time.Minute, "drift restores counted", func() error {
		if got := writtenTotal(e) - w0; got < float64(samples) {
			return fmt.Errorf("%.0f of %d restores counted", got, samples)
		}
		return nil
	})

	// Steady state: nothing changes, nothing may be written.
	window := envDuration(b, "FLOTILLA_BENCH_STEADY", 60*time.Second)
	w0 = writtenTotal(e)
	time.Sleep(window)
	b.ReportMetric(writtenTotal(e)-w0, fmt.Sprintf("writes-steady-%s", window))

	b.ReportMetric(float64(heapInUse()-e.heapBeforeMembers)/float64(len(names))/(1<<20), "MiB-heap-growth/member")
}

// clientsOf is the direct clients of the named members.
func (e *env) clientsOf(names []string) map[string]client.Client {
	out := make(map[string]client.Client, len(names))
	for _, n := range names {
		out[n] = e.members[n]
	}
	return out
}

// benchDriftRestore deletes one applied object at a time in a member, times its return and
// reports the latencies; it returns how many objects it deleted.
func benchDriftRestore(b *testing.B, e *env) int {
	b.Helper()
	ctx := context.Background()
	samples := 100
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
		// The watch opens before the deletion, so that the restore is seen as the member
		// announces it.
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		seen := make(chan error, 1)
		var restored time.Time
		go func() {
			var err error
			restored, err = floor.WaitRestored(wctx, e.members[m].(client.WithWatch), q.Namespace, q.Name, uid)
			seen <- err
		}()
		start := time.Now()
		must(b, e.members[m].Delete(ctx, q))
		err := <-seen
		cancel()
		must(b, err)
		restore = append(restore, restored.Sub(start).Seconds())
	}
	fleettest.ReportLatencies(b, "drift-restore", restore)
	return samples
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

// countRequests counts the requests the controller sent to the members since marks: the
// server-side dry runs and all of them. It logs them by verb (and dry run), to show where
// the requests of a phase go.
func countRequests(b *testing.B, e *env, marks map[*localfleet.ControlPlane]localfleet.AuditMark, phase string) (dryRuns, all int) {
	b.Helper()
	byVerb := map[string]int{}
	for m, mark := range marks {
		reqs, err := m.Requests(mark, fleettest.HubUser)
		must(b, err)
		for _, r := range reqs {
			verb := r.Verb + " " + r.Resource
			if r.DryRun {
				dryRuns++
				verb += " (dry run)"
			}
			byVerb[verb]++
		}
		all += len(reqs)
	}
	b.Logf("%s: %d requests to the members: %v", phase, all, byVerb)
	return dryRuns, all
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

// benchSizes are the fleet sizes measured: FLOTILLA_BENCH_SIZES, or 1, 5 and 10, up to the
// fleet's size.
func benchSizes(b *testing.B, fleetSize int) []int {
	b.Helper()
	sizes := []int{1, 5, 10}
	if v := os.Getenv("FLOTILLA_BENCH_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			must(b, err)
			sizes = append(sizes, n)
		}
	}
	var out []int
	for _, n := range sizes {
		if n <= fleetSize {
			out = append(out, n)
		}
	}
	return out
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
		total += seriesSum(objectsWritten, prometheus.Labels{"cluster": name})
	}
	return total
}

// waitAllApplied waits until n bindings of the Baseline hold its current revision, applied
// (and healthy, if healthy), and that revision is not notRevision (the one before an update).
func waitAllApplied(b *testing.B, e *env, name string, n int, notRevision string, healthy bool) {
	b.Helper()
	ctx := context.Background()
	eventually(b, 5*time.Minute, fmt.Sprintf("%d bindings of %s applied (healthy: %t)", n, name, healthy), func() error {
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
			if bb.Status.Revision == bl.Status.Revision && meta.IsStatusConditionTrue(bb.Status.Conditions, fleetv1alpha1.ConditionApplied) &&
				(!healthy || meta.IsStatusConditionTrue(bb.Status.Conditions, fleetv1alpha1.ConditionHealthy)) {
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
