package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

const (
	// demoServiceNamespace holds the demo's exported Service; every member has it.
	demoServiceNamespace = "shop"
	demoServiceName      = "web"
	// demoEndpointManager manages the demo's hand-made EndpointSlice, so that Kubernetes'
	// EndpointSlice controllers leave it alone.
	demoEndpointManager = "demo.flotilla.dev"
)

// exportService exports a Service of the first member and shows its mirror in the second
// member, first with the source's endpoints, then following a change to them.
func (d *demo) exportService(ctx context.Context) error {
	out := d.out
	say := func(format string, args ...any) { fmt.Fprintf(out, "\n==> "+format+"\n", args...) }
	if len(d.fleet.Members) < 2 {
		say("one member only: no other cluster to mirror a Service into, skipping service export")
		return nil
	}
	from, to := d.fleet.Members[0], d.fleet.Members[1]
	src, err := newClient(from)
	if err != nil {
		return err
	}
	dst, err := newClient(to)
	if err != nil {
		return err
	}

	say("exporting Service %s/%s from %s (port 80 -> 8080, %s=true, %s=%s)", demoServiceNamespace, demoServiceName, from.Name,
		fleetv1alpha1.AnnotationExport, fleetv1alpha1.AnnotationAddressMode, fleetv1alpha1.AddressModePodIP)
	fmt.Fprintln(out, "    these control planes run no pods, so the Service has no selector and the demo writes its")
	fmt.Fprintln(out, "    EndpointSlice by hand: 10.244.1.10 and 10.244.1.11, both ready; and since they run no")
	fmt.Fprintln(out, "    kubelet either, a Node holding their pod CIDR 10.244.1.0/24 (the hub mirrors only pod IPs")
	fmt.Fprintln(out, "    inside the source member's pod CIDRs)")
	if err := src.Create(ctx, demoPodNode()); client.IgnoreAlreadyExists(err) != nil {
		return fmt.Errorf("create Node %s in %s: %w", demoPodNodeName, from.Name, err)
	}
	if err := src.Create(ctx, demoService()); client.IgnoreAlreadyExists(err) != nil {
		return fmt.Errorf("create Service %s/%s in %s: %w", demoServiceNamespace, demoServiceName, from.Name, err)
	}
	slice := demoEndpointSlice(map[string]bool{"10.244.1.10": true, "10.244.1.11": true})
	if err := src.Create(ctx, slice); client.IgnoreAlreadyExists(err) != nil {
		return fmt.Errorf("create EndpointSlice %s/%s in %s: %w", slice.Namespace, slice.Name, from.Name, err)
	}

	start := time.Now()
	want := endpointSet{ready: []string{"10.244.1.10:8080", "10.244.1.11:8080"}}
	mirrorName, err := waitMirror(ctx, dst, from.Name, want, 2*time.Minute)
	if err != nil {
		return fmt.Errorf("mirror of %s/%s/%s in %s: %w", from.Name, demoServiceNamespace, demoServiceName, to.Name, err)
	}
	say("mirrored into %s after %s: Service %s/%s, no selector, with Endpoints and EndpointSlices",
		to.Name, time.Since(start).Round(time.Millisecond), demoServiceNamespace, mirrorName)
	fmt.Fprintf(out, "    DNS name in %s: %s.%s.svc.cluster.local\n", to.Name, mirrorName, demoServiceNamespace)
	fmt.Fprintf(out, "    endpoints: %s\n", want)

	say("changing the source endpoints in %s: 10.244.1.11 replaced by 10.244.1.12, 10.244.1.10 not ready", from.Name)
	if err := src.Get(ctx, client.ObjectKeyFromObject(slice), slice); err != nil {
		return err
	}
	slice.Endpoints = demoEndpointSlice(map[string]bool{"10.244.1.10": false, "10.244.1.12": true}).Endpoints
	start = time.Now()
	if err := src.Update(ctx, slice); err != nil {
		return fmt.Errorf("update EndpointSlice %s/%s in %s: %w", slice.Namespace, slice.Name, from.Name, err)
	}
	want = endpointSet{ready: []string{"10.244.1.12:8080"}, notReady: []string{"10.244.1.10:8080"}}
	if _, err := waitMirror(ctx, dst, from.Name, want, time.Minute); err != nil {
		return fmt.Errorf("mirror of %s/%s/%s in %s after the change: %w", from.Name, demoServiceNamespace, demoServiceName, to.Name, err)
	}
	say("the mirror in %s followed after %s", to.Name, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(out, "    endpoints: %s\n", want)
	return nil
}

// demoService is the exported Service: selectorless, since no pods run in these clusters.
func demoService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: demoServiceNamespace,
			Name:      demoServiceName,
			Annotations: map[string]string{
				fleetv1alpha1.AnnotationExport:      "true",
				fleetv1alpha1.AnnotationAddressMode: string(fleetv1alpha1.AddressModePodIP),
			},
		},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)},
		}},
	}
}

