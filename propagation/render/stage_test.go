package render

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestStage(t *testing.T) {
	names := func(stages [][]Document) [][]string {
		var out [][]string
		for _, s := range stages {
			var names []string
			for _, d := range s {
				names = append(names, d.Object.GetName())
			}
			out = append(out, names)
		}
		return out
	}
	tests := []struct {
		name       string
		docs       []Document
		wantStages [][]string
	}{
		{name: "nothing"},
		{
			name: "every stage, stable within each",
			docs: []Document{
				doc(1, "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "", "webhook"),
				doc(2, "apps/v1", "Deployment", "addons", "deploy"),
				doc(3, "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "crb"),
				doc(4, "example.com/v1", "Widget", "addons", "widget"),
				doc(5, "apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets.example.com"),
				doc(6, "v1", "ServiceAccount", "addons", "sa"),
				doc(7, "v1", "Namespace", "", "addons"),
				doc(8, "rbac.authorization.k8s.io/v1", "ClusterRole", "", "cr"),
				doc(9, "networking.k8s.io/v1", "NetworkPolicy", "addons", "deny-all"),
				doc(10, "v1", "Service", "addons", "svc"),
				doc(11, "v1", "Namespace", "", "addons-2"),
				doc(12, "apiregistration.k8s.io/v1", "APIService", "", "v1.metrics.k8s.io"),
			},
			wantStages: [][]string{
				{"addons", "addons-2"},
				{"widgets.example.com"},
				{"crb", "sa", "cr", "deny-all"},
				{"deploy", "widget", "svc"},
				{"webhook", "v1.metrics.k8s.io"},
			},
		},
		{
			name: "empty stages left out; a kind named like a core kind in another group is not it",
			docs: []Document{
				doc(1, "v1", "ConfigMap", "default", "cfg"),
				doc(2, "example.com/v1", "Namespace", "", "not-a-namespace"),
				doc(3, "v1", "Namespace", "", "ns"),
			},
			wantStages: [][]string{{"ns"}, {"cfg", "not-a-namespace"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.wantStages, names(Stage(tt.docs))); diff != "" {
				t.Errorf("stages (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInNamespace(t *testing.T) {
	tests := []struct {
		name           string
		docs           []Document
		ns             string
		wantNamespaces []string
	}{
		{
			name:           "set and replaced",
			docs:           []Document{doc(1, "networking.k8s.io/v1", "NetworkPolicy", "", "deny-all"), doc(2, "v1", "ConfigMap", "elsewhere", "cfg")},
			ns:             "team-a",
			wantNamespaces: []string{"team-a", "team-a"},
		},
		{name: "no documents", ns: "team-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := InNamespace(tt.docs, tt.ns)
			var gotNamespaces []string
			for i, d := range got {
				gotNamespaces = append(gotNamespaces, d.Object.GetNamespace())
				if d.Location() != tt.docs[i].Location() {
					t.Errorf("document %d moved: %s, want %s", i, d.Location(), tt.docs[i].Location())
				}
				if d.Object == tt.docs[i].Object {
					t.Errorf("document %d shares its object with the input", i)
				}
			}
			if diff := cmp.Diff(tt.wantNamespaces, gotNamespaces); diff != "" {
				t.Errorf("namespaces (-want +got):\n%s", diff)
			}
			// The input is the template for every namespace: it must not change.
			if len(tt.docs) > 0 && tt.docs[0].Object.GetNamespace() != "" {
				t.Errorf("input document 1 got namespace %q", tt.docs[0].Object.GetNamespace())
			}
		})
	}
}
