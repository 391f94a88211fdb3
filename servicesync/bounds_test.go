package servicesync

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/status"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// A Service with 2,000 refused addresses: listed whole, the Synced message alone would pass
// the 32 KiB the API server allows a condition message, and the catalog's status write would
// fail on every retry.
func TestOversizedStatusIsWrittenCapped(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	src := e.members["member-1"]
	const refused = 2000
	lb := exported("crowd", map[string]string{fleetv1alpha1.AnnotationAddressMode: "LoadBalancer"})
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	must(t, src.Create(ctx, lb))
	updateStatus(t, src, lb, func() {
		ingress := []corev1.LoadBalancerIngress{{IP: "10.2.0.1"}}
		for i := range refused {
			ingress = append(ingress, corev1.LoadBalancerIngress{IP: fmt.Sprintf("127.0.%d.%d", i/250, i%250+1)})
		}
		lb.Status.LoadBalancer.Ingress = ingress
	})

	es := e.exportedService(t, "member-1", "crowd", synced(metav1.ConditionTrue, fleetv1alpha1.ReasonMirrored, fmt.Sprintf("and %d more", refused-messageItems)))
	if len(es.Status.Refused) != fleetv1alpha1.MaxListed || es.Status.RefusedOmitted != refused-fleetv1alpha1.MaxListed {
		t.Errorf("status lists %d refused addresses and counts %d more; want %d and %d",
			len(es.Status.Refused), es.Status.RefusedOmitted, fleetv1alpha1.MaxListed, refused-fleetv1alpha1.MaxListed)
	}
	for _, c := range es.Status.Conditions {
		if len(c.Message) > status.MaxMessage {
			t.Errorf("%s message of %d bytes, more than %d", c.Type, len(c.Message), status.MaxMessage)
		}
	}
	// What can be mirrored still is.
	e.waitEndpoints(t, "member-2", mirror.Name("crowd", "member-1"), []string{"10.2.0.1"}, nil)
}
