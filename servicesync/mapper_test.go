package servicesync

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/flotilla-dev/flotilla/clusters/clusterstest"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// TestSliceChangeEnqueues: a user's change to an EndpointSlice in a member (pods scaled,
// became ready) reaches the export of its Service, or the export a mirror slice came from,
// and nothing else: a slice of a Service nobody exports, or one from a member that is not
// connected, costs no reconcile.
func TestSliceChangeEnqueues(t *testing.T) {
	service := func(name string, annotations map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: annotations}}
	}
	member1 := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(
		service("web", map[string]string{fleetv1alpha1.AnnotationExport: "true"}),
		service("plain", nil),
		service("was-exported", map[string]string{fleetv1alpha1.AnnotationExport: "false"}),
	).Build()
	m := &mapper{members: clusterstest.New(map[string]clusterstest.Member{"member-1": {Reader: member1}}),
		dirty: newDirtyTimes(dirtyLimit)}

	slice := func(labels map[string]string) client.Object {
		s := sliceMeta()
		s.ObjectMeta = metav1.ObjectMeta{Namespace: "shop", Name: "slice-abc", Labels: labels}
		return s
	}
	of := func(svc string) map[string]string { return map[string]string{discoveryv1.LabelServiceName: svc} }
	req := func(cluster, ns, name string) exportRequest {
		return exportRequest{Cluster: cluster, NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}
	}
	for _, tc := range []struct {
		name    string
		cluster string
		slice   client.Object
		want    []exportRequest
	}{
		{"slice of an exported Service", "member-1", slice(of("web")), []exportRequest{req("member-1", "shop", "web")}},
		{"slice of an unexported Service", "member-1", slice(of("plain")), nil},
		{"slice of a Service whose export was turned off", "member-1", slice(of("was-exported")), nil},
		{"slice of a Service that does not exist", "member-1", slice(of("gone")), nil},
		{"slice without a Service", "member-1", slice(nil), nil},
		{"slice of a member that is not connected", "member-2", slice(of("web")), nil},
		{"mirror slice maps to its source", "member-1", slice(map[string]string{
			discoveryv1.LabelServiceName:       "web-from-member-3",
			fleetv1alpha1.LabelSourceCluster:   "member-3",
			fleetv1alpha1.LabelSourceNamespace: "shop",
			fleetv1alpha1.LabelSourceName:      "web",
		}), []exportRequest{req("member-3", "shop", "web")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := m.slice(context.Background(), tc.cluster, tc.slice)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("requests enqueued by a change of the slice (-want +got):\n%s", diff)
			}
		})
	}
}
