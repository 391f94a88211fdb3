// Package floor is what propagation benchmarks measure Flotilla against: the shared
// 50-object workload (propagation/testdata/workload-50.yaml), the raw server-side-apply
// floor — the same objects applied to every member at once with warm clients, no diff, no
// status, no health checks — and the observables both are timed on: every object of a run
// present in every member, and one changed or deleted object, each watched the same way. BenchmarkBaseline50 (propagation) and
// BenchmarkFleetScale (e2e/scale) use it, so that their ratios to the floor mean the same.
//
// It holds benchmark helpers only: no product code imports it, and it decides nothing about
// what Flotilla applies.
package floor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

const (
	// SetLabel marks every object of the workload; its value names one run, so that a run's
	// objects are counted apart from earlier runs' (and from the floor's).
	SetLabel = "benchmark.flotilla.dev/set"
	// Poll is how often a member whose client cannot watch is counted for a run's objects
	// (five lists per member), the same for Flotilla and for the floor.
	Poll = 250 * time.Millisecond
	// ChangePoll is how often a member whose client cannot watch is read for one changed
	// object (WaitQuotaPods), the same for Flotilla and for the floor: a change takes
	// tenths of a second, which Poll would round up by as much as it measures.
	ChangePoll = 20 * time.Millisecond
	// FieldManager is the floor's server-side apply field manager.
	FieldManager = "bench-floor"
)

