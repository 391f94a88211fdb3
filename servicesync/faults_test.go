package servicesync

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// setPaused sets spec.paused of a MemberCluster and waits until the controller's cache
// (the manager's client) sees it.
func (e *env) setPaused(t *testing.T, cluster string, paused bool) {
	t.Helper()
	mc := &fleetv1alpha1.MemberCluster{ObjectMeta: metav1.ObjectMeta{Name: cluster}}
	update(t, e.hub, mc, func() { mc.Spec.Paused = paused })
	eventually(t, 30*time.Second, fmt.Sprintf("the controller to see %s paused=%v", cluster, paused), func() error {
		got := &fleetv1alpha1.MemberCluster{}
		if err := e.hub.Get(context.Background(), types.NamespacedName{Name: cluster}, got); err != nil {
			return err
		}
		if got.Spec.Paused != paused {
			return fmt.Errorf("paused=%v", got.Spec.Paused)
		}
		return nil
	})
}

// waitMemberReady waits until the member's Ready condition has status.
func (e *env) waitMemberReady(t *testing.T, cluster string, status metav1.ConditionStatus, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("member %s Ready=%s", cluster, status), func() error {
		mc := &fleetv1alpha1.MemberCluster{}
		if err := e.hub.Get(context.Background(), types.NamespacedName{Name: cluster}, mc); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(mc.Status.Conditions, fleetv1alpha1.ConditionReady); c == nil || c.Status != status {
			return fmt.Errorf("conditions %v", mc.Status.Conditions)
		}
		return nil
	})
}

// followLatency changes the source slice's endpoints to ready and returns how long the
// mirror in target took to publish exactly them (Endpoints and EndpointSlices), polled
// every 10ms.
func (e *env) followLatency(t *testing.T, slice *discoveryv1.EndpointSlice, target, name string, ready ...string) time.Duration {
	t.Helper()
	eps := map[string]bool{}
	for _, a := range ready {
		eps[a] = true
	}
	start := time.Now()
	update(t, e.members["member-1"], slice, func() { setEndpoints(slice, eps) })
	fleettest.EventuallyEvery(t, 10*time.Millisecond, 30*time.Second, fmt.Sprintf("mirror %s in %s with ready %v", name, target, ready),
		func() error { return e.mirrorState(target, name, ready, nil) })
	return time.Since(start)
}

