package servicesync

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// Trust boundaries of service sync, tried as an attacker would: a tenant exporting into a
// namespace that refuses mirrors, and a tenant of the source member writing EndpointSlices by
// hand that point other clusters at addresses that are not its pods.

// TestNamespaceRefusingImportsGetsNoMirror: the owner of a target namespace labels it
// fleet.flotilla.dev/import=false; the mirror already there is removed, a new export never
// arrives, and the catalog says which member refused and why. Removing the label brings both.
func TestNamespaceRefusingImportsGetsNoMirror(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	src, target := e.members["member-1"], e.members["member-2"]
	must(t, src.Create(ctx, exported("web", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
	must(t, src.Create(ctx, podSlice("web", map[string]bool{"10.1.0.1": true})))
	e.waitEndpoints(t, "member-2", mirror.Name("web", "member-1"), []string{"10.1.0.1"}, nil)

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	setImport(t, target, ns, "false")
	eventually(t, 30*time.Second, "every mirror gone from member-2's namespace shop", noMirrorIn(target, "shop"))
	refused := importRefused("member-2", fleetv1alpha1.ReasonImportDisabled)
	e.exportedService(t, "member-1", "web", refused)

	// A new export, to every member, while the namespace refuses: the catalog records the
	// refusal, and nothing ever reaches member-2.
	must(t, src.Create(ctx, exported("api", map[string]string{fleetv1alpha1.AnnotationAddressMode: "ClusterIP"})))
	e.exportedService(t, "member-1", "api", refused)
	consistently(t, 3*time.Second, "no mirror in member-2's namespace shop", noMirrorIn(target, "shop"))

	t.Run("removing the label brings the mirrors back", func(t *testing.T) {
		setImport(t, target, ns, "")
		e.waitEndpoints(t, "member-2", mirror.Name("web", "member-1"), []string{"10.1.0.1"}, nil)
		eventually(t, 30*time.Second, "the mirror of api in member-2", func() error {
			return target.Get(ctx, types.NamespacedName{Namespace: "shop", Name: mirror.Name("api", "member-1")}, &corev1.Service{})
		})
		e.exportedService(t, "member-1", "web", func(es *fleetv1alpha1.ExportedService) error {
			if len(es.Status.ImportRefusedBy) > 0 || !slices.Equal(es.Status.MirroredInto, []string{"member-2"}) {
				return fmt.Errorf("importRefusedBy %v, mirroredInto %v", es.Status.ImportRefusedBy, es.Status.MirroredInto)
			}
			return nil
		})
	})
}

// TestImportOptIn: with --import-mode=opt-in a namespace receives mirrors only once its owner
// labels it fleet.flotilla.dev/import=true, and loses them when the label goes.
func TestImportOptIn(t *testing.T) {
	e := newEnvConfigured(t, localfleet.StartForTest(t, localfleet.Options{Members: 2}), 2*time.Second, envConfig{importMode: ImportOptIn})
	ctx := context.Background()
	src, target := e.members["member-1"], e.members["member-2"]
	must(t, src.Create(ctx, exported("web", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
	must(t, src.Create(ctx, podSlice("web", map[string]bool{"10.1.0.1": true})))

	e.exportedService(t, "member-1", "web", importRefused("member-2", fleetv1alpha1.ReasonImportNotEnabled))
	consistently(t, 3*time.Second, "no mirror in member-2's unlabelled namespace shop", noMirrorIn(target, "shop"))

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	setImport(t, target, ns, "true")
	e.waitEndpoints(t, "member-2", mirror.Name("web", "member-1"), []string{"10.1.0.1"}, nil)
	e.exportedService(t, "member-1", "web", synced(metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, "mirrored into 1 members"))

	setImport(t, target, ns, "")
	eventually(t, 30*time.Second, "the mirror gone from member-2 once the label is removed", noMirrorIn(target, "shop"))
}

// TestAddressesOutsideTheSourceAreRefused: a tenant of the source member writes an
// EndpointSlice by hand with the member's own API server Service IP and other addresses that
// are no pod of the source; a NodePort export carries a Node address that must not be
// published. None reaches any Endpoints or EndpointSlice of the target member; the catalog
// lists each with its reason.
func TestAddressesOutsideTheSourceAreRefused(t *testing.T) {
	e := newEnvConfigured(t, localfleet.StartForTest(t, localfleet.Options{Members: 2}), 2*time.Second, envConfig{podCIDR: "10.244.0.0/16"})
	ctx := context.Background()
	src, target := e.members["member-1"], e.members["member-2"]
	// The API server's Service IP: what a pod in the target would reach (with its own
	// ServiceAccount token) if a mirror sent it there.
	kubernetes := &corev1.Service{}
	must(t, src.Get(ctx, types.NamespacedName{Namespace: metav1.NamespaceDefault, Name: "kubernetes"}, kubernetes))
	apiIP := kubernetes.Spec.ClusterIP
	hostile := []string{apiIP, "10.96.0.1", "192.0.2.1"}

	t.Run("PodIP: only addresses inside the source's pod CIDRs", func(t *testing.T) {
		must(t, src.Create(ctx, exported("web", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
		eps := map[string]bool{"10.244.1.5": true}
		for _, a := range hostile {
			eps[a] = true
		}
		must(t, src.Create(ctx, podSlice("web", eps)))
		e.waitEndpoints(t, "member-2", mirror.Name("web", "member-1"), []string{"10.244.1.5"}, nil)
		var want []string
		for _, a := range hostile {
			want = append(want, a+": "+mirror.ReasonOutsidePodCIDRs)
		}
		e.exportedService(t, "member-1", "web", refusedAddresses(want...))
		noAddressIn(t, target, hostile...)
	})

	t.Run("NodePort: only addresses of the source's nodes, never a slice's", func(t *testing.T) {
		// Nodes by hand (no kubelet): worker-1 is an ordinary node, worker-2 claims the cloud
		// metadata address.
		for name, addr := range map[string]string{"worker-1": "192.0.2.10", "worker-2": "169.254.169.254"} {
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
			must(t, src.Create(ctx, n))
			updateStatus(t, src, n, func() {
				n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: addr}}
				n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
					LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
			})
		}
		np := exported("np", nil)
		np.Spec.Type = corev1.ServiceTypeNodePort
		must(t, src.Create(ctx, np))
		slice := podSlice("np", map[string]bool{apiIP: true, "10.244.1.6": true})
		must(t, src.Create(ctx, slice))
		e.waitEndpoints(t, "member-2", mirror.Name("np", "member-1"), []string{"192.0.2.10"}, nil)
		e.exportedService(t, "member-1", "np", refusedAddresses("169.254.169.254: link-local"))
		noAddressIn(t, target, append(hostile, "169.254.169.254", "10.244.1.6")...)
	})
}

// setImport sets (or, with "", removes) the import label of a member Namespace, as its owner would.
func setImport(t *testing.T, c client.Client, ns *corev1.Namespace, value string) {
	t.Helper()
	update(t, c, ns, func() {
		if value == "" {
			delete(ns.Labels, fleetv1alpha1.LabelImport)
			return
		}
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels[fleetv1alpha1.LabelImport] = value
	})
}

// importRefused: the catalog entry lists cluster as refusing the import for reason, and
// does not count it as mirrored.
func importRefused(cluster, reason string) func(*fleetv1alpha1.ExportedService) error {
	return func(es *fleetv1alpha1.ExportedService) error {
		r := es.Status.ImportRefusedBy
		if len(r) != 1 || r[0].Cluster != cluster || r[0].Reason != reason || slices.Contains(es.Status.MirroredInto, cluster) {
			return fmt.Errorf("importRefusedBy %+v, mirroredInto %v; want %s refusing (%s)", r, es.Status.MirroredInto, cluster, reason)
		}
		return synced(metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, "refused by "+cluster+" ("+reason+")")(es)
	}
}

// refusedAddresses: status.refused holds each of want ("<address>: <reason>").
func refusedAddresses(want ...string) func(*fleetv1alpha1.ExportedService) error {
	return func(es *fleetv1alpha1.ExportedService) error {
		for _, w := range want {
			if !slices.Contains(es.Status.Refused, w) {
				return fmt.Errorf("status.refused %q lacks %q", es.Status.Refused, w)
			}
		}
		return nil
	}
}

// noMirrorIn: no Service, Endpoints or EndpointSlice of any mirror exists in the member's
// namespace, read from its API server.
func noMirrorIn(c client.Client, namespace string) func() error {
	return func() error {
		ctx := context.Background()
		var found []string
		for _, list := range []client.ObjectList{&corev1.ServiceList{}, &corev1.EndpointsList{}, &discoveryv1.EndpointSliceList{}} {
			if err := c.List(ctx, list, client.InNamespace(namespace), client.HasLabels{fleetv1alpha1.LabelSourceCluster}); err != nil {
				return err
			}
			items, err := meta.ExtractList(list)
			if err != nil {
				return err
			}
			for _, o := range items {
				found = append(found, fmt.Sprintf("%T %s", o, o.(client.Object).GetName()))
			}
		}
		if len(found) > 0 {
			return fmt.Errorf("mirror objects: %s", strings.Join(found, ", "))
		}
		return nil
	}
}

// noAddressIn fails t if any Endpoints or EndpointSlice in any namespace of the member holds
// one of addrs.
func noAddressIn(t *testing.T, c client.Client, addrs ...string) {
	t.Helper()
	ctx := context.Background()
	eps := &corev1.EndpointsList{}
	must(t, c.List(ctx, eps))
	for _, e := range eps.Items {
		for _, s := range e.Subsets {
			for _, a := range append(s.Addresses, s.NotReadyAddresses...) {
				if slices.Contains(addrs, a.IP) {
					t.Errorf("Endpoints %s/%s holds %s", e.Namespace, e.Name, a.IP)
				}
			}
		}
	}
	sl := &discoveryv1.EndpointSliceList{}
	must(t, c.List(ctx, sl))
	for _, s := range sl.Items {
		for _, ep := range s.Endpoints {
			for _, a := range ep.Addresses {
				if slices.Contains(addrs, a) {
					t.Errorf("EndpointSlice %s/%s holds %s", s.Namespace, s.Name, a)
				}
			}
		}
	}
}
