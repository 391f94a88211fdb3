package mirror

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func TestMerge(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	http := MergedPort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}
	http8080 := MergedPort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8080}
	grpc := MergedPort{Name: "grpc", Protocol: corev1.ProtocolTCP, Port: 9090}
	web80 := MergedPort{Name: "web", Protocol: corev1.ProtocolTCP, Port: 80}
	for _, tc := range []struct {
		name          string
		exporters     []Exporter
		wantPorts     []MergedPort
		wantHeadless  bool
		wantOldest    string
		wantConflicts map[string][]string
	}{{
		name:          "none",
		wantConflicts: map[string][]string{},
	}, {
		name: "agreeing exporters: union of ports, no conflict",
		exporters: []Exporter{
			{Cluster: "b", Since: t0, Ports: []MergedPort{http}},
			{Cluster: "a", Since: t0.Add(time.Minute), Ports: []MergedPort{http, grpc}},
		},
		wantPorts: []MergedPort{grpc, http}, wantOldest: "b", wantConflicts: map[string][]string{},
	}, {
		name: "a port of another number: the oldest export wins, the younger is in conflict",
		exporters: []Exporter{
			{Cluster: "a", Since: t0.Add(time.Minute), Ports: []MergedPort{http8080, grpc}},
			{Cluster: "b", Since: t0, Ports: []MergedPort{http}},
		},
		wantPorts: []MergedPort{grpc, http}, wantOldest: "b",
		wantConflicts: map[string][]string{"a": {fleetv1alpha1.ReasonPortConflict}},
	}, {
		name: "one port number under two names is a port conflict",
		exporters: []Exporter{
			{Cluster: "a", Since: t0, Ports: []MergedPort{http}},
			{Cluster: "b", Since: t0.Add(time.Second), Ports: []MergedPort{web80}},
		},
		wantPorts: []MergedPort{http}, wantOldest: "a",
		wantConflicts: map[string][]string{"b": {fleetv1alpha1.ReasonPortConflict}},
	}, {
		name: "headless against not: type conflict, the oldest decides",
		exporters: []Exporter{
			{Cluster: "a", Since: t0, Headless: true, Ports: []MergedPort{http}},
			{Cluster: "b", Since: t0.Add(time.Second), Ports: []MergedPort{http8080}},
		},
		wantPorts: []MergedPort{http}, wantHeadless: true, wantOldest: "a",
		wantConflicts: map[string][]string{"b": {fleetv1alpha1.ReasonPortConflict, fleetv1alpha1.ReasonTypeConflict}},
	}, {
		name: "same age: the cluster name decides",
		exporters: []Exporter{
			{Cluster: "b", Since: t0, Ports: []MergedPort{http8080}},
			{Cluster: "a", Since: t0, Ports: []MergedPort{http}},
		},
		wantPorts: []MergedPort{http}, wantOldest: "a",
		wantConflicts: map[string][]string{"b": {fleetv1alpha1.ReasonPortConflict}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := Merge(tc.exporters)
			reasons := map[string][]string{}
			for c, conflict := range got.Conflicts {
				reasons[c] = conflict.Reasons
				if conflict.Message == "" {
					t.Errorf("conflict of %s has no message", c)
				}
			}
			if diff := cmp.Diff(tc.wantPorts, got.Ports); diff != "" {
				t.Errorf("ports (-want +got):\n%s", diff)
			}
			if got.Headless != tc.wantHeadless || got.Oldest != tc.wantOldest {
				t.Errorf("headless %v oldest %q, want %v %q", got.Headless, got.Oldest, tc.wantHeadless, tc.wantOldest)
			}
			if diff := cmp.Diff(tc.wantConflicts, reasons); diff != "" {
				t.Errorf("conflicts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGlobalServiceIsHeadlessLikeTheMerge(t *testing.T) {
	m := Merge([]Exporter{{Cluster: "a", Headless: true, Ports: []MergedPort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}}})
	svc := GlobalService("shop", "web", m)
	if svc.Name != "web-global" || !IsHeadless(svc) || len(svc.Spec.Selector) != 0 {
		t.Fatalf("global Service %s headless=%v selector=%v, want web-global, headless, no selector", svc.Name, IsHeadless(svc), svc.Spec.Selector)
	}
	if !OwnedMerged(svc, "shop", "web") || OwnedMerged(svc, "shop", "api") {
		t.Fatalf("OwnedMerged of the global Service: labels %v", svc.Labels)
	}
	si := ServiceImport("shop", "web", m, []string{"10.96.0.9"}, []string{"b", "a"})
	if si.Spec.Type != "Headless" || si.Spec.IPs != nil || len(si.Status.Clusters) != 2 || si.Status.Clusters[0].Cluster != "a" {
		t.Fatalf("ServiceImport of a headless merge: %+v", si)
	}
}
