package clusters

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// TestPeriodicQuestionsOfARealMember asks a real member API server what the hub asks every
// member periodically with plain requests: how many Nodes it has (one page of one Node and
// the count of the rest), and which kinds it serves of a group version it serves and of
// one it does not.
func TestPeriodicQuestionsOfARealMember(t *testing.T) {
	m := unstartedMember(t)
	ctx := context.Background()
	count := func() int32 {
		t.Helper()
		n, err := m.nodes.get(ctx)
		if err != nil {
			t.Fatalf("count Nodes: %v", err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("a control plane without kubelets has %d Nodes, want 0", n)
	}
	for i := range 3 {
		must(t, m.client.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)}}))
	}
	if n := count(); n != 3 {
		t.Errorf("count = %d Nodes, want 3", n)
	}
	// The count takes one request: the API server says how many Nodes follow the first.
	page, err := readNodePage(ctx, m.nodes.first, maxNodePage)
	must(t, err)
	if len(page.Items) != 1 || page.Metadata.RemainingItemCount == nil || *page.Metadata.RemainingItemCount != 2 {
		t.Errorf("first page: %d Nodes and remainingItemCount %v, want 1 and 2", len(page.Items), page.Metadata.RemainingItemCount)
	}

	apps, err := m.servedKinds(appsv1.SchemeGroupVersion)
	must(t, err)
	if !apps["Deployment"] || !apps["StatefulSet"] {
		t.Errorf("apps/v1 kinds = %v, want Deployment and StatefulSet among them", apps)
	}
	mcs, err := m.servedKinds(schema.GroupVersion{Group: "multicluster.x-k8s.io", Version: "v1alpha1"})
	if err != nil || len(mcs) != 0 {
		t.Errorf("kinds of a group the member does not serve = %v, %v; want none and no error", mcs, err)
	}
}

// TestNodeCountPagesWhenNoCountIsSent: a server that answers the first page without
// remainingItemCount gets its Nodes counted page by page.
func TestNodeCountPagesWhenNoCountIsSent(t *testing.T) {
	pages := map[string]string{
		"":   `{"metadata":{"continue":"c1"},"items":[{"metadata":{"name":"a"}}]}`,
		"c1": `{"metadata":{"continue":"c2"},"items":[{"metadata":{"name":"b"}},{"metadata":{"name":"c"}}]}`,
		"c2": `{"metadata":{},"items":[{"metadata":{"name":"d"}}]}`,
	}
	s := newCountingServer(t, true, func(w http.ResponseWriter, r *http.Request) {
		page, ok := pages[r.URL.Query().Get("continue")]
		if r.URL.Path != "/api/v1/nodes" || !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_, _ = fmt.Fprint(w, page)
	})
	creds, err := LoadCredentials(kubeconfigFor(t, s.URL, s.Server, nil), CredentialPolicy{AllowLoopback: true})
	must(t, err)
	scheme := runtime.NewScheme()
	must(t, clientgoscheme.AddToScheme(scheme))
	m, err := newMember(NewConnections(scheme, fastProbes).memberConfig(), "paged", creds)
	must(t, err)
	n, err := m.nodes.get(context.Background())
	must(t, err)
	if n != 4 || s.requests.Load() != 3 {
		t.Errorf("count = %d Nodes in %d requests, want 4 in 3", n, s.requests.Load())
	}
}
