package servicesync

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// TestUnexportedServicesAreNotHeld: the hub keeps nothing of a member's unexported Services
// but their names, and their changes enqueue nothing; an export among them still works.
func TestUnexportedServicesAreNotHeld(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	src := e.members["member-1"]
	const plain = 20
	for i := range plain {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("plain-%d", i),
			Labels:      map[string]string{"app": "plain", "team": "payments"},
			Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: `{"apiVersion":"v1","kind":"Service"}`}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
		must(t, e.createServiceWithSlice(ctx, src, svc, 3, i))
	}
	must(t, e.createServiceWithSlice(ctx, src, exported("web", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"}), 2, 100))
	e.waitExported(t, "web", 2)

	reader, err := e.conns.Reader("member-1")
	must(t, err)
	// Watches deliver in order per kind: with web seen, every plain Service and slice is.
	t.Run("the hub holds their names only", func(t *testing.T) {
		svcs := &metav1.PartialObjectMetadataList{}
		svcs.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ServiceList"))
		must(t, reader.List(ctx, svcs, client.InNamespace("shop")))
		seen := 0
		for _, s := range svcs.Items {
			if s.Name == "web" {
				continue
			}
			seen++
			if len(s.Labels) > 0 || len(s.Annotations) > 0 || len(s.ManagedFields) > 0 {
				t.Errorf("cached Service %s keeps labels %v, annotations %v, %d managedFields; want its name only",
					s.Name, s.Labels, s.Annotations, len(s.ManagedFields))
			}
		}
		if seen != plain {
			t.Errorf("the member cache has %d unexported Services, want %d", seen, plain)
		}
		for _, obj := range []client.Object{&corev1.Service{}, &discoveryv1.EndpointSlice{}} {
			if err := reader.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "plain-0"}, obj); err == nil {
				t.Errorf("the hub's member cache serves a full %T", obj)
			}
		}
	})

	t.Run("their changes enqueue nothing", func(t *testing.T) {
		m := &mapper{hub: e.hub, members: e.conns, dirty: newDirtyTimes(dirtyLimit)}
		slices := &metav1.PartialObjectMetadataList{}
		slices.SetGroupVersionKind(discoveryv1.SchemeGroupVersion.WithKind("EndpointSliceList"))
		must(t, reader.List(ctx, slices, client.InNamespace("shop")))
		for i := range slices.Items {
			s := &slices.Items[i]
			got := m.slice(ctx, "member-1", s)
			want := 0
			if s.Labels[discoveryv1.LabelServiceName] == "web" {
				want = 1
			}
			if len(got) != want {
				t.Errorf("a change of slice %s enqueues %v, want %d requests", s.Name, got, want)
			}
		}
		svc := serviceMeta()
		must(t, reader.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "plain-0"}, svc))
		if got := m.service(ctx, "member-1", svc); len(got) != 0 {
			t.Errorf("a change of an unexported Service enqueues %v", got)
		}
		if got := m.dirty.len(); got != 1 {
			t.Errorf("%d changes are timed, want 1 (web's slice only)", got)
		}
	})
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
