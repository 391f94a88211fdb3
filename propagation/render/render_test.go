package render

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Builders shared by the tests of this package.

func inline(i int, yaml string) Source {
	return Source{Name: "resources[" + strconv.Itoa(i) + "] (inline)", YAML: []byte(yaml)}
}

func fromSecret(yaml string) Source {
	return Source{Name: "resources[0] (Secret flotilla-system/creds, key app.yaml)", YAML: []byte(yaml), Sensitive: true}
}

// configMap is a manifest of a ConfigMap, for sources.
func configMap(ns, name string) string {
	s := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n"
	if ns != "" {
		s += "  namespace: " + ns + "\n"
	}
	return s
}

// doc builds a Document directly, for tests that do not exercise Parse.
func doc(index int, apiVersion, kind, ns, name string) Document {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion,
		"kind":       kind,
		"metadata":   map[string]any{"name": name},
	}}
	if ns != "" {
		u.SetNamespace(ns)
	}
	return Document{Source: "resources[0] (inline)", Index: index, Object: u}
}

// withField returns d with obj[path...] = value.
func withField(d Document, value any, path ...string) Document {
	if err := unstructured.SetNestedField(d.Object.Object, value, path...); err != nil {
		panic(err)
	}
	return d
}

// locations lists where each document came from, the way errors name them.
func locations(docs []Document) []string {
	var out []string
	for _, d := range docs {
		out = append(out, d.Location())
	}
	return out
}

// checkErr compares an aggregated error line by line: there must be exactly one line per
// entry of want, and each line must start with its entry.
func checkErr(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error:\n%v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want:\n%s", strings.Join(want, "\n"))
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("error has %d lines, want %d:\n%v", len(got), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error line %d:\n got %s\nwant %s...", i+1, got[i], want[i])
		}
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		name      string
		doc       Document
		wantKey   Key
		wantName  string
		wantEntry string
	}{
		{
			name:     "core namespaced",
			doc:      doc(1, "v1", "ConfigMap", "team-a", "settings"),
			wantKey:  Key{Kind: "ConfigMap", Namespace: "team-a", Name: "settings"},
			wantName: "ConfigMap team-a/settings",
		},
		{
			name:     "group cluster-scoped",
			doc:      doc(1, "rbac.authorization.k8s.io/v1", "ClusterRole", "", "view"),
			wantKey:  Key{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
			wantName: "ClusterRole.rbac.authorization.k8s.io view",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.wantKey, tt.doc.Key()); diff != "" {
				t.Errorf("Key() (-want +got):\n%s", diff)
			}
			if got := tt.doc.Key().String(); got != tt.wantName {
				t.Errorf("Key().String() = %q, want %q", got, tt.wantName)
			}
			e := tt.doc.InventoryEntry()
			if e.Group != tt.wantKey.Group || e.Version != "v1" || e.Kind != tt.wantKey.Kind ||
				e.Namespace != tt.wantKey.Namespace || e.Name != tt.wantKey.Name {
				t.Errorf("InventoryEntry() = %+v, want the key at version v1", e)
			}
		})
	}
}

func TestCheckUnique(t *testing.T) {
	perNamespace := Document{Source: "perNamespace.resources[0] (inline)", Index: 3, Object: doc(1, "v1", "ConfigMap", "team-a", "x").Object}
	tests := []struct {
		name    string
		docs    []Document
		wantErr []string
	}{
		{
			name: "distinct",
			docs: []Document{doc(1, "v1", "ConfigMap", "team-a", "x"), doc(2, "v1", "ConfigMap", "team-b", "x"), doc(3, "v1", "Secret", "team-a", "x")},
		},
		{
			name:    "resources and perNamespace collide",
			docs:    []Document{doc(1, "v1", "ConfigMap", "team-a", "x"), perNamespace},
			wantErr: []string{"ConfigMap team-a/x is defined twice: in resources[0] (inline) document 1 and in perNamespace.resources[0] (inline) document 3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, CheckUnique(tt.docs), tt.wantErr)
		})
	}
}
