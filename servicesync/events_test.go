package servicesync

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/servicesync/mirror"
)

// exportEvents lists, as "<type> <reason>: <note> ×<series count>", the hub's events about
// the ExportedService of cluster/shop/name.
func (e *env) exportEvents(ctx context.Context, cluster, name string) ([]string, error) {
	list := &corev1.EventList{}
	if err := e.hub.List(ctx, list); err != nil {
		return nil, err
	}
	var out []string
	for _, ev := range list.Items {
		if ev.InvolvedObject.Kind != "ExportedService" || ev.InvolvedObject.Name != fleetv1alpha1.ExportedServiceName(cluster, "shop", name) {
			continue
		}
		n := int32(1)
		if ev.Series != nil {
			n = ev.Series.Count
		}
		out = append(out, fmt.Sprintf("%s %s: %s ×%d", ev.Type, ev.Reason, ev.Message, n))
	}
	slices.Sort(out)
	return out, nil
}

// An export tells, once each, that its mirror was written into a member and that an
// object in the way blocks it elsewhere (the export conflict); endpoint updates, the steady
// work of a busy Service, tell nothing.
func TestExportEventsOnTransitionsOnly(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	// Someone else's Service where member-3 would get the mirror.
	must(t, e.members["member-3"].Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: mirror.Name("web", "member-1")},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 9999}}}}))
	src := e.members["member-1"]
	must(t, src.Create(ctx, exported("web", map[string]string{fleetv1alpha1.AnnotationAddressMode: "PodIP"})))
	slice := podSlice("web", map[string]bool{"10.1.0.1": true})
	must(t, src.Create(ctx, slice))
	e.waitEndpoints(t, "member-2", mirror.Name("web", "member-1"), []string{"10.1.0.1"}, nil)

	want := []string{
		"Normal Mirrored: mirror written into member-2 ×1",
		"Warning NameClash: ",
	}
	var settled []string
	eventually(t, 30*time.Second, fmt.Sprintf("events %v", want), func() error {
		got, err := e.exportEvents(ctx, "member-1", "web")
		if err != nil {
			return err
		}
		if len(got) != 2 || got[0] != want[0] || !strings.HasPrefix(got[1], want[1]) || !strings.Contains(got[1], "member-3") || !strings.HasSuffix(got[1], "×1") {
			return fmt.Errorf("events %v", got)
		}
		settled = got
		return nil
	})

	// Endpoints change, the mirror follows: no event.
	update(t, src, slice, func() { setEndpoints(slice, map[string]bool{"10.1.0.1": true, "10.1.0.2": true}) })
	e.waitEndpoints(t, "member-2", mirror.Name("web", "member-1"), []string{"10.1.0.1", "10.1.0.2"}, nil)
	consistently(t, 3*time.Second, "no further event", func() error {
		got, err := e.exportEvents(ctx, "member-1", "web")
		if err == nil && !slices.Equal(got, settled) {
			return fmt.Errorf("events %v, were %v", got, settled)
		}
		return err
	})
}
