package propagation

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// BenchmarkBaseline50 propagates the shared 50-object workload (10 Namespaces with a
// default-deny NetworkPolicy and a ResourceQuota each, 10 ClusterRoles and bindings) to 1,
// 5 and 10 real members and reports, per size: seconds from Baseline creation until every
// binding holds the revision, objects written per member, the same after one object
// changes, and — in the same run, for a ratio — a sequential `kubectl apply --server-side`
// loop over the members. At 10 members it also reports drift-restore latency (p50, p99),
// objects written during a steady-state window (FLOTILLA_BENCH_STEADY, default 60s) and
// hub heap per member. Run with `make bench`.
func BenchmarkBaseline50(b *testing.B) {
	workload, err := os.ReadFile("testdata/workload-50.yaml")
	must(b, err)
	e := newEnv(b, 10)
	ctx := context.Background()
	for i, m := range e.fleet.Members {
		// Label members by index so a Baseline can select the first N.
		setLabelsB(b, e, m.Name, fmt.Sprintf("env=test,name=%s,idx=%02d", m.Name, i+1))
	}
	kubectl, err := filepath.Abs("../bin/k8s/" + localfleet.KubernetesVersion + "/kubectl")
	must(b, err)

	run := 0
	for _, n := range []int{1, 5, 10} {
		var create, update, kubectlLoop, writes, updateWrites []float64
		for i := 0; i < b.N; i++ {
			run++
			// Fresh object names every run, so every run is a cold apply of 50 new objects.
			y := strings.ReplaceAll(string(workload), "bench-", fmt.Sprintf("r%d-bench-", run))
			name := fmt.Sprintf("bench-%d", run)
			bl := baseline(name, y)
			bl.Spec.ClusterSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "idx", Operator: metav1.LabelSelectorOpIn, Values: firstN(n)}}}
			w0 := writtenTotal(e)
			start := time.Now()
			must(b, e.hub.Create(ctx, bl))
			waitAllApplied(b, e, name, n, "")
			create = append(create, time.Since(start).Seconds())
			writes = append(writes, (writtenTotal(e)-w0)/float64(n))

			// One object changes: a new revision, one write per member.
			must(b, e.hub.Get(ctx, types.NamespacedName{Name: name}, bl))
			oldRevision := bl.Status.Revision
			w0 = writtenTotal(e)
			start = time.Now()
			must(b, retry.RetryOnConflict(retry.DefaultRetry, func() error {
				if err := e.hub.Get(ctx, types.NamespacedName{Name: name}, bl); err != nil {
					return err
				}
				bl.Spec.Resources[0].Inline = strings.Replace(bl.Spec.Resources[0].Inline, "pods: \"20\"", "pods: \"30\"", 1)
				return e.hub.Update(ctx, bl)
			}))
			waitAllApplied(b, e, name, n, oldRevision)
			update = append(update, time.Since(start).Seconds())
			updateWrites = append(updateWrites, (writtenTotal(e)-w0)/float64(n))

			// The same manifests, applied by a plain loop over the members' kubeconfigs.
			ky := strings.ReplaceAll(string(workload), "bench-", fmt.Sprintf("k%d-bench-", run))
			file := filepath.Join(b.TempDir(), "workload.yaml")
			must(b, os.WriteFile(file, []byte(ky), 0o600))
			start = time.Now()
			for _, m := range e.fleet.Members[:n] {
				out, err := exec.Command(kubectl, "--kubeconfig", m.KubeconfigPath, "apply", "--server-side", "-f", file).CombinedOutput()
				if err != nil {
					b.Fatalf("kubectl apply to %s: %v\n%s", m.Name, err, out)
				}
			}
			kubectlLoop = append(kubectlLoop, time.Since(start).Seconds())
		}
		b.ReportMetric(median(create), fmt.Sprintf("s-create-%dm", n))
		b.ReportMetric(median(kubectlLoop), fmt.Sprintf("s-kubectl-loop-%dm", n))
		b.ReportMetric(median(writes), fmt.Sprintf("writes/member-create-%dm", n))
		b.ReportMetric(median(update), fmt.Sprintf("s-update-%dm", n))
		b.ReportMetric(median(updateWrites), fmt.Sprintf("writes/member-update-%dm", n))
	}

	// Drift restore latency: delete one applied object in a member, time its return.
	name := fmt.Sprintf("bench-%d", run)
	var restore []float64
	for i := 0; i < 20; i++ {
		m := e.fleet.Members[i%len(e.fleet.Members)].Name
		q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("r%d-bench-ns-0%d", run, i%10), Name: fmt.Sprintf("r%d-bench-quota", run)}}
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
	sort.Float64s(restore)
	b.ReportMetric(restore[len(restore)/2]*1000, "ms-drift-restore-p50")
	b.ReportMetric(restore[len(restore)*99/100]*1000, "ms-drift-restore-p99")

	// Steady state: nothing changes, nothing may be written.
	window := 60 * time.Second
	if v := os.Getenv("FLOTILLA_BENCH_STEADY"); v != "" {
		window, err = time.ParseDuration(v)
		must(b, err)
	}
	w0 := writtenTotal(e)
	time.Sleep(window)
	b.ReportMetric(writtenTotal(e)-w0, fmt.Sprintf("writes-steady-%s", window))

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/float64(len(e.fleet.Members))/(1<<20), "MiB-heap/member")
	_ = name
}

func firstN(n int) []string {
	out := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("%02d", i))
	}
	return out
}

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

func setLabelsB(b *testing.B, e *env, cluster, labels string) {
	b.Helper()
	ctx := context.Background()
	s := &corev1.Secret{}
	must(b, e.hub.Get(ctx, types.NamespacedName{Namespace: hubNS, Name: cluster}, s))
	s.Annotations[fleetv1alpha1.AnnotationClusterLabels] = labels
	must(b, e.hub.Update(ctx, s))
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

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
