package servicesync

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// TestExportsConvergeInFleetScaleOrder: exports created the way FleetScale creates them
// (in each source a Node holding the pod CIDR, then the EndpointSlice, then the exported
// PodIP Service) are all mirrored with every endpoint ready. An anchor export keeps each
// source's Nodes cached, so the first reconcile of a new export may read them before the
// new Node's watch event arrived: that event must still bring the export back, although its
// catalog entry may not be in the hub's cache yet.
func TestExportsConvergeInFleetScaleOrder(t *testing.T) {
	const members, perMember, rounds = 3, 3, 6
	// The environment's own Node holds no pod IP of this test: only the rounds' Nodes do.
	e := newEnvConfigured(t, localfleet.StartForTest(t, localfleet.Options{Members: members, NoControllerManager: true}), 2*time.Second,
		envConfig{podCIDR: "192.168.0.0/16"})
	ctx := context.Background()
	var anchors []string
	for m := 1; m <= members; m++ {
		src := e.members[fmt.Sprintf("member-%d", m)]
		must(t, src.Create(ctx, exported("anchor", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
		anchors = append(anchors, fleetv1alpha1.ExportedServiceName(fmt.Sprintf("member-%d", m), "shop", "anchor"))
	}
	eventually(t, 30*time.Second, "anchor exports mirrored", func() error { return exportsConverged(ctx, e.hub, anchors, members-1, 0) })
	for r := range rounds {
		var names []string
		cidr := fmt.Sprintf("10.%d.0.0/16", 64+r)
		for m := 1; m <= members; m++ {
			src := e.members[fmt.Sprintf("member-%d", m)]
			must(t, src.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", r)},
				Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}}}))
			for j := range perMember {
				name := fmt.Sprintf("svc-%d-%d", r, j)
				must(t, createPodIPExport(ctx, src, name, 64+r, j))
				names = append(names, fleetv1alpha1.ExportedServiceName(fmt.Sprintf("member-%d", m), "shop", name))
			}
		}
		eventually(t, time.Minute, fmt.Sprintf("round %d: %d exports mirrored into %d members with 3 ready endpoints", r, len(names), members-1),
			func() error { return exportsConverged(ctx, e.hub, names, members-1, 3) })
	}
}

// createPodIPExport creates, in this order, the EndpointSlice of name (3 ready endpoints
// in 10.net.seq.0/24) and the Service name exported with PodIP addresses.
func createPodIPExport(ctx context.Context, c client.Client, name string, net, seq int) error {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name + "-pods", Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "test.flotilla.dev"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for k := range 3 {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", net, seq, 10+k)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	if err := c.Create(ctx, slice); err != nil {
		return fmt.Errorf("create slice of %s: %w", name, err)
	}
	err := c.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: map[string]string{
			fleetv1alpha1.AnnotationExport: "true", fleetv1alpha1.AnnotationAddressMode: "PodIP"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	})
	if err != nil {
		return fmt.Errorf("create Service %s: %w", name, err)
	}
	return nil
}

// exportsConverged says which of the ExportedServices names are not (yet) mirrored into
// targets members with ready endpoints, and what their status says.
func exportsConverged(ctx context.Context, hub client.Client, names []string, targets int, ready int32) error {
	list := &fleetv1alpha1.ExportedServiceList{}
	if err := hub.List(ctx, list); err != nil {
		return err
	}
	byName := map[string]*fleetv1alpha1.ExportedService{}
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	var behind []string
	for _, n := range names {
		es := byName[n]
		switch {
		case es == nil:
			behind = append(behind, n+": no ExportedService")
		case len(es.Status.MirroredInto) != targets || es.Status.ReadyEndpoints != ready:
			behind = append(behind, fmt.Sprintf("%s: mirroredInto %v, readyEndpoints %d, conditions %+v",
				n, es.Status.MirroredInto, es.Status.ReadyEndpoints, es.Status.Conditions))
		}
	}
	if len(behind) > 0 {
		return fmt.Errorf("%d of %d not converged:\n%s", len(behind), len(names), strings.Join(behind, "\n"))
	}
	return nil
}
