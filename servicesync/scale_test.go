package servicesync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// TestUnexportedServicesAreNotHeld: the hub's member cache holds nothing of a member's
// unexported Services and their slices, and their changes reach no handler; an export among
// them is mirrored, and follows its annotation being removed and added again, its slices
// changing, its Service deleted and re-created, a member reconnect and a hub restart.
func TestUnexportedServicesAreNotHeld(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	src := e.members["member-1"]
	const plain = 50
	must(t, parallel(8, plain, func(i int) error {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("plain-%d", i),
			Labels:      map[string]string{"app": "plain", "team": "payments"},
			Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: `{"apiVersion":"v1","kind":"Service"}`}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
		return e.createServiceWithSlice(ctx, src, svc, 3, i)
	}))
	must(t, e.createServiceWithSlice(ctx, src, exported("web", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"}), 2, 100))
	e.waitExported(t, "web", 2)
	// Watches deliver in order per kind: with web seen, every plain Service and slice was.
	e.holds(t, []string{"web"}, []string{"web-pods"}, false)
	webMirror := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: mirror.Name("web", "member-1")}}
	webSlice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-pods"}}
	setWebEndpoints := func(n int) {
		eps := map[string]bool{}
		for x := range n {
			eps[fmt.Sprintf("10.64.100.%d", 10+x)] = true
		}
		update(t, src, webSlice, func() { setEndpoints(webSlice, eps) })
	}
	setExport := func(name, value string) {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}
		update(t, src, svc, func() {
			if value == "" {
				delete(svc.Annotations, fleetv1alpha1.AnnotationExport)
			} else {
				svc.Annotations[fleetv1alpha1.AnnotationExport] = value
			}
		})
	}

	t.Run("changes of unexported Services and slices reach no handler", func(t *testing.T) {
		heard := e.listen(t)
		for i := range plain {
			s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("plain-%d-pods", i)}}
			update(t, src, s, func() { setEndpoints(s, map[string]bool{fmt.Sprintf("10.64.%d.99", i): true}) })
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("plain-%d", i)}}
			update(t, src, svc, func() { svc.Labels["version"] = "2" })
		}
		// The last changes, of the export: once they are heard, so were the ones before.
		setWebEndpoints(3)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}
		update(t, src, svc, func() { svc.Labels = map[string]string{"version": "2"} })
		eventually(t, 30*time.Second, "the handlers to hear of web's Service and slice changes", func() error {
			for _, o := range []client.Object{webSlice, svc} {
				if !heard.had(o.GetName(), o.GetResourceVersion()) {
					return fmt.Errorf("%s at resourceVersion %s not heard", o.GetName(), o.GetResourceVersion())
				}
			}
			return nil
		})
		if others := heard.namesOtherThan("web", "web-pods"); len(others) > 0 {
			t.Errorf("handlers heard of %v, want web and its slice only", others)
		}
	})

	t.Run("unexported, the Service and then its slices leave the hub", func(t *testing.T) {
		setExport("web", "")
		eventually(t, 30*time.Second, "web's mirror removed from member-2", gone(e.members["member-2"], webMirror))
		e.holds(t, nil, []string{"web-pods"}, true)
		// The slice leaves at its next change (or the next relist).
		setWebEndpoints(4)
		e.holds(t, nil, nil, true)
	})

	t.Run("exported again, it is mirrored with its current endpoints and follows its slice", func(t *testing.T) {
		setExport("web", "true")
		e.waitExported(t, "web", 4)
		setWebEndpoints(5)
		e.waitExported(t, "web", 5)
		e.holds(t, []string{"web"}, []string{"web-pods"}, true)
	})

	t.Run("deleted and re-created", func(t *testing.T) {
		must(t, src.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}))
		eventually(t, 30*time.Second, "web's mirror removed from member-2", gone(e.members["member-2"], webMirror))
		e.holds(t, nil, []string{"web-pods"}, true)
		must(t, src.Create(ctx, exported("web", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
		e.waitExported(t, "web", 5)
	})

	t.Run("after the member reconnects, the new cache holds the export and its slice only", func(t *testing.T) {
		must(t, e.fleet.Member("member-1").FreezeAPIServer())
		e.waitMemberReady(t, "member-1", metav1.ConditionFalse, time.Minute)
		must(t, e.fleet.Member("member-1").ThawAPIServer())
		e.waitMemberReady(t, "member-1", metav1.ConditionTrue, time.Minute)
		e.holds(t, []string{"web"}, []string{"web-pods"}, true)
		setExport("plain-7", "true")
		e.waitExported(t, "plain-7", 1)
		e.holds(t, []string{"plain-7", "web"}, []string{"plain-7-pods", "web-pods"}, false)
	})

	parent := t
	t.Run("an export removed while the hub is down is unexported when it is back", func(t *testing.T) {
		e.stop()
		setExport("plain-7", "")
		e.startController(parent)
		eventually(t, time.Minute, "plain-7's mirror removed from member-2", gone(e.members["member-2"],
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: mirror.Name("plain-7", "member-1")}}))
		e.holds(t, []string{"web"}, []string{"web-pods"}, true)
		e.waitExported(t, "web", 5)
	})
}

