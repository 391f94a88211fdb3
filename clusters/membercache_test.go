//nolint:staticcheck // SA1019: servicesync caches the v1 Endpoints it mirrors; these tests cache them the same way.
package clusters

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// maxGoroutinesPerMember is the structural bound of a connected member's goroutines in
// the hub: the prober, the HTTP/2 connection's read loop, and three per cached kind (the
// kind's loop, its watch's HTTP/2 stream and client-go's decoder). The kinds of
// memberCacheHarness are those of propagation and servicesync, an on-demand one and two
// of a Baseline: 8 kinds, 26 goroutines; the bound leaves room for a probe in flight.
const maxGoroutinesPerMember = 40

func metaOf(gvk schema.GroupVersionKind) *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{}
	p.SetGroupVersionKind(gvk)
	return p
}

var (
	namespaceKind = corev1.SchemeGroupVersion.WithKind("Namespace")
	serviceKind   = corev1.SchemeGroupVersion.WithKind("Service")
	sliceKind     = discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice")
	nodeKind      = corev1.SchemeGroupVersion.WithKind("Node")
	configMapKind = corev1.SchemeGroupVersion.WithKind("ConfigMap")
	roleKind      = schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"}
)

// memberCacheHarness is a connection manager with the member cache propagation and
// servicesync set up (Namespaces, filtered Services and slices, mirror Endpoints, Nodes on
// demand) plus a KindSource, and the queue their handlers feed.
type memberCacheHarness struct {
	conns *Connections
	queue workqueue.TypedRateLimitingInterface[reconcile.Request]
	kinds KindWatches
	ctx   context.Context
}

func startMemberCacheHarness(t *testing.T) *memberCacheHarness {
	t.Helper()
	scheme := k8sruntime.NewScheme()
	must(t, clientgoscheme.AddToScheme(scheme))
	conns := NewConnections(scheme, Options{ProbeInterval: 500 * time.Millisecond, ProbeTimeout: 5 * time.Second,
		DynamicLabelSelector: labels.SelectorFromSet(labels.Set{fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue})})
	everything := cache.ByObject{Label: labels.Everything()}
	must(t, conns.RegisterWatch(metaOf(namespaceKind), everything))
	must(t, conns.RegisterWatch(metaOf(serviceKind), everything))
	must(t, conns.RegisterWatch(metaOf(sliceKind), everything))
	must(t, conns.RegisterWatch(&corev1.Endpoints{}, cache.ByObject{}))
	must(t, conns.RegisterOnDemand(metaOf(nodeKind), everything))
	// Services labelled exported=yes only, and their slices (servicesync's filters, in small).
	must(t, conns.RegisterFilter(metaOf(serviceKind), func(string, client.Reader) KeepFunc {
		return func(_ context.Context, o client.Object) bool { return o.GetLabels()["exported"] == "yes" }
	}))
	must(t, conns.RegisterFilter(metaOf(sliceKind), func(_ string, cached client.Reader) KeepFunc {
		return func(ctx context.Context, o client.Object) bool {
			key := types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetLabels()[discoveryv1.LabelServiceName]}
			return cached.Get(ctx, key, metaOf(serviceKind)) == nil
		}
	}))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = conns.Start(ctx)
	}()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	t.Cleanup(func() {
		cancel()
		<-done
		queue.ShutDown()
	})
	mapFn := func(_ context.Context, cluster string, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: cluster + "/" + o.GetObjectKind().GroupVersionKind().Kind, Name: o.GetName()}}}
	}
	for _, obj := range []client.Object{metaOf(namespaceKind), metaOf(serviceKind), metaOf(sliceKind), &corev1.Endpoints{}, metaOf(nodeKind)} {
		must(t, conns.WatchSource(obj, mapFn).Start(ctx, queue))
	}
	src, kinds := conns.KindSource(mapFn)
	must(t, src.Start(ctx, queue))
	eventually(t, 10*time.Second, "the connection manager started", func() error {
		conns.mu.Lock()
		defer conns.mu.Unlock()
		if conns.ctx == nil {
			return errors.New("not started")
		}
		return nil
	})
	return &memberCacheHarness{conns: conns, queue: queue, kinds: kinds, ctx: ctx}
}