// Workload is the shared 50-object workload as YAML: 10 Namespaces with a default-deny
// NetworkPolicy and a ResourceQuota each, 10 ClusterRoles and their bindings, every object
// labelled SetLabel: workload-50 and named bench-….
func Workload(tb testing.TB) string {
	tb.Helper()
	root, err := localfleet.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	y, err := os.ReadFile(filepath.Join(root, "propagation", "testdata", "workload-50.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(y)
}

// ForRun gives the workload's objects a run's name prefix and set label value.
func ForRun(workload, prefix, set string) string {
	y := strings.ReplaceAll(workload, "bench-", prefix+"bench-")
	return strings.ReplaceAll(y, SetLabel+": workload-50", SetLabel+": "+set)
}

// Decode parses multi-document YAML into objects, in order.
func Decode(tb testing.TB, y string) []*unstructured.Unstructured {
	tb.Helper()
	var objs []*unstructured.Unstructured
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(y), 4096)
	for {
		obj := &unstructured.Unstructured{}
		err := dec.Decode(&obj.Object)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			tb.Fatal(err)
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}

// kinds are the kinds of the workload, listed to count a set's objects in a member.
var kinds = []schema.GroupVersionKind{
	{Version: "v1", Kind: "NamespaceList"},
	{Version: "v1", Kind: "ResourceQuotaList"},
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicyList"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleList"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBindingList"},
}

// Count is how many objects labelled with set c's member holds (metadata-only lists).
func Count(ctx context.Context, c client.Client, set string) (int, error) {
	n := 0
	for _, gvk := range kinds {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk)
		if err := c.List(ctx, list, client.MatchingLabels{SetLabel: set}); err != nil {
			return n, err
		}
		n += len(list.Items)
	}
	return n, nil
}

// WaitPresent waits until every member holds want objects of set, one goroutine each, and
// fails tb after timeout. A member whose client can watch (client.WithWatch) is watched, one
// label-selected watch per kind: presence is seen as the member announces it, and waiting
// costs the member nothing — polling 50 members with five lists each every 250 ms was work
// on the same 2 cores the applies need, more of it the longer a create took. Other members
// are counted every Poll. Flotilla and the floor are timed the same way.
func WaitPresent(tb testing.TB, members map[string]client.Client, set string, want int, timeout time.Duration) {
	tb.Helper()
	must(tb, forEach(members, func(m string, c client.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if wc, ok := c.(client.WithWatch); ok {
			if err := watchPresent(ctx, wc, set, want); err != nil {
				return fmt.Errorf("member %s: %w", m, err)
			}
			return nil
		}
		for {
			n, err := Count(ctx, c, set)
			if err == nil && n >= want {
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("member %s holds %d of %d objects of %s (last error: %w)", m, n, want, set, errors.Join(ctx.Err(), err))
			}
			time.Sleep(Poll)
		}
	}))
}

// watchPresent watches every kind of the workload labelled set in c's member until it
// holds want of them. A watch opened without a resourceVersion starts with the objects as
// they are, so objects created before it opened count too; one that ends early is opened
// again.
func watchPresent(ctx context.Context, c client.WithWatch, set string, want int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	present := map[string]bool{}
	enough := make(chan struct{})
	var once sync.Once
	for _, gvk := range kinds {
		go func() {
			for ctx.Err() == nil {
				list := &metav1.PartialObjectMetadataList{}
				list.SetGroupVersionKind(gvk)
				w, err := c.Watch(ctx, list, client.MatchingLabels{SetLabel: set})
				if err != nil {
					time.Sleep(ChangePoll)
					continue
				}
				for ev := range w.ResultChan() {
					o, ok := ev.Object.(*metav1.PartialObjectMetadata)
					if !ok {
						continue
					}
					key := gvk.Kind + "/" + o.Namespace + "/" + o.Name
					mu.Lock()
					if ev.Type == watch.Deleted {
						delete(present, key)
					} else {
						present[key] = true
					}
					n := len(present)
					mu.Unlock()
					if n >= want {
						once.Do(func() { close(enough) })
					}
				}
				w.Stop()
			}
		}()
	}
	select {
	case <-enough:
		return nil
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		return fmt.Errorf("holds %d of %d objects of %s: %w", len(present), want, set, ctx.Err())
	}
}

// WaitQuotaPods waits until the ResourceQuota ns/name says pods: want (the workload's
// one-object change) in every member, one goroutine each, and fails tb after timeout. It
// watches the object in members whose client can watch (client.WithWatch) — the change is
// seen as the member announces it, at no cost to the member while it waits — and polls the
// others every ChangePoll.
func WaitQuotaPods(tb testing.TB, members map[string]client.Client, ns, name, want string, timeout time.Duration) {
	tb.Helper()
	must(tb, forEach(members, func(m string, c client.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var err error
		if wc, ok := c.(client.WithWatch); ok {
			err = watchQuotaPods(ctx, wc, ns, name, want)
		} else {
			err = pollQuotaPods(ctx, c, ns, name, want)
		}
		if err != nil {
			return fmt.Errorf("member %s: %w", m, err)
		}
		return nil
	}))
}

// watchQuotaPods watches the ResourceQuota ns/name until it says pods: want; a watch that
// ends early is opened again. A watch opened without a resourceVersion starts with the
// object as it is, so a change made before the watch opened is seen too.
func watchQuotaPods(ctx context.Context, c client.WithWatch, ns, name, want string) error {
	last := "none"
	for {
		w, err := c.Watch(ctx, &corev1.ResourceQuotaList{}, client.InNamespace(ns), client.MatchingFields{"metadata.name": name})
		if err == nil {
			for ev := range w.ResultChan() {
				q, ok := ev.Object.(*corev1.ResourceQuota)
				if !ok || ev.Type == watch.Deleted {
					continue
				}
				if last = q.Spec.Hard.Pods().String(); last == want {
					w.Stop()
					return nil
				}
			}
			w.Stop()
		}
		if ctx.Err() != nil {
			return fmt.Errorf("quota %s/%s pods %s, want %s: %w", ns, name, last, want, errors.Join(ctx.Err(), err))
		}
		time.Sleep(ChangePoll) // the watch failed or ended: open it again
	}
}

// WaitRestored waits until the member holds the ResourceQuota ns/name again, as an object
// other than uid (the one deleted), watching it like WaitQuotaPods, and returns when it saw it.
func WaitRestored(ctx context.Context, c client.WithWatch, ns, name string, uid types.UID) (time.Time, error) {
	for {
		w, err := c.Watch(ctx, &corev1.ResourceQuotaList{}, client.InNamespace(ns), client.MatchingFields{"metadata.name": name})
		if err == nil {
			for ev := range w.ResultChan() {
				if q, ok := ev.Object.(*corev1.ResourceQuota); ok && ev.Type != watch.Deleted && q.UID != uid {
					w.Stop()
					return time.Now(), nil
				}
			}
			w.Stop()
		}
		if ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("quota %s/%s not restored: %w", ns, name, errors.Join(ctx.Err(), err))
		}
		time.Sleep(ChangePoll)
	}
}