// holds waits until the hub's cache of member-1 holds exactly the Services named (in
// namespace shop) and no EndpointSlice but those named; with all, it must hold all of them.
// (A slice enters the cache at its first change after its Service is exported, or at a
// relist: a reconcile reads the slices of an export from the member.)
func (e *env) holds(t *testing.T, services, sliceNames []string, all bool) {
	t.Helper()
	names := func(kind string) ([]string, error) {
		reader, err := e.conns.Reader("member-1")
		if err != nil {
			return nil, err
		}
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind + "List"))
		if kind == "EndpointSlice" {
			list.SetGroupVersionKind(discoveryv1.SchemeGroupVersion.WithKind(kind + "List"))
		}
		if err := reader.List(context.Background(), list, client.InNamespace("shop")); err != nil {
			return nil, err
		}
		var out []string
		for _, o := range list.Items {
			out = append(out, o.Name)
		}
		sort.Strings(out)
		return out, nil
	}
	eventually(t, 30*time.Second, fmt.Sprintf("the hub to hold Services %v and EndpointSlices %v of member-1", services, sliceNames), func() error {
		svcs, err := names("Service")
		if err != nil {
			return err
		}
		sls, err := names("EndpointSlice")
		if err != nil {
			return err
		}
		extra := slices.ContainsFunc(sls, func(s string) bool { return !slices.Contains(sliceNames, s) })
		if !slices.Equal(svcs, services) || extra || (all && !slices.Equal(sls, sliceNames)) {
			return fmt.Errorf("it holds Services %v and EndpointSlices %v", svcs, sls)
		}
		return nil
	})
}

// heard records the Services and EndpointSlices of member-1 the hub's handlers hear of.
type heard struct {
	mu   sync.Mutex
	seen map[string]map[string]bool // name -> resourceVersions
}