// connect connects member name and waits until it is connected with every kind running.
func (h *memberCacheHarness) connect(t *testing.T, name string, kubeconfig []byte) {
	t.Helper()
	creds, err := LoadCredentials(kubeconfig, CredentialPolicy{AllowLoopback: true})
	must(t, err)
	must(t, h.conns.Ensure(name, creds))
	eventually(t, 60*time.Second, "member "+name+" connected", func() error {
		if !slices.Contains(h.conns.Connected(), name) {
			return errors.New("not connected")
		}
		return nil
	})
	h.conns.Demand(name, metaOf(nodeKind), "test", true)
	h.kinds.EnsureKind(configMapKind)
	h.kinds.EnsureKind(roleKind)
	r, err := h.conns.Reader(name)
	must(t, err)
	eventually(t, 30*time.Second, "every kind of "+name+" synced", func() error {
		for _, gvk := range []schema.GroupVersionKind{namespaceKind, serviceKind, sliceKind, nodeKind, configMapKind, roleKind} {
			list := &metav1.PartialObjectMetadataList{}
			list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
			if err := r.List(h.ctx, list); err != nil {
				return fmt.Errorf("list %s: %w", gvk.Kind, err)
			}
		}
		return r.List(h.ctx, &corev1.EndpointsList{})
	})
}

// next waits for the queue to hold want, taking everything before it.
func (h *memberCacheHarness) next(t *testing.T, want reconcile.Request) {
	t.Helper()
	got := make(chan struct{})
	go func() {
		defer close(got)
		for {
			r, shutdown := h.queue.Get()
			if shutdown {
				return
			}
			h.queue.Done(r)
			h.queue.Forget(r)
			if r == want {
				return
			}
		}
	}()
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		t.Fatalf("no request %v within 30s", want)
	}
}

// TestMemberGoroutinesAreBoundedAndGoWithTheMember: a connected member costs the hub at most
// maxGoroutinesPerMember goroutines with the kinds Flotilla caches, and every one of them
// is gone once the member is removed.
func TestMemberGoroutinesAreBoundedAndGoWithTheMember(t *testing.T) {
	fleet := startFleet(t, 3)
	h := startMemberCacheHarness(t)
	baseline := settledGoroutines()

	names := []string{"a", "b", "c"}
	for i, name := range names {
		h.connect(t, name, fleet.Members[i].Kubeconfig())
	}
	eventually(t, 30*time.Second, fmt.Sprintf("at most %d goroutines per member", maxGoroutinesPerMember), func() error {
		per := float64(runtime.NumGoroutine()-baseline) / float64(len(names))
		if per > maxGoroutinesPerMember {
			return fmt.Errorf("%.1f goroutines per member (baseline %d, now %d)", per, baseline, runtime.NumGoroutine())
		}
		t.Logf("%.1f goroutines per member", per)
		return nil
	})

	for _, name := range names {
		h.conns.Remove(name)
	}
	eventually(t, 30*time.Second, "goroutines back to the baseline once the members are removed", func() error {
		if n := runtime.NumGoroutine(); n > baseline {
			return fmt.Errorf("%d goroutines, baseline %d:\n%s", n, baseline, goroutineDump())
		}
		return nil
	})
}

