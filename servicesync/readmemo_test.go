package servicesync

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// An export that runs again without anything having changed in its targets asks them
// nothing: its targets' member caches show the mirrors at the versions it left them
// (readmemo.go). Before, every run read each target's mirror Service and slices, and with
// fifty members under load those reads never came to rest. Its source is read again only
// when the source changed.
func TestUnchangedExportAsksItsTargetsNothing(t *testing.T) {
	e := newEnvTB(t, localfleet.Options{Members: 2, AuditLog: true}, 2*time.Second)
	ctx := context.Background()
	src := e.members["member-1"]
	must(t, src.Create(ctx, exported("cart", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
	must(t, src.Create(ctx, podSlice("cart", map[string]bool{"10.2.0.1": true})))
	name := mirror.Name("cart", "member-1")
	e.waitEndpoints(t, "member-2", name, []string{"10.2.0.1"}, nil)
	e.exportedService(t, "member-1", "cart", synced(metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, "mirrored into 1 member"))

	// The mirror's own write events come back and run the export again: wait until those
	// runs found nothing to read (the catalog entry's settle run included).
	source, target := e.fleet.Members[0], e.fleet.Members[1]
	eventually(t, 30*time.Second, "the export at rest: a second without reads of its mirrors", func() error {
		mark, err := target.AuditMark()
		if err != nil {
			return err
		}
		time.Sleep(time.Second) // an observation window, not a wait for an outcome
		return mirrorReads(target, mark)
	})

	// Each change of the source Service's metadata runs the export again: the source is read,
	// its mirrors are as they were, and the target is not asked.
	srcMark, err := source.AuditMark()
	must(t, err)
	targetMark, err := target.AuditMark()
	must(t, err)
	for i := range 3 {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}}
		update(t, src, svc, func() { svc.Annotations["example.com/touched"] = fmt.Sprint(i) })
		eventually(t, 30*time.Second, fmt.Sprintf("the export ran after touch %d: the source Service read again", i), func() error {
			reqs, err := source.Requests(srcMark, fleettest.HubUser)
			if err != nil {
				return err
			}
			for _, r := range reqs {
				if r.Verb == "get" && r.Resource == "services" && r.Name == "cart" {
					srcMark, err = source.AuditMark()
					return err
				}
			}
			return fmt.Errorf("no read of Service cart in member-1 among %d requests", len(reqs))
		})
	}
	must(t, mirrorReads(target, targetMark))
}

// mirrorReads fails naming every read of a Service, EndpointSlice or Endpoints the hub sent
// to c since mark.
func mirrorReads(c *localfleet.ControlPlane, mark localfleet.AuditMark) error {
	reqs, err := c.Requests(mark, fleettest.HubUser)
	if err != nil {
		return err
	}
	var reads []string
	for _, r := range reqs {
		switch r.Resource {
		case "services", "endpointslices", "endpoints":
			if r.Verb == "get" || r.Verb == "list" {
				reads = append(reads, r.Verb+" "+r.Resource+" "+r.Name)
			}
		}
	}
	if len(reads) > 0 {
		return fmt.Errorf("%s: the hub read %v", c.Name, reads)
	}
	return nil
}

// A mirror someone edited is put back, also after the export remembered it as current: the
// edit gives the object a new version, which the memo does not know.
func TestEditedMirrorIsPutBack(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	src, dst := e.members["member-1"], e.members["member-2"]
	must(t, src.Create(ctx, exported("till", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
	must(t, src.Create(ctx, podSlice("till", map[string]bool{"10.3.0.1": true, "10.3.0.2": true})))
	name := mirror.Name("till", "member-1")
	e.waitEndpoints(t, "member-2", name, []string{"10.3.0.1", "10.3.0.2"}, nil)

	t.Run("its Service's ports", func(t *testing.T) {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}
		update(t, dst, svc, func() {
			svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 9999, TargetPort: intstr.FromInt32(9999), Protocol: corev1.ProtocolTCP}}
		})
		eventually(t, 30*time.Second, "mirror Service port 80 again", func() error {
			got := &corev1.Service{}
			if err := dst.Get(ctx, types.NamespacedName{Namespace: "shop", Name: name}, got); err != nil {
				return err
			}
			if len(got.Spec.Ports) != 1 || got.Spec.Ports[0].Port != 80 {
				return fmt.Errorf("ports %+v", got.Spec.Ports)
			}
			return nil
		})
	})

	t.Run("its slice's endpoints", func(t *testing.T) {
		list := &discoveryv1.EndpointSliceList{}
		must(t, dst.List(ctx, list, client.InNamespace("shop"), client.MatchingLabels{discoveryv1.LabelServiceName: name}))
		if len(list.Items) != 1 {
			t.Fatalf("%d mirror slices, want 1", len(list.Items))
		}
		slice := &list.Items[0]
		update(t, dst, slice, func() { slice.Endpoints = slice.Endpoints[:1] })
		e.waitEndpoints(t, "member-2", name, []string{"10.3.0.1", "10.3.0.2"}, nil)
	})

	t.Run("its Service deleted", func(t *testing.T) {
		must(t, client.IgnoreNotFound(dst.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}})))
		eventually(t, 30*time.Second, "mirror Service back", func() error {
			return dst.Get(ctx, types.NamespacedName{Namespace: "shop", Name: name}, &corev1.Service{})
		})
		e.waitEndpoints(t, "member-2", name, []string{"10.3.0.1", "10.3.0.2"}, nil)
	})
}
