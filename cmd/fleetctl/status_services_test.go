package main

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func TestPortsText(t *testing.T) {
	cases := []struct {
		name  string
		ports []fleetv1alpha1.ExportedPort
		want  string
	}{
		{name: "none", want: "-"},
		{name: "one", ports: []fleetv1alpha1.ExportedPort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}, want: "80/TCP"},
		{name: "several, in the Service's order", ports: []fleetv1alpha1.ExportedPort{
			{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443},
			{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
		}, want: "443/TCP,53/UDP"},
		{name: "no protocol recorded", ports: []fleetv1alpha1.ExportedPort{{Port: 8080}}, want: "8080"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := portsText(tc.ports); got != tc.want {
				t.Errorf("portsText = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStatusServices(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{NoControllerManager: true})
	hub := adminClient(t, f.Hub)
	status := []string{"status", "--kubeconfig", f.Hub.KubeconfigPath}

	t.Run("no services says how to export one", func(t *testing.T) {
		out := mustFleetctl(t, status...)
		assertContains(t, out, "\n\nNo baselines.",
			"\n\nNo Services exported. Export one with: kubectl annotate service NAME fleet.flotilla.dev/export=true\n")
		if !strings.HasSuffix(out, "\n\nNo Services exported. Export one with: kubectl annotate service NAME fleet.flotilla.dev/export=true\n") {
			t.Errorf("the services section should come last, after the baselines; got:\n%s", out)
		}
	})

	// Created out of order: the table is sorted by source.
	synced := condition(fleetv1alpha1.ConditionSynced, metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, "mirrored into 2 members")
	exportService(t, hub, "member-1", "shop", "web", fleetv1alpha1.ExportedServiceStatus{
		AddressMode: fleetv1alpha1.AddressModePodIP,
		Ports:       []fleetv1alpha1.ExportedPort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}, {Name: "https", Protocol: corev1.ProtocolTCP, Port: 443}},
		Endpoints:   2, ReadyEndpoints: 2, MirroredInto: []string{"member-2", "member-3"},
		Refused:    []string{"127.0.0.1: loopback"},
		Conditions: []metav1.Condition{synced},
	})
	exportService(t, hub, "member-3", "kube-system", "dns", fleetv1alpha1.ExportedServiceStatus{
		Conditions: []metav1.Condition{condition(fleetv1alpha1.ConditionSynced, metav1.ConditionFalse, fleetv1alpha1.ReasonInvalidExport,
			"Service kube-system/dns: namespace kube-system is not exported unless the hub allows system namespaces")},
	})
	// Blocked in two members (reported in the controller's order, not by name), mirrored in one.
	exportService(t, hub, "member-2", "shop", "api", fleetv1alpha1.ExportedServiceStatus{
		AddressMode: fleetv1alpha1.AddressModeNodePort,
		Ports:       []fleetv1alpha1.ExportedPort{{Protocol: corev1.ProtocolTCP, Port: 80}},
		Endpoints:   1, ReadyEndpoints: 1, MirroredInto: []string{"member-3"},
		Conflicts: []fleetv1alpha1.MirrorConflict{
			{Cluster: "member-4", Message: "Service shop/api-member-2 exists and is not a Flotilla mirror of member-2/shop/api; left untouched"},
			{Cluster: "member-1", Message: "*v1.EndpointSlice shop/api-member-2-ipv4-0 exists and is not a Flotilla mirror of member-2/shop/api; left untouched"},
		},
		Conditions: []metav1.Condition{condition(fleetv1alpha1.ConditionSynced, metav1.ConditionFalse, fleetv1alpha1.ReasonNameClash,
			"member-4: Service shop/api-member-2 exists ...; member-1: ...")},
	})
	exportService(t, hub, "member-1", "shop", "cart", fleetv1alpha1.ExportedServiceStatus{
		AddressMode: fleetv1alpha1.AddressModePodIP,
		Ports:       []fleetv1alpha1.ExportedPort{{Protocol: corev1.ProtocolTCP, Port: 8080}},
		Endpoints:   3, ReadyEndpoints: 0, MirroredInto: []string{"member-2"},
		Conditions: []metav1.Condition{condition(fleetv1alpha1.ConditionSynced, metav1.ConditionFalse, fleetv1alpha1.ReasonClusterUnreachable,
			`source cluster "member-1" unreachable since 2026-01-01T12:00:00Z: mirrors kept with their endpoints marked not ready`)},
	})
	// Just created by the controller, no status written yet.
	exportService(t, hub, "member-2", "shop", "new", fleetv1alpha1.ExportedServiceStatus{})

	out := mustFleetctl(t, status...)
	sections := strings.Split(out, "\n\n")
	if len(sections) != 4 || !strings.HasPrefix(sections[1], "No baselines.") {
		t.Fatalf("want clusters, baselines, the services table and its problems; got:\n%s", out)
	}

	t.Run("one row per exported Service, sorted by source", func(t *testing.T) {
		want := strings.Join([]string{
			"Services: 5 exported (1 synced)",
			"SOURCE                    MODE      PORTS           ENDPOINTS  MIRRORED INTO      STATUS",
			"member-1/shop/cart        PodIP     8080/TCP        0/3        member-2           ClusterUnreachable",
			"member-1/shop/web         PodIP     80/TCP,443/TCP  2/2        member-2,member-3  Mirrored",
			"member-2/shop/api         NodePort  80/TCP          1/1        member-3           Conflict in member-1 (+1 more)",
			"member-2/shop/new         -         -               0/0        -                  -",
			"member-3/kube-system/dns  -         -               0/0        -                  InvalidExport",
		}, "\n")
		if sections[2] != want {
			t.Errorf("services:\n%s\nwant:\n%s", sections[2], want)
		}
	})

	t.Run("problems name the source, the member of a conflict, the reason and the message", func(t *testing.T) {
		want := strings.Join([]string{
			"Problems:",
			`  member-1/shop/cart: ClusterUnreachable: source cluster "member-1" unreachable since 2026-01-01T12:00:00Z: mirrors kept with their endpoints marked not ready`,
			"  member-1/shop/web: RefusedAddresses: not mirrored: 127.0.0.1: loopback",
			"  member-2/shop/api in member-1: NameClash: *v1.EndpointSlice shop/api-member-2-ipv4-0 exists and is not a Flotilla mirror of member-2/shop/api; left untouched",
			"  member-2/shop/api in member-4: NameClash: Service shop/api-member-2 exists and is not a Flotilla mirror of member-2/shop/api; left untouched",
			"  member-3/kube-system/dns: InvalidExport: Service kube-system/dns: namespace kube-system is not exported unless the hub allows system namespaces",
		}, "\n") + "\n"
		if sections[3] != want {
			t.Errorf("problems:\n%s\nwant:\n%s", sections[3], want)
		}
	})
}

// exportService creates the catalog entry of cluster/namespace/name as the service-sync
// controller names and labels it, and writes st through the status subresource.
func exportService(t *testing.T, hub client.Client, cluster, namespace, name string, st fleetv1alpha1.ExportedServiceStatus) {
	t.Helper()
	es := &fleetv1alpha1.ExportedService{
		ObjectMeta: metav1.ObjectMeta{
			Name:   fleetv1alpha1.ExportedServiceName(cluster, namespace, name),
			Labels: map[string]string{fleetv1alpha1.LabelCluster: cluster},
		},
		Spec: fleetv1alpha1.ExportedServiceSpec{Source: fleetv1alpha1.ServiceReference{Cluster: cluster, Namespace: namespace, Name: name}},
	}
	mustCreate(t, hub, es)
	st.ObservedGeneration = es.Generation
	es.Status = st
	if err := hub.Status().Update(t.Context(), es); err != nil {
		t.Fatalf("update status of ExportedService %s: %v", es.Name, err)
	}
}