// Two of four members stop answering (SIGSTOP of their kube-apiservers: connections stay
// open, nothing answers) while an export of a third keeps changing: the fourth member's
// mirror follows every change as fast as in an undisturbed fleet (+1s at most), also while
// the export's earlier writes into the frozen members still hang and before the hub has
// noticed them; the frozen members go NotReady, and after Thaw their mirrors catch up.
func TestFrozenMembersDelayNoMirror(t *testing.T) {
	e := newEnv(t, 4)
	ctx := context.Background()
	src := e.members["member-1"]
	must(t, src.Create(ctx, exported("web", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
	slice := podSlice("web", map[string]bool{"10.1.0.1": true})
	must(t, src.Create(ctx, slice))
	name := mirror.Name("web", "member-1")
	for _, m := range []string{"member-2", "member-3", "member-4"} {
		e.waitEndpoints(t, m, name, []string{"10.1.0.1"}, nil)
	}

	// The undisturbed latency of an endpoint change, for comparison (the slowest of three).
	var undisturbed time.Duration
	for i := 2; i <= 4; i++ {
		addr := fmt.Sprintf("10.1.0.%d", i)
		undisturbed = max(undisturbed, e.followLatency(t, slice, "member-2", name, addr))
		for _, m := range []string{"member-3", "member-4"} {
			e.waitEndpoints(t, m, name, []string{addr}, nil)
		}
	}
	bound := undisturbed + time.Second

	for _, m := range []string{"member-3", "member-4"} {
		fleettest.Must(t, e.fleet.Member(m).FreezeAPIServer()) // the fleet thaws it at teardown if the test fails first
	}
	// At once, before the hub can notice: the writes into the frozen members hang (until
	// the request timeout, 10s), and the second change comes while they still do.
	for i, addr := range []string{"10.1.0.10", "10.1.0.11"} {
		got := e.followLatency(t, slice, "member-2", name, addr)
		t.Logf("change %d with member-3 and member-4 frozen: member-2 followed in %s (undisturbed: %s)", i+1, got, undisturbed)
		if got > bound {
			t.Errorf("change %d: with two members frozen member-2's mirror followed after %s, want within the undisturbed %s + 1s", i+1, got, undisturbed)
		}
	}
	e.waitMemberReady(t, "member-3", metav1.ConditionFalse, 30*time.Second)
	e.waitMemberReady(t, "member-4", metav1.ConditionFalse, 30*time.Second)
	got := e.followLatency(t, slice, "member-2", name, "10.1.0.12")
	t.Logf("with member-3 and member-4 NotReady: member-2 followed in %s", got)
	if got > bound {
		t.Errorf("with two members NotReady member-2's mirror followed after %s, want within the undisturbed %s + 1s", got, undisturbed)
	}

	for _, m := range []string{"member-3", "member-4"} {
		fleettest.Must(t, e.fleet.Member(m).ThawAPIServer())
	}
	for _, m := range []string{"member-3", "member-4"} {
		e.waitMemberReady(t, m, metav1.ConditionTrue, 30*time.Second)
		e.waitEndpoints(t, m, name, []string{"10.1.0.12"}, nil)
	}
	e.exportedService(t, "member-1", "web", func(es *fleetv1alpha1.ExportedService) error {
		if got := strings.Join(es.Status.MirroredInto, ","); got != "member-2,member-3,member-4" {
			return fmt.Errorf("mirrored into %q", got)
		}
		return synced(metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, "mirrored into 3 members")(es)
	})
}

// A paused member gets no mirror write of any kind — no new mirror, no update, no removal:
// its API server's audit log shows not one write of the hub's identity — while the other
// members follow every change; unpaused, it catches up with exactly the writes it missed.
// Paused, then deleted, it leaves at once, its own export's mirrors are removed from the
// other members, and still nothing is written into it.
func TestPausedMemberGetsNoMirrorsThenCatchesUp(t *testing.T) {
	e := newEnvTB(t, localfleet.Options{Members: 3, AuditLog: true}, 2*time.Second)
	ctx := context.Background()
	src := e.members["member-1"]
	kept := podSlice("kept", map[string]bool{"10.1.0.1": true})
	dropped := podSlice("dropped", map[string]bool{"10.2.0.1": true})
	for _, s := range []*discoveryv1.EndpointSlice{kept, dropped} {
		svc := s.Labels[discoveryv1.LabelServiceName]
		must(t, src.Create(ctx, exported(svc, map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
		must(t, src.Create(ctx, s))
	}
	keptName, droppedName, addedName := mirror.Name("kept", "member-1"), mirror.Name("dropped", "member-1"), mirror.Name("added", "member-1")
	for _, m := range []string{"member-2", "member-3"} {
		e.waitEndpoints(t, m, keptName, []string{"10.1.0.1"}, nil)
		e.waitEndpoints(t, m, droppedName, []string{"10.2.0.1"}, nil)
	}
	for _, svc := range []string{"kept", "dropped"} {
		e.exportedService(t, "member-1", svc, synced(metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, "mirrored into 2 members"))
	}

	e.setPaused(t, "member-3", true)
	paused := fleettest.MarkWrites(t, fleettest.Audited{Cluster: e.fleet.Member("member-3"), Count: fleettest.ByUser(fleettest.HubUser)})
	// While member-3 is paused: an endpoint change, an unexport and a new export.
	update(t, src, kept, func() { setEndpoints(kept, map[string]bool{"10.1.0.2": true}) })
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "dropped"}}
	update(t, src, svc, func() { delete(svc.Annotations, fleetv1alpha1.AnnotationExport) })
	must(t, src.Create(ctx, exported("added", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
	must(t, src.Create(ctx, podSlice("added", map[string]bool{"10.3.0.1": true})))
	// member-2 follows all three.
	e.waitEndpoints(t, "member-2", keptName, []string{"10.1.0.2"}, nil)
	e.waitEndpoints(t, "member-2", addedName, []string{"10.3.0.1"}, nil)
	eventually(t, 30*time.Second, "mirror of the unexported Service removed from member-2",
		gone(e.members["member-2"], &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: droppedName}}))
	// The catalog: the paused member keeps its place where it holds a mirror.
	e.exportedService(t, "member-1", "added", func(es *fleetv1alpha1.ExportedService) error {
		if got := strings.Join(es.Status.MirroredInto, ","); got != "member-2" {
			return fmt.Errorf("mirrored into %q", got)
		}
		return nil
	})
	e.exportedService(t, "member-1", "kept", func(es *fleetv1alpha1.ExportedService) error {
		if got := strings.Join(es.Status.MirroredInto, ","); got != "member-2,member-3" || es.Status.ReadyEndpoints != 1 {
			return fmt.Errorf("mirrored into %q", got)
		}
		return nil
	})
	// member-3 was not touched, and is not while the others settle.
	consistently(t, 2*time.Second, "no write of the hub's identity into the paused member-3", paused.None)
	must(t, e.mirrorState("member-3", keptName, []string{"10.1.0.1"}, nil))
	must(t, e.mirrorState("member-3", droppedName, []string{"10.2.0.1"}, nil))
	if err := e.members["member-3"].Get(ctx, types.NamespacedName{Namespace: "shop", Name: addedName}, &corev1.Service{}); err == nil {
		t.Errorf("the paused member-3 got a mirror of a Service exported while it was paused")
	}

	catchUp := fleettest.MarkWrites(t, fleettest.Audited{Cluster: e.fleet.Member("member-3"), Count: fleettest.ByUser(fleettest.HubUser)})
	e.setPaused(t, "member-3", false)
	e.waitEndpoints(t, "member-3", keptName, []string{"10.1.0.2"}, nil)
	e.waitEndpoints(t, "member-3", addedName, []string{"10.3.0.1"}, nil)
	eventually(t, 30*time.Second, "mirror of the Service unexported while member-3 was paused removed from it after unpausing",
		gone(e.members["member-3"], &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: droppedName}}))
	eventually(t, 30*time.Second, "every mirror object of the unexported Service removed from member-3", func() error {
		for _, l := range []client.ObjectList{&corev1.EndpointsList{}, &discoveryv1.EndpointSliceList{}} {
			if err := e.members["member-3"].List(ctx, l, client.InNamespace("shop"), client.MatchingLabels(mirror.Labels("member-1", "shop", "dropped"))); err != nil {
				return err
			}
			if n := meta.LenList(l); n > 0 {
				return fmt.Errorf("%d %T items left", n, l)
			}
		}
		return nil
	})
	// Exactly what it missed: the kept mirror's endpoints updated (Endpoints and its
	// slice; the Service did not change), the added mirror created (Service, Endpoints,
	// slice), the dropped one removed; nothing twice, also while things settle.
	want := []string{
		"create endpoints", "create endpointslices.discovery.k8s.io", "create services",
		"update endpoints " + keptName, "update endpointslices.discovery.k8s.io " + keptName,
	}
	consistently(t, 2*time.Second, "the catch-up writes in member-3: exactly the missed ones", func() error {
		writes, err := catchUp.Writes()
		if err != nil {
			return err
		}
		var got, deletes []string
		for _, w := range writes {
			// "member-3: flotilla-hub verb resource namespace/name"; slices are named after
			// their mirror, with a suffix.
			f := strings.Fields(w)
			verb, res, obj := f[2], f[3], strings.TrimPrefix(f[len(f)-1], "shop/")
			switch {
			case verb == "delete":
				deletes = append(deletes, res+" "+obj)
			case verb == "update" && strings.HasPrefix(obj, keptName):
				got = append(got, verb+" "+res+" "+keptName)
			case verb == "update":
				got = append(got, verb+" "+res+" "+obj)
			default:
				got = append(got, verb+" "+res)
			}
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("creates and updates %q, want exactly %q (all writes: %v)", got, want, writes)
		}
		// The dropped mirror's Service and slice are deleted once each; its Endpoints
		// once, unless kube-controller-manager's endpoints controller (which deletes the
		// Endpoints of a deleted Service) came first.
		seen := map[string]int{}
		for _, d := range deletes {
			seen[d]++
		}
		for d, n := range seen {
			if n > 1 || !strings.Contains(d, droppedName) {
				return fmt.Errorf("deletes %v: each of the dropped mirror's objects at most once, nothing else", deletes)
			}
		}
		if seen["services "+droppedName] != 1 {
			return fmt.Errorf("deletes %v: want the dropped mirror's Service deleted once", deletes)
		}
		return nil
	})

	t.Run("a paused member leaves: its export's mirrors go, nothing is written into it", func(t *testing.T) {
		must(t, e.members["member-3"].Create(ctx, exported("local", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
		must(t, e.members["member-3"].Create(ctx, podSlice("local", map[string]bool{"10.4.0.1": true})))
		localName := mirror.Name("local", "member-3")
		e.waitEndpoints(t, "member-2", localName, []string{"10.4.0.1"}, nil)
		e.exportedService(t, "member-3", "local", synced(metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, "mirrored into 2 members"))

		e.setPaused(t, "member-3", true)
		leaving := fleettest.MarkWrites(t, fleettest.Audited{Cluster: e.fleet.Member("member-3"), Count: fleettest.ByUser(fleettest.HubUser)})
		// The registration source deletes the MemberCluster when its Secret goes.
		must(t, e.hub.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: "member-3"}}))
		for _, m := range []string{"member-1", "member-2"} {
			eventually(t, 30*time.Second, "mirror of the leaving paused member's export removed from "+m,
				gone(e.members[m], &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: localName}}))
		}
		eventually(t, 30*time.Second, "MemberCluster member-3 gone", gone(e.hub, &fleetv1alpha1.MemberCluster{ObjectMeta: metav1.ObjectMeta{Name: "member-3"}}))
		eventually(t, 30*time.Second, "catalog entry of the leaving member's export gone",
			gone(e.hub, &fleetv1alpha1.ExportedService{ObjectMeta: metav1.ObjectMeta{Name: fleetv1alpha1.ExportedServiceName("member-3", "shop", "local")}}))
		must(t, leaving.None())
		// The mirrors of member-1's exports stay in the paused member that left.
		must(t, e.mirrorState("member-3", keptName, []string{"10.1.0.2"}, nil))
	})
}
