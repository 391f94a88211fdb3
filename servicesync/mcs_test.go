package servicesync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/mcscrd"
)

// installMCS installs the MCS CRDs (ServiceExport, ServiceImport, ClusterProperty) in members.
func (e *env) installMCS(t testing.TB, members ...string) {
	t.Helper()
	for _, m := range e.fleet.Members {
		if !slices.Contains(members, m.Name) {
			continue
		}
		disco, err := discovery.NewDiscoveryClientForConfig(m.Config)
		must(t, err)
		_, err = mcscrd.Install(context.Background(), e.members[m.Name], disco, 30*time.Second)
		must(t, err)
	}
}

// mcsClient is a client of member that knows the MCS kinds.
func (e *env) mcsClient(t testing.TB, member string) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	must(t, clientgoscheme.AddToScheme(scheme))
	must(t, mcsv1alpha1.Install(scheme))
	for _, m := range e.fleet.Members {
		if m.Name == member {
			c, err := client.New(m.Config, client.Options{Scheme: scheme})
			must(t, err)
			return c
		}
	}
	t.Fatalf("no member %s", member)
	return nil
}

func serviceExport(name string) *mcsv1alpha1.ServiceExport {
	return &mcsv1alpha1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}
}

// plain is a selectorless Service in shop that nothing but a ServiceExport exports.
func plain(name string, port int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	}
}

// exportCondition waits until the ServiceExport's condition typ has status s and reason.
func (e *env) exportCondition(t *testing.T, c client.Client, cluster, name string, typ mcsv1alpha1.ServiceExportConditionType,
	s metav1.ConditionStatus, reason string) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("ServiceExport %s/shop/%s %s=%s (%s)", cluster, name, typ, s, reason), func() error {
		se := &mcsv1alpha1.ServiceExport{}
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: "shop", Name: name}, se); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(se.Status.Conditions, string(typ))
		if cond == nil || cond.Status != s || cond.Reason != reason {
			return fmt.Errorf("%s = %+v", typ, cond)
		}
		return nil
	})
}

// mcsSlices maps source cluster to the addresses of the slices of the multi-cluster service
// name in cluster (labels multicluster.kubernetes.io/service-name and source-cluster).
func (e *env) mcsSlices(cluster, name string) (map[string][]string, error) {
	list := &discoveryv1.EndpointSliceList{}
	if err := e.members[cluster].List(context.Background(), list, client.InNamespace("shop"),
		client.MatchingLabels{mcsv1alpha1.LabelServiceName: name}); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, s := range list.Items {
		src := s.Labels[mcsv1alpha1.LabelSourceCluster]
		for _, ep := range s.Endpoints {
			out[src] = append(out[src], ep.Addresses...)
		}
		sort.Strings(out[src])
	}
	return out, nil
}

