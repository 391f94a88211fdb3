package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// fleetSnapshot is every Flotilla object `fleetctl status` reports on, read once: what
// -o json|yaml|name print and what --exit-code judges.
type fleetSnapshot struct {
	clusters  []fleetv1alpha1.MemberCluster
	baselines []fleetv1alpha1.Baseline
	bindings  []fleetv1alpha1.BaselineBinding
	services  []fleetv1alpha1.ExportedService
}

func readFleet(ctx context.Context, c client.Client) (*fleetSnapshot, error) {
	var (
		s         fleetSnapshot
		clusters  fleetv1alpha1.MemberClusterList
		baselines fleetv1alpha1.BaselineList
		bindings  fleetv1alpha1.BaselineBindingList
		services  fleetv1alpha1.ExportedServiceList
	)
	for _, l := range []struct {
		what string
		list client.ObjectList
	}{{"memberclusters", &clusters}, {"baselines", &baselines}, {"baselinebindings", &bindings}, {"exportedservices", &services}} {
		if err := c.List(ctx, l.list); err != nil {
			if meta.IsNoMatchError(err) {
				return nil, fmt.Errorf("the Flotilla API %s is not installed on the hub", fleetv1alpha1.GroupVersion)
			}
			return nil, fmt.Errorf("list %s: %w", l.what, err)
		}
	}
	s.clusters, s.baselines, s.bindings, s.services = clusters.Items, baselines.Items, bindings.Items, services.Items
	slices.SortFunc(s.clusters, func(a, b fleetv1alpha1.MemberCluster) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(s.baselines, func(a, b fleetv1alpha1.Baseline) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(s.bindings, func(a, b fleetv1alpha1.BaselineBinding) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(s.services, func(a, b fleetv1alpha1.ExportedService) int { return strings.Compare(a.Name, b.Name) })
	return &s, nil
}

// objects are the snapshot's objects in the order status prints its sections.
func (s *fleetSnapshot) objects() []runtime.Object {
	var out []runtime.Object
	for i := range s.clusters {
		out = append(out, &s.clusters[i])
	}
	for i := range s.baselines {
		out = append(out, &s.baselines[i])
	}
	for i := range s.bindings {
		out = append(out, &s.bindings[i])
	}
	for i := range s.services {
		out = append(out, &s.services[i])
	}
	return out
}

// notReady names every object that is not ready, with the condition that says why: a
// MemberCluster or Baseline not Ready, an exported Service not Synced, or any of them whose
// status was computed for an older generation (the controller has not caught up with a
// change yet, so its Ready means nothing about the current spec). BaselineBindings are
// summed up by their Baseline's Ready and are not judged twice.
func (s *fleetSnapshot) notReady() []string {
	var out []string
	judge := func(kind string, obj client.Object, observed int64, conds []metav1.Condition, want string) {
		name := kind + "/" + obj.GetName()
		c := meta.FindStatusCondition(conds, want)
		switch {
		case observed < obj.GetGeneration():
			out = append(out, fmt.Sprintf("%s: generation %d not yet observed by fleet-controller (status is for %d)",
				name, obj.GetGeneration(), observed))
		case c == nil:
			out = append(out, fmt.Sprintf("%s: no %s condition yet (is fleet-controller running?)", name, want))
		case c.Status != metav1.ConditionTrue:
			out = append(out, fmt.Sprintf("%s: %s=%s %s", name, want, c.Status, conditionText(c, maxBindingProblemLen)))
		}
	}
	for i := range s.clusters {
		mc := &s.clusters[i]
		judge("membercluster", mc, mc.Status.ObservedGeneration, mc.Status.Conditions, fleetv1alpha1.ConditionReady)
	}
	for i := range s.baselines {
		b := &s.baselines[i]
		judge("baseline", b, b.Status.ObservedGeneration, b.Status.Conditions, fleetv1alpha1.ConditionReady)
	}
	for i := range s.services {
		es := &s.services[i]
		judge("exportedservice", es, es.Status.ObservedGeneration, es.Status.Conditions, fleetv1alpha1.ConditionSynced)
	}
	return out
}