// listen attaches a handler to member-1's Service and EndpointSlice informers for the rest of
// the test and records what it hears.
func (e *env) listen(t *testing.T) *heard {
	t.Helper()
	h := &heard{seen: map[string]map[string]bool{}}
	record := func(_ context.Context, cluster string, o client.Object) []reconcile.Request {
		if cluster != "member-1" {
			return nil
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.seen[o.GetName()] == nil {
			h.seen[o.GetName()] = map[string]bool{}
		}
		h.seen[o.GetName()][o.GetResourceVersion()] = true
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	t.Cleanup(q.ShutDown)
	for _, obj := range []client.Object{serviceMeta(), sliceMeta()} {
		must(t, e.conns.WatchSource(obj, record).Start(ctx, q))
	}
	return h
}

func (h *heard) had(name, resourceVersion string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[name][resourceVersion]
}

func (h *heard) namesOtherThan(names ...string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for n := range h.seen {
		if !slices.Contains(names, n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// TestHeartbeatEnqueuesNothing: a MemberCluster status heartbeat enqueues no export; a
// Connected transition enqueues that member's exports only.
func TestHeartbeatEnqueuesNothing(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	for _, c := range []string{"member-1", "member-2"} {
		must(t, e.createServiceWithSlice(ctx, e.members[c], exported("web", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"}), 1, 7))
	}
	e.exportedService(t, "member-1", "web", synced(metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, "mirrored into 1 members"))
	e.exportedService(t, "member-2", "web", synced(metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, "mirrored into 1 members"))

	m := &mapper{hub: e.hub, members: e.conns, dirty: newDirtyTimes(dirtyLimit)}
	enqueued := func(old, mc *fleetv1alpha1.MemberCluster) []exportRequest {
		q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[exportRequest]())
		defer q.ShutDown()
		m.memberChanged(ctx, event.TypedUpdateEvent[client.Object]{ObjectOld: old, ObjectNew: mc}, q)
		var out []exportRequest
		for q.Len() > 0 {
			r, _ := q.Get()
			out = append(out, r)
			q.Done(r)
		}
		return out
	}
	old := &fleetv1alpha1.MemberCluster{}
	must(t, e.hub.Get(ctx, types.NamespacedName{Name: "member-1"}, old))

	// A heartbeat as the MemberCluster controller writes it, through the API server.
	beat := old.DeepCopy()
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := e.hub.Get(ctx, client.ObjectKeyFromObject(beat), beat); err != nil {
			return err
		}
		beat.Status.LastProbeTime = ptr.To(metav1.NewTime(time.Now().Add(time.Hour)))
		beat.Status.NodeCount = ptr.To[int32](42)
		return e.hub.Status().Update(ctx, beat)
	}))
	if got := enqueued(old, beat); len(got) != 0 {
		t.Errorf("a heartbeat enqueued %v, want nothing", got)
	}

	down := beat.DeepCopy()
	for i := range down.Status.Conditions {
		if down.Status.Conditions[i].Type == fleetv1alpha1.ConditionConnected {
			down.Status.Conditions[i].Status = metav1.ConditionFalse
		}
	}
	want := exportRequest{Cluster: "member-1", NamespacedName: types.NamespacedName{Namespace: "shop", Name: "web"}}
	if got := enqueued(beat, down); len(got) != 1 || got[0] != want {
		t.Errorf("member-1 disconnecting enqueued %v, want only %v", got, want)
	}
}

// TestCatalogStatusIsReadableByKstatus: a working export is Current with its generation
// observed; an invalid one is Failed (Stalled) with an actionable message, and is Current
// again once fixed.
func TestCatalogStatusIsReadableByKstatus(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	src := e.members["member-1"]
	must(t, src.Create(ctx, exported("api", map[string]string{fleetv1alpha1.AnnotationAddressMode: "Teleport"})))
	kstatus := func(want status.Status, msg string) func(*fleetv1alpha1.ExportedService) error {
		return func(es *fleetv1alpha1.ExportedService) error {
			u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(es)
			if err != nil {
				return err
			}
			res, err := status.Compute(&unstructured.Unstructured{Object: u})
			if err != nil {
				return err
			}
			if res.Status != want || es.Status.ObservedGeneration != es.Generation {
				return fmt.Errorf("kstatus %s (%s), observedGeneration %d of %d; want %s", res.Status, res.Message,
					es.Status.ObservedGeneration, es.Generation, want)
			}
			return synced(metav1.ConditionFalse, fleetv1alpha1.ReasonInvalidExport, msg)(es)
		}
	}
	e.exportedService(t, "member-1", "api", kstatus(status.FailedStatus, "Teleport"))
	es := e.exportedService(t, "member-1", "api", func(es *fleetv1alpha1.ExportedService) error { return nil })
	for _, c := range es.Status.Conditions {
		if c.Type == fleetv1alpha1.ConditionStalled && c.Reason != fleetv1alpha1.ReasonInvalidExport {
			t.Errorf("Stalled reason %q, want %s", c.Reason, fleetv1alpha1.ReasonInvalidExport)
		}
	}

	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc := &corev1.Service{}
		if err := src.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "api"}, svc); err != nil {
			return err
		}
		svc.Annotations[fleetv1alpha1.AnnotationAddressMode] = "ClusterIP"
		return src.Update(ctx, svc)
	}))
	e.exportedService(t, "member-1", "api", func(es *fleetv1alpha1.ExportedService) error {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(es)
		if err != nil {
			return err
		}
		res, err := status.Compute(&unstructured.Unstructured{Object: u})
		if err != nil {
			return err
		}
		if res.Status != status.CurrentStatus {
			return fmt.Errorf("kstatus %s (%s), want Current", res.Status, res.Message)
		}
		return synced(metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, "mirrored into 1 members")(es)
	})
	eventually(t, 30*time.Second, "the fixed export mirrored", func() error {
		return e.members["member-2"].Get(ctx, types.NamespacedName{Namespace: "shop", Name: mirror.Name("api", "member-1")}, &corev1.Service{})
	})
}