// TestServiceExportAndAnnotationBothExport: a ServiceExport exports its Service like the
// annotation does, the annotation keeps working beside it, and the ServiceExport's conditions
// say Valid (or NoService) as the MCS spec describes.
func TestServiceExportAndAnnotationBothExport(t *testing.T) {
	e := newEnvConfigured(t, localfleet.StartForTest(t, localfleet.Options{Members: 2}), 2*time.Second, envConfig{mcs: []string{"member-1"}})
	ctx := context.Background()
	m1 := e.mcsClient(t, "member-1")

	must(t, e.members["member-1"].Create(ctx, plain("web", 80)))
	must(t, e.members["member-1"].Create(ctx, podSlice("web", map[string]bool{"10.1.0.1": true})))
	must(t, m1.Create(ctx, serviceExport("web")))
	must(t, e.members["member-2"].Create(ctx, exported("api", nil)))
	must(t, e.members["member-2"].Create(ctx, podSlice("api", map[string]bool{"10.2.0.1": true})))

	e.waitEndpoints(t, "member-2", "web-member-1", []string{"10.1.0.1"}, nil)
	e.waitEndpoints(t, "member-1", "api-member-2", []string{"10.2.0.1"}, nil)
	e.exportedService(t, "member-1", "web", func(es *fleetv1alpha1.ExportedService) error {
		if !es.Status.ServiceExport || !slices.Equal(es.Status.MirroredInto, []string{"member-2"}) {
			return errors.New("want serviceExport true, mirrored into member-2")
		}
		return nil
	})
	e.exportCondition(t, m1, "member-1", "web", mcsv1alpha1.ServiceExportConditionValid, metav1.ConditionTrue, string(mcsv1alpha1.ServiceExportReasonValid))
	e.exportCondition(t, m1, "member-1", "web", mcsv1alpha1.ServiceExportConditionConflict, metav1.ConditionFalse, string(mcsv1alpha1.ServiceExportReasonNoConflicts))

	// A ServiceExport without its Service exports nothing and says so.
	must(t, m1.Create(ctx, serviceExport("ghost")))
	e.exportCondition(t, m1, "member-1", "ghost", mcsv1alpha1.ServiceExportConditionValid, metav1.ConditionFalse, string(mcsv1alpha1.ServiceExportReasonNoService))

	// Deleting the ServiceExport unexports: the mirror goes.
	must(t, m1.Delete(ctx, serviceExport("web")))
	eventually(t, 30*time.Second, "mirror web-member-1 removed from member-2 after its ServiceExport was deleted",
		gone(e.members["member-2"], &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-member-1"}}))
	e.waitEndpoints(t, "member-1", "api-member-2", []string{"10.2.0.1"}, nil)
}

// TestServiceImportMergesExporters: two members export shop/web (one by ServiceExport, one by
// annotation); a third member that serves ServiceImport receives one ServiceImport with the
// endpoints of both merged under it, a cluster IP that routes to them, and its cluster ID.
// A second name, exported with ports that disagree, shows the MCS conflict rule.
func TestServiceImportMergesExporters(t *testing.T) {
	e := newEnvConfigured(t, localfleet.StartForTest(t, localfleet.Options{Members: 3}), 2*time.Second, envConfig{mcs: []string{"member-1", "member-2", "member-3"}})
	ctx := context.Background()
	m1, m2, m3 := e.mcsClient(t, "member-1"), e.mcsClient(t, "member-2"), e.mcsClient(t, "member-3")

	must(t, e.members["member-1"].Create(ctx, plain("web", 80)))
	must(t, e.members["member-1"].Create(ctx, podSlice("web", map[string]bool{"10.1.0.1": true})))
	must(t, m1.Create(ctx, serviceExport("web")))
	must(t, e.members["member-2"].Create(ctx, exported("web", nil)))
	must(t, e.members["member-2"].Create(ctx, podSlice("web", map[string]bool{"10.2.0.1": true, "10.2.0.2": false})))

	eventually(t, 30*time.Second, "merged slices of web in member-3 from member-1 and member-2", func() error {
		got, err := e.mcsSlices("member-3", "web")
		if err != nil {
			return err
		}
		if want := map[string][]string{"member-1": {"10.1.0.1"}, "member-2": {"10.2.0.1", "10.2.0.2"}}; fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("got %v, want %v", got, want)
		}
		return nil
	})
	eventually(t, 30*time.Second, "ServiceImport shop/web in member-3: ClusterSetIP of web-global, ports, clusters member-1 member-2", func() error {
		si := &mcsv1alpha1.ServiceImport{}
		if err := m3.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "web"}, si); err != nil {
			return err
		}
		derived := &corev1.Service{}
		if err := e.members["member-3"].Get(ctx, types.NamespacedName{Namespace: "shop", Name: "web-global"}, derived); err != nil {
			return err
		}
		var clusters []string
		for _, c := range si.Status.Clusters {
			clusters = append(clusters, c.Cluster)
		}
		switch {
		case si.Spec.Type != mcsv1alpha1.ClusterSetIP || len(si.Spec.IPs) == 0 || si.Spec.IPs[0] != derived.Spec.ClusterIP:
			return fmt.Errorf("type %s ips %v, want ClusterSetIP and the cluster IP of web-global (%s)", si.Spec.Type, si.Spec.IPs, derived.Spec.ClusterIP)
		case len(si.Spec.Ports) != 1 || si.Spec.Ports[0].Port != 80 || si.Spec.Ports[0].Name != "http":
			return fmt.Errorf("ports %+v, want http 80", si.Spec.Ports)
		case !slices.Equal(clusters, []string{"member-1", "member-2"}):
			return fmt.Errorf("clusters %v, want member-1 member-2", clusters)
		case len(derived.Spec.Selector) > 0:
			return fmt.Errorf("derived Service has a selector %v", derived.Spec.Selector)
		}
		return nil
	})
	// The exporters receive the merged service too (one name everywhere), their own endpoints included.
	eventually(t, 30*time.Second, "merged slices of web in member-1 from member-1 and member-2", func() error {
		got, err := e.mcsSlices("member-1", "web")
		if err != nil {
			return err
		}
		if len(got["member-1"]) != 1 || len(got["member-2"]) != 2 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	eventually(t, 30*time.Second, "ClusterProperty cluster.clusterset.k8s.io of member-3 says member-3", func() error {
		p := &unstructured.Unstructured{}
		p.SetGroupVersionKind(clusterPropertyGVK)
		if err := e.members["member-3"].Get(ctx, types.NamespacedName{Name: clusterIDProperty}, p); err != nil {
			return err
		}
		if v, _, _ := unstructured.NestedString(p.Object, "spec", "value"); v != "member-3" {
			return fmt.Errorf("value %q", v)
		}
		return nil
	})

	// Conflict: m1 exports db on port 5432 first; m2 exports db later on 5433 under the same
	// port name. The oldest export (m1) wins; m2's ServiceExport reports the conflict.
	must(t, e.members["member-1"].Create(ctx, plain("db", 5432)))
	must(t, m1.Create(ctx, serviceExport("db")))
	first := e.exportedService(t, "member-1", "db", func(es *fleetv1alpha1.ExportedService) error {
		if es.Status.ExportedSince == nil {
			return errors.New("no exportedSince yet")
		}
		return nil
	})
	// Creation timestamps count seconds: m2's export must be seen to be younger.
	eventually(t, 5*time.Second, "a second past member-1's export of db", func() error {
		if time.Since(first.Status.ExportedSince.Time) <= time.Second {
			return errors.New("not yet")
		}
		return nil
	})
	must(t, e.members["member-2"].Create(ctx, plain("db", 5433)))
	must(t, m2.Create(ctx, serviceExport("db")))
	e.exportCondition(t, m2, "member-2", "db", mcsv1alpha1.ServiceExportConditionConflict, metav1.ConditionTrue, string(mcsv1alpha1.ServiceExportReasonPortConflict))
	e.exportCondition(t, m1, "member-1", "db", mcsv1alpha1.ServiceExportConditionConflict, metav1.ConditionFalse, string(mcsv1alpha1.ServiceExportReasonNoConflicts))
	e.exportedService(t, "member-2", "db", func(es *fleetv1alpha1.ExportedService) error {
		if c := meta.FindStatusCondition(es.Status.Conditions, fleetv1alpha1.ConditionConflict); c == nil || c.Reason != fleetv1alpha1.ReasonPortConflict {
			return fmt.Errorf("Conflict = %+v", c)
		}
		return nil
	})
	eventually(t, 30*time.Second, "ServiceImport shop/db in member-3 with the oldest export's port 5432", func() error {
		si := &mcsv1alpha1.ServiceImport{}
		if err := m3.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "db"}, si); err != nil {
			return err
		}
		if len(si.Spec.Ports) != 1 || si.Spec.Ports[0].Port != 5432 || len(si.Status.Clusters) != 2 {
			return fmt.Errorf("ports %+v clusters %+v", si.Spec.Ports, si.Status.Clusters)
		}
		return nil
	})
}

