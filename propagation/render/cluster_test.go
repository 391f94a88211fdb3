package render

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func TestSources(t *testing.T) {
	list := []fleetv1alpha1.ResourceSource{
		{Inline: "a: b"},
		{ConfigMapRef: &fleetv1alpha1.LocalObjectReference{Name: "addons"}},
		{SecretRef: &fleetv1alpha1.LocalObjectReference{Name: "creds"}},
	}
	lookup := func(kind, name string) (map[string][]byte, error) {
		if kind == "ConfigMap" {
			return map[string][]byte{"z.yaml": []byte("z"), "a.yaml": []byte("a")}, nil
		}
		return map[string][]byte{"s.yaml": []byte("s")}, nil
	}
	got, err := Sources("resources", "flotilla-system", list, lookup)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
	}
	want := []string{
		"resources[0] (inline)",
		"resources[1] (ConfigMap flotilla-system/addons, key a.yaml)",
		"resources[1] (ConfigMap flotilla-system/addons, key z.yaml)",
		"resources[2] (Secret flotilla-system/creds, key s.yaml)",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("source names, in key order (-want +got):\n%s", diff)
	}
	if got[1].Sensitive || !got[3].Sensitive {
		t.Errorf("only Secret sources are sensitive: %v %v", got[1].Sensitive, got[3].Sensitive)
	}

	missing := errors.New("not found")
	_, err = Sources("resources", "flotilla-system", list[1:2], func(string, string) (map[string][]byte, error) { return nil, missing })
	var se *SourceError
	if !errors.As(err, &se) || !errors.Is(err, missing) || !strings.Contains(err.Error(), "resources[0]: read ConfigMap flotilla-system/addons") {
		t.Errorf("want a SourceError naming the field and ConfigMap, got %v", err)
	}
}

func TestForCluster(t *testing.T) {
	parse := func(y string) []Document {
		t.Helper()
		docs, err := Parse([]Source{{Name: "resources[0] (inline)", YAML: []byte(y)}}, &fleetv1alpha1.Substitution{})
		if err != nil {
			t.Fatal(err)
		}
		return docs
	}
	b := &fleetv1alpha1.Baseline{
		ObjectMeta: metav1.ObjectMeta{Name: "base"},
		Spec: fleetv1alpha1.BaselineSpec{
			Substitute:   &fleetv1alpha1.Substitution{},
			PerNamespace: &fleetv1alpha1.PerNamespace{},
		},
	}
	resources := parse("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: info\n  namespace: default\ndata:\n  cluster: ${CLUSTER_NAME}\n  region: ${CLUSTER_LABEL_REGION}\n")
	perNS := parse("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny\nspec:\n  podSelector: {}\n")
	namespaced := func(schema.GroupVersionKind) bool { return true }

	objs, err := ForCluster(b, resources, perNS, Cluster{Name: "eu-1", Labels: map[string]string{"region": "eu"}, Namespaces: []string{"a", "b"}, Namespaced: namespaced})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range objs {
		o := d.Object
		got = append(got, o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
		if o.GetLabels()[fleetv1alpha1.LabelBaseline] != "base" || o.GetLabels()[fleetv1alpha1.LabelManagedBy] != "flotilla" {
			t.Errorf("%s lacks the ownership labels: %v", o.GetName(), o.GetLabels())
		}
	}
	if diff := cmp.Diff([]string{"ConfigMap default/info", "NetworkPolicy a/deny", "NetworkPolicy b/deny"}, got); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	data := objs[0].Object.Object["data"].(map[string]any)
	if data["cluster"] != "eu-1" || data["region"] != "eu" {
		t.Errorf("substituted data = %v, want cluster eu-1 and region eu", data)
	}

	clusterScoped := func(schema.GroupVersionKind) bool { return false }
	if _, err := ForCluster(b, resources, perNS, Cluster{Name: "eu-1", Namespaces: []string{"a"}, Namespaced: clusterScoped}); err == nil ||
		!strings.Contains(err.Error(), "cluster-scoped and cannot be applied per namespace") {
		t.Errorf("a cluster-scoped perNamespace kind: want a clear error, got %v", err)
	}

	clash := parse("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny\n  namespace: a\nspec:\n  podSelector: {}\n")
	if _, err := ForCluster(b, clash, perNS, Cluster{Name: "eu-1", Namespaces: []string{"a"}, Namespaced: namespaced}); err == nil {
		t.Error("an object defined in resources and by the perNamespace fan-out must be an error")
	}
}