// TestMemberCacheReadsAndEvents: reads of a member cache honour scope, filters, namespaces
// and label selectors and return copies; unregistered kinds fail; changes in the member
// (an update and a delete of an object a Baseline wrote, a Service becoming exported and
// then no longer) reach the handlers.
func TestMemberCacheReadsAndEvents(t *testing.T) {
	fleet := startFleet(t, 1)
	h := startMemberCacheHarness(t)
	h.connect(t, "m", fleet.Members[0].Kubeconfig())
	member, err := fleet.Members[0].Client()
	must(t, err)
	ctx := context.Background()
	managed := map[string]string{fleetv1alpha1.LabelManagedBy: fleetv1alpha1.ManagedByValue}
	for _, ns := range []string{"shop", "blog"} {
		must(t, member.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		must(t, member.Create(ctx, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mirror", Labels: managed}}))
		must(t, member.Create(ctx, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "foreign"}}))
	}
	r, err := h.conns.Reader("m")
	must(t, err)

	t.Run("scope, namespace and copies", func(t *testing.T) {
		eventually(t, 10*time.Second, "the mirror Endpoints of shop cached, nothing else", func() error {
			eps := &corev1.EndpointsList{}
			if err := r.List(ctx, eps, client.InNamespace("shop"), client.MatchingLabels(managed)); err != nil {
				return err
			}
			if len(eps.Items) != 1 || eps.Items[0].Name != "mirror" || eps.Items[0].Namespace != "shop" {
				return fmt.Errorf("listed %v", eps.Items)
			}
			return nil
		})
		got := &corev1.Endpoints{}
		must(t, r.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "mirror"}, got))
		got.Labels["scribbled"] = "yes"
		again := &corev1.Endpoints{}
		must(t, r.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "mirror"}, again))
		if again.Labels["scribbled"] != "" {
			t.Error("a read handed out the cache's own object: a caller's change shows in the next read")
		}
		if err := r.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "foreign"}, &corev1.Endpoints{}); !apierrors.IsNotFound(err) {
			t.Errorf("Endpoints Flotilla did not write: %v, want not found (outside the default scope)", err)
		}
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
		must(t, r.List(ctx, list, client.MatchingLabels{"kubernetes.io/metadata.name": "blog"}))
		if len(list.Items) != 1 || list.Items[0].Name != "blog" || list.Items[0].GroupVersionKind() != namespaceKind {
			t.Errorf("Namespaces by label: %v, want blog with its kind set", list.Items)
		}
	})

	t.Run("unregistered kinds fail", func(t *testing.T) {
		err := r.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "x"}, &corev1.Secret{})
		var notCached *cache.ErrResourceNotCached
		if !errors.As(err, &notCached) {
			t.Errorf("read of Secrets: %v, want ErrResourceNotCached", err)
		}
		h.conns.Demand("m", metaOf(nodeKind), "test", false)
		if err := r.List(ctx, &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"}}); !errors.As(err, &notCached) {
			t.Errorf("read of Nodes nobody demands: %v, want ErrResourceNotCached", err)
		}
	})

	t.Run("changes reach the handlers", func(t *testing.T) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "settings", Labels: managed}}
		must(t, member.Create(ctx, cm))
		h.next(t, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "m/ConfigMap", Name: "settings"}})
		update(t, member, cm, func() { cm.Data = map[string]string{"drift": "yes"} })
		h.next(t, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "m/ConfigMap", Name: "settings"}})
		must(t, member.Delete(ctx, cm))
		h.next(t, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "m/ConfigMap", Name: "settings"}})

		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
		must(t, member.Create(ctx, svc))
		update(t, member, svc, func() { svc.Labels = map[string]string{"exported": "yes"} })
		h.next(t, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "m/Service", Name: "web"}})
		must(t, r.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "web"}, metaOf(serviceKind)))
		update(t, member, svc, func() { svc.Labels = nil })
		eventually(t, 10*time.Second, "a Service no longer exported leaves the cache", func() error {
			err := r.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "web"}, metaOf(serviceKind))
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		})
	})
}

// settledGoroutines is the goroutine count once it has stopped changing for a moment.
func settledGoroutines() int {
	last := runtime.NumGoroutine()
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n == last {
			return n
		}
		last = n
	}
	return last
}

func goroutineDump() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