// TestGlobalMirror: fleet.flotilla.dev/global on two exporters gives every member one
// selectorless <name>-global with the endpoints of both, beside the per-cluster mirrors;
// when one exporter goes, its endpoints leave the global mirror, and with the last the
// mirror goes. A headless source is mirrored headless, globally and per cluster.
func TestGlobalMirror(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	global := map[string]string{fleetv1alpha1.AnnotationGlobal: "true"}
	must(t, e.members["member-1"].Create(ctx, exported("web", global)))
	must(t, e.members["member-1"].Create(ctx, podSlice("web", map[string]bool{"10.1.0.1": true})))
	must(t, e.members["member-2"].Create(ctx, exported("web", global)))
	must(t, e.members["member-2"].Create(ctx, podSlice("web", map[string]bool{"10.2.0.1": true})))

	e.waitEndpoints(t, "member-3", "web-member-1", []string{"10.1.0.1"}, nil)
	waitSliceEndpoints(t, e, "member-3", "web-global", []string{"10.1.0.1", "10.2.0.1"})
	waitSliceEndpoints(t, e, "member-1", "web-global", []string{"10.1.0.1", "10.2.0.1"})
	// The merged slices are written before the Service they belong to.
	g := &corev1.Service{}
	eventually(t, 30*time.Second, "web-global in member-3", func() error {
		return e.members["member-3"].Get(ctx, types.NamespacedName{Namespace: "shop", Name: "web-global"}, g)
	})
	if len(g.Spec.Selector) > 0 || g.Spec.ClusterIP == corev1.ClusterIPNone || g.Spec.Ports[0].Port != 80 {
		t.Fatalf("web-global in member-3: selector %v clusterIP %s ports %+v; want selectorless, a cluster IP, port 80", g.Spec.Selector, g.Spec.ClusterIP, g.Spec.Ports)
	}

	// m2 stops exporting: its endpoints leave the global mirror everywhere.
	must(t, e.members["member-2"].Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}))
	waitSliceEndpoints(t, e, "member-3", "web-global", []string{"10.1.0.1"})
	waitSliceEndpoints(t, e, "member-2", "web-global", []string{"10.1.0.1"})

	// The last exporter drops global: the global mirror goes, the per-cluster one stays.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}
	update(t, e.members["member-1"], svc, func() { delete(svc.Annotations, fleetv1alpha1.AnnotationGlobal) })
	eventually(t, 30*time.Second, "web-global removed from member-3", gone(e.members["member-3"], &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-global"}}))
	waitSliceEndpoints(t, e, "member-3", "web-global", nil)
	e.waitEndpoints(t, "member-3", "web-member-1", []string{"10.1.0.1"}, nil)

	// Headless.
	hl := exported("hl", global)
	hl.Spec.ClusterIP = corev1.ClusterIPNone
	must(t, e.members["member-1"].Create(ctx, hl))
	must(t, e.members["member-1"].Create(ctx, podSlice("hl", map[string]bool{"10.1.0.5": true})))
	waitSliceEndpoints(t, e, "member-2", "hl-global", []string{"10.1.0.5"})
	eventually(t, 30*time.Second, "hl-global in member-2", func() error {
		return e.members["member-2"].Get(ctx, types.NamespacedName{Namespace: "shop", Name: "hl-global"}, g)
	})
	if g.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("hl-global in member-2 has cluster IP %q, want None (headless like its source)", g.Spec.ClusterIP)
	}
	e.waitEndpoints(t, "member-2", "hl-member-1", []string{"10.1.0.5"}, nil)
	must(t, e.members["member-2"].Get(ctx, types.NamespacedName{Namespace: "shop", Name: "hl-member-1"}, g))
	if g.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("per-cluster mirror hl-member-1 in member-2 has cluster IP %q, want None (headless like its source)", g.Spec.ClusterIP)
	}
}

// waitSliceEndpoints waits until the EndpointSlices of Service name in cluster publish exactly
// want (ready).
func waitSliceEndpoints(t *testing.T, e *env, cluster, name string, want []string) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("slices of %s in %s publish %v", name, cluster, want), func() error {
		ready, notReady, err := e.mirrorSliceEndpoints(cluster, name)
		if err != nil {
			return err
		}
		if fmt.Sprint(ready) != fmt.Sprint(want) || len(notReady) > 0 {
			return fmt.Errorf("ready %v not ready %v", ready, notReady)
		}
		return nil
	})
}