// demoPodNodeName is the Node that stands for the nodes the demo's pods would run on.
const demoPodNodeName = "demo-pods"

// demoPodNode is a Node whose pod CIDR holds the demo's endpoints: service sync publishes a
// PodIP endpoint only inside the source member's pod CIDRs, read from its Nodes.
func demoPodNode() *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: demoPodNodeName},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"}}}
}

// demoEndpointSlice is the Service's EndpointSlice with the given addresses and readiness,
// as the EndpointSlice controller would write it for pods.
func demoEndpointSlice(ready map[string]bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: demoServiceNamespace,
			Name:      demoServiceName + "-demo",
			Labels: map[string]string{
				discoveryv1.LabelServiceName: demoServiceName,
				discoveryv1.LabelManagedBy:   demoEndpointManager,
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
	}
	addrs := make([]string, 0, len(ready))
	for a := range ready {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready[a]), Serving: ptr.To(ready[a]), Terminating: ptr.To(false)},
		})
	}
	return s
}

// endpointSet is what a mirror publishes, as sorted address:port lists.
type endpointSet struct{ ready, notReady []string }

func (e endpointSet) String() string {
	text := "ready " + orDash(strings.Join(e.ready, ", "))
	if len(e.notReady) > 0 {
		text += "; not ready " + strings.Join(e.notReady, ", ")
	}
	return text
}

func (e endpointSet) equal(o endpointSet) bool {
	return slices.Equal(e.ready, o.ready) && slices.Equal(e.notReady, o.notReady)
}

// waitMirror waits until the target holds a mirror of the demo Service of sourceCluster —
// found by its ownership labels — whose Endpoints and EndpointSlices both publish want, and
// returns the mirror's name.
func waitMirror(ctx context.Context, target client.Client, sourceCluster string, want endpointSet, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	owned := client.MatchingLabels{
		fleetv1alpha1.LabelSourceCluster:   sourceCluster,
		fleetv1alpha1.LabelSourceNamespace: demoServiceNamespace,
		fleetv1alpha1.LabelSourceName:      demoServiceName,
	}
	last := "no mirror Service yet"
	for {
		name, got, err := readMirror(ctx, target, owned)
		switch {
		case err != nil:
			last = err.Error()
		case name == "":
		case got.equal(want):
			return name, nil
		default:
			last = fmt.Sprintf("mirror %s publishes %s", name, got)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("not publishing %s after %s: %s", want, timeout, last)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readMirror returns the name of the mirror Service selected by owned and what its Endpoints
// publish, or an error when its EndpointSlices disagree with them; "" when there is none yet.
func readMirror(ctx context.Context, target client.Client, owned client.MatchingLabels) (string, endpointSet, error) {
	svcs := &corev1.ServiceList{}
	if err := target.List(ctx, svcs, client.InNamespace(demoServiceNamespace), owned); err != nil || len(svcs.Items) == 0 {
		return "", endpointSet{}, err
	}
	name := svcs.Items[0].Name
	//nolint:staticcheck // SA1019: the mirror publishes v1 Endpoints too; the demo shows they agree with its slices.
	eps := &corev1.Endpoints{}
	if err := target.Get(ctx, client.ObjectKey{Namespace: demoServiceNamespace, Name: name}, eps); err != nil {
		return "", endpointSet{}, client.IgnoreNotFound(err)
	}
	var fromEndpoints endpointSet
	for _, sub := range eps.Subsets {
		for _, p := range sub.Ports {
			for _, a := range sub.Addresses {
				fromEndpoints.ready = append(fromEndpoints.ready, a.IP+":"+strconv.Itoa(int(p.Port)))
			}
			for _, a := range sub.NotReadyAddresses {
				fromEndpoints.notReady = append(fromEndpoints.notReady, a.IP+":"+strconv.Itoa(int(p.Port)))
			}
		}
	}
	list := &discoveryv1.EndpointSliceList{}
	if err := target.List(ctx, list, client.InNamespace(demoServiceNamespace), client.MatchingLabels{discoveryv1.LabelServiceName: name}); err != nil {
		return "", endpointSet{}, err
	}
	var fromSlices endpointSet
	for _, s := range list.Items {
		for _, p := range s.Ports {
			for _, e := range s.Endpoints {
				for _, a := range e.Addresses {
					text := a + ":" + strconv.Itoa(int(ptr.Deref(p.Port, 0)))
					if ptr.Deref(e.Conditions.Ready, true) {
						fromSlices.ready = append(fromSlices.ready, text)
					} else {
						fromSlices.notReady = append(fromSlices.notReady, text)
					}
				}
			}
		}
	}
	for _, set := range []*endpointSet{&fromEndpoints, &fromSlices} {
		slices.Sort(set.ready)
		slices.Sort(set.notReady)
	}
	if !fromEndpoints.equal(fromSlices) {
		return name, fromEndpoints, fmt.Errorf("mirror %s: Endpoints publish %s, EndpointSlices %s", name, fromEndpoints, fromSlices)
	}
	return name, fromEndpoints, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
