package clusters

import (
	"net/http"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

// TestMemberMapperDiscoversPerGroup checks against a real member API server that the
// member's REST mapper is offered the group list without resources (the bare transport
// gets every resource of every group in one aggregated answer), and that it still maps
// core and group kinds and reports a group the member does not serve as no match.
func TestMemberMapperDiscoversPerGroup(t *testing.T) {
	m := unstartedMember(t)

	resourcesWithGroups := func(rt http.RoundTripper) int {
		t.Helper()
		d, err := discovery.NewDiscoveryClientForConfigAndClient(m.config, &http.Client{Transport: rt})
		must(t, err)
		groups, resources, _, err := d.GroupsAndMaybeResources()
		must(t, err)
		if len(groups.Groups) < 2 {
			t.Fatalf("group list: %d groups", len(groups.Groups))
		}
		return len(resources)
	}
	if n := resourcesWithGroups(m.transport); n == 0 {
		t.Fatal("the member answers discovery without resources through the bare transport: the test no longer shows what it guards against")
	}
	if n := resourcesWithGroups(perGroupDiscovery{next: m.transport}); n != 0 {
		t.Errorf("the mapper's discovery got the resources of %d group versions with the group list", n)
	}

	for _, gvk := range []schema.GroupVersionKind{corev1.SchemeGroupVersion.WithKind("Service"), appsv1.SchemeGroupVersion.WithKind("Deployment")} {
		mapping, err := m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("map %s: %v", gvk, err)
		}
		if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
			t.Errorf("%s: scope %s, want namespaced", gvk, mapping.Scope.Name())
		}
	}
	if _, err := m.mapper.RESTMapping(schema.GroupKind{Group: "multicluster.x-k8s.io", Kind: "ServiceExport"}, "v1alpha1"); !meta.IsNoMatchError(err) {
		t.Errorf("map a kind the member does not serve: %v, want no match", err)
	}
}