// TestNodesAreHeldOnlyWhileAnExportNeedsThem: a member's Nodes are cached only while one of
// its exports publishes node addresses; a Node change then reaches the mirror, and when the
// last such export goes the hub lets go of the Nodes.
func TestNodesAreHeldOnlyWhileAnExportNeedsThem(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	src := e.members["member-1"]
	addNode := func(i int) {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)}}
		must(t, src.Create(ctx, n))
		updateStatus(t, src, n, func() {
			n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("192.0.2.%d", 10+i)}}
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
			n.Status.Images = []corev1.ContainerImage{{Names: []string{"registry.example/app:v1"}, SizeBytes: 1 << 20}}
		})
	}
	addNode(0)
	reader, err := e.conns.Reader("member-1")
	must(t, err)
	cachedNodes := func() ([]corev1.Node, error) {
		list := &corev1.NodeList{}
		err := reader.List(ctx, list)
		return list.Items, err
	}
	notCached := func() error {
		var missing *cache.ErrResourceNotCached
		if _, err := cachedNodes(); !errors.As(err, &missing) {
			return fmt.Errorf("listing cached Nodes: %w, want ErrResourceNotCached", err)
		}
		return nil
	}

	// PodIP exports need the Nodes too (their pod CIDRs bound what is published); ClusterIP
	// ones do not.
	must(t, src.Create(ctx, exported("web", map[string]string{fleetv1alpha1.AnnotationAddressMode: "ClusterIP"})))
	e.waitExported(t, "web", 1)
	if err := notCached(); err != nil {
		t.Fatalf("with a ClusterIP export only: %v", err)
	}

	np := exported("np", nil)
	np.Spec.Type = corev1.ServiceTypeNodePort
	must(t, src.Create(ctx, np))
	name := mirror.Name("np", "member-1")
	e.waitEndpoints(t, "member-2", name, []string{"192.0.2.10"}, nil)
	nodes, err := cachedNodes()
	must(t, err)
	// node-0 and the environment's pod-network Node.
	if len(nodes) != 2 || slices.ContainsFunc(nodes, func(n corev1.Node) bool { return len(n.Status.Images) > 0 || len(n.ManagedFields) > 0 }) {
		t.Errorf("cached Nodes %+v, want node-0 and pod-network trimmed (no images, no managedFields)", nodes)
	}
	addNode(1) // reaches the mirror through the on-demand watch
	e.waitEndpoints(t, "member-2", name, []string{"192.0.2.10", "192.0.2.11"}, nil)

	must(t, src.Delete(ctx, np))
	eventually(t, 30*time.Second, "mirror of np removed", gone(e.members["member-2"], &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}))
	eventually(t, 30*time.Second, "member-1's Nodes dropped from the hub", notCached)
}