// pollQuotaPods reads the ResourceQuota ns/name every ChangePoll until it says pods: want.
func pollQuotaPods(ctx context.Context, c client.Client, ns, name, want string) error {
	for {
		q := &corev1.ResourceQuota{}
		err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, q)
		if err == nil && q.Spec.Hard.Pods().String() == want {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("quota %s/%s pods %s, want %s: %w", ns, name, q.Spec.Hard.Pods(), want, errors.Join(ctx.Err(), err))
		}
		time.Sleep(ChangePoll)
	}
}

// WarmClients resolves the REST mappings of objs and opens connections in every member, as
// a long-running applier's clients would have them.
func WarmClients(tb testing.TB, members map[string]client.Client, objs []*unstructured.Unstructured) {
	tb.Helper()
	must(tb, forEach(members, func(_ string, c client.Client) error {
		for _, obj := range objs {
			gvk := obj.GroupVersionKind()
			if _, err := c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
				return err
			}
		}
		_, err := Count(context.Background(), c, "warm-up")
		return err
	}))
}

// Apply is the floor: it server-side applies objs to every member at once, one goroutine per
// member, in order (Namespaces first), as FieldManager, with no diff, no status and no
// health checks.
func Apply(tb testing.TB, members map[string]client.Client, objs []*unstructured.Unstructured) {
	tb.Helper()
	must(tb, forEach(members, func(m string, c client.Client) error {
		for _, obj := range objs {
			if err := c.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(obj.DeepCopy()),
				client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
				return fmt.Errorf("apply %s %s/%s to %s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), m, err)
			}
		}
		return nil
	}))
}

// Delete deletes the cluster-scoped objects among objs in every member (a Namespace takes
// its contents along) without waiting for them to go.
func Delete(tb testing.TB, members map[string]client.Client, objs []*unstructured.Unstructured) {
	tb.Helper()
	must(tb, forEach(members, func(_ string, c client.Client) error {
		for _, obj := range objs {
			if obj.GetNamespace() != "" {
				continue
			}
			if err := c.Delete(context.Background(), obj.DeepCopy()); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
		return nil
	}))
}

// WaitGone waits until no cluster-scoped object of objs is left in any member — a Namespace
// is gone only once its contents are — and fails tb after timeout. Benchmarks call it
// between runs, so that a measurement does not share the members with the clean-up of the
// one before (kube-controller-manager emptying deleted Namespaces).
func WaitGone(tb testing.TB, members map[string]client.Client, objs []*unstructured.Unstructured, timeout time.Duration) {
	tb.Helper()
	must(tb, forEach(members, func(m string, c client.Client) error {
		deadline := time.Now().Add(timeout)
		for _, obj := range objs {
			if obj.GetNamespace() != "" {
				continue
			}
			for {
				live := &metav1.PartialObjectMetadata{}
				live.SetGroupVersionKind(obj.GroupVersionKind())
				err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), live)
				if apierrors.IsNotFound(err) {
					break
				}
				if time.Now().After(deadline) {
					if err != nil {
						return fmt.Errorf("member %s: read %s %s: %w", m, obj.GetKind(), obj.GetName(), err)
					}
					return fmt.Errorf("member %s still holds %s %s", m, obj.GetKind(), obj.GetName())
				}
				time.Sleep(Poll)
			}
		}
		return nil
	}))
}

// forEach runs do for every member at once and returns their errors joined.
func forEach(members map[string]client.Client, do func(string, client.Client) error) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for m, c := range members {
		wg.Go(func() {
			if err := do(m, c); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
