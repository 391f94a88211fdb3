package render

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func TestVariables(t *testing.T) {
	tests := []struct {
		name          string
		clusterName   string
		clusterLabels map[string]string
		sub           *fleetv1alpha1.Substitution
		wantVars      map[string]string
	}{
		{
			name:          "label keys mangled",
			clusterName:   "eu-prod-1",
			clusterLabels: map[string]string{"topology.kubernetes.io/region": "eu-west-1", "env": "prod", "team-a.example.com/Owner_2": "x"},
			sub:           &fleetv1alpha1.Substitution{},
			wantVars: map[string]string{
				"CLUSTER_NAME": "eu-prod-1",
				"CLUSTER_LABEL_TOPOLOGY_KUBERNETES_IO_REGION": "eu-west-1",
				"CLUSTER_LABEL_ENV":                           "prod",
				"CLUSTER_LABEL_TEAM_A_EXAMPLE_COM_OWNER_2":    "x",
			},
		},
		{
			name:          "built-ins win over variables; other variables kept",
			clusterName:   "c1",
			clusterLabels: map[string]string{"env": "prod"},
			sub: &fleetv1alpha1.Substitution{Variables: map[string]string{
				"CLUSTER_NAME": "spoofed", "CLUSTER_LABEL_ENV": "spoofed", "CLUSTER_LABEL_TIER": "default-tier", "REGISTRY": "registry.example.com",
			}},
			wantVars: map[string]string{
				"CLUSTER_NAME":       "c1",
				"CLUSTER_LABEL_ENV":  "prod",
				"CLUSTER_LABEL_TIER": "default-tier", // the cluster has no tier label: the variable is a default
				"REGISTRY":           "registry.example.com",
			},
		},
		{
			name:          "keys that mangle alike: the first in sorted order wins",
			clusterName:   "c1",
			clusterLabels: map[string]string{"a.b": "dot", "a-b": "dash", "a_b": "underscore"},
			wantVars:      map[string]string{"CLUSTER_NAME": "c1", "CLUSTER_LABEL_A_B": "dash"},
		},
		{
			name:        "no labels, no settings",
			clusterName: "c1",
			wantVars:    map[string]string{"CLUSTER_NAME": "c1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.wantVars, Variables(tt.clusterName, tt.clusterLabels, tt.sub)); diff != "" {
				t.Errorf("Variables (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSubstitute(t *testing.T) {
	vars := map[string]string{
		"CLUSTER_NAME":      "eu-1",
		"CLUSTER_LABEL_ENV": "prod",
		"REPLICAS":          "3",
		"EVIL":              "x\nkind: Secret\n\"}: {",
		"UPPER":             "Prod",
	}
	tests := []struct {
		name        string
		docs        []Document
		wantObjects []map[string]any
		wantErr     []string
	}{
		{
			name: "nested maps and lists, values only",
			docs: []Document{
				withField(withField(withField(doc(1, "apps/v1", "Deployment", "default", "web-${CLUSTER_NAME}"),
					map[string]any{"${CLUSTER_NAME}": "${CLUSTER_LABEL_ENV}"}, "metadata", "labels"),
					[]any{map[string]any{"name": "app", "env": []any{map[string]any{"name": "WHERE", "value": "${CLUSTER_NAME}/${CLUSTER_LABEL_ENV}"}}}},
					"spec", "template", "spec", "containers"),
					"${REPLICAS}", "spec", "replicas"),
			},
			wantObjects: []map[string]any{{
				"apiVersion": "apps/v1",
				"kind":       "Deployment",
				"metadata": map[string]any{
					"name":      "web-eu-1",
					"namespace": "default",
					"labels":    map[string]any{"${CLUSTER_NAME}": "prod"}, // keys untouched
				},
				"spec": map[string]any{
					"replicas": "3", // exactly "${VAR}" stays a string
					"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{
						"name": "app", "env": []any{map[string]any{"name": "WHERE", "value": "eu-1/prod"}},
					}}}},
				},
			}},
		},
		{
			name: "escape, non-strings and text that is not a reference",
			docs: []Document{
				withField(withField(doc(1, "v1", "ConfigMap", "", "cfg"),
					map[string]any{"script": "echo $${HOME} $HOME $$ costs $5 ${CLUSTER_NAME}", "n": int64(3), "b": true, "none": nil}, "data"),
					0.5, "ratio"),
			},
			wantObjects: []map[string]any{{
				"apiVersion": "v1",
				"kind":       "ConfigMap",
				"metadata":   map[string]any{"name": "cfg"},
				"data":       map[string]any{"script": "echo ${HOME} $HOME $$ costs $5 eu-1", "n": int64(3), "b": true, "none": nil},
				"ratio":      0.5,
			}},
		},
		{
			name: "a value cannot inject YAML",
			docs: []Document{withField(doc(1, "v1", "ConfigMap", "", "cfg"), "${EVIL}", "data", "a")},
			wantObjects: []map[string]any{{
				"apiVersion": "v1",
				"kind":       "ConfigMap",
				"metadata":   map[string]any{"name": "cfg"},
				"data":       map[string]any{"a": "x\nkind: Secret\n\"}: {"},
			}},
		},
		{
			name: "undefined and malformed references",
			docs: []Document{
				withField(doc(1, "v1", "ConfigMap", "", "a"),
					map[string]any{"region": "${CLUSTER_LABEL_REGION}", "app.kubernetes.io/part-of": "${PART_OF} ${PART_OF}"}, "metadata", "labels"),
				withField(doc(2, "v1", "ConfigMap", "", "b"), "${CLUSTER_NAME", "data", "x"),
			},
			wantErr: []string{
				`resources[0] (inline) document 1: metadata.labels["app.kubernetes.io/part-of"]: undefined variable ${PART_OF}; write "$${PART_OF}" for a literal "${PART_OF}"`,
				`resources[0] (inline) document 1: metadata.labels.region: undefined variable ${CLUSTER_LABEL_REGION} (no label of the cluster maps to it)`,
				`resources[0] (inline) document 2: data.x: "${" must start a reference ${NAME}`,
			},
		},
		{
			name: "identity validated as substituted",
			docs: []Document{doc(1, "v1", "ConfigMap", "${UPPER}", "${UPPER}-cfg")},
			wantErr: []string{
				`resources[0] (inline) document 1: metadata.name "Prod-cfg" is not a valid ConfigMap name`,
				`resources[0] (inline) document 1: metadata.namespace "Prod" is not a valid namespace name`,
			},
		},
		{
			name:    "objects that become the same",
			docs:    []Document{doc(1, "v1", "ConfigMap", "", "cfg-${CLUSTER_NAME}"), doc(2, "v1", "ConfigMap", "", "cfg-eu-1")},
			wantErr: []string{"ConfigMap cfg-eu-1 is defined twice: in resources[0] (inline) document 1 and in resources[0] (inline) document 2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := make([]map[string]any, len(tt.docs))
			for i, d := range tt.docs {
				before[i] = d.Object.DeepCopy().Object
			}
			got, err := Substitute(tt.docs, vars)
			checkErr(t, err, tt.wantErr)
			var gotObjects []map[string]any
			for _, d := range got {
				gotObjects = append(gotObjects, d.Object.Object)
			}
			if diff := cmp.Diff(tt.wantObjects, gotObjects); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
			for i, d := range tt.docs {
				if diff := cmp.Diff(before[i], d.Object.Object); diff != "" {
					t.Errorf("input document %d was modified (-before +after):\n%s", i+1, diff)
				}
			}
		})
	}
}

// Parse with substitution on and Substitute agree: what Parse accepts for any cluster that
// has the labels it references, Substitute renders.
func TestParseThenSubstitute(t *testing.T) {
	sub := &fleetv1alpha1.Substitution{Variables: map[string]string{"CLUSTER_LABEL_TIER": "standard"}}
	docs, err := Parse([]Source{inline(0, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${CLUSTER_NAME}-info\n  namespace: ${CLUSTER_LABEL_TEAM}\n"+
		"data:\n  tier: ${CLUSTER_LABEL_TIER}\n  region: ${CLUSTER_LABEL_TOPOLOGY_KUBERNETES_IO_REGION}\n")}, sub)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		labels      map[string]string
		wantObjects []map[string]any
		wantErr     []string
	}{
		{
			name:   "cluster with every label",
			labels: map[string]string{"team": "payments", "tier": "gold", "topology.kubernetes.io/region": "eu-west-1"},
			wantObjects: []map[string]any{{
				"apiVersion": "v1",
				"kind":       "ConfigMap",
				"metadata":   map[string]any{"name": "c1-info", "namespace": "payments"},
				"data":       map[string]any{"tier": "gold", "region": "eu-west-1"},
			}},
		},
		{
			name:   "cluster without the tier label falls back to the variable",
			labels: map[string]string{"team": "payments", "topology.kubernetes.io/region": "eu-west-1"},
			wantObjects: []map[string]any{{
				"apiVersion": "v1",
				"kind":       "ConfigMap",
				"metadata":   map[string]any{"name": "c1-info", "namespace": "payments"},
				"data":       map[string]any{"tier": "standard", "region": "eu-west-1"},
			}},
		},
		{
			name:    "cluster without a region label",
			labels:  map[string]string{"team": "payments"},
			wantErr: []string{"resources[0] (inline) document 1: data.region: undefined variable ${CLUSTER_LABEL_TOPOLOGY_KUBERNETES_IO_REGION} (no label of the cluster maps to it)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Substitute(docs, Variables("c1", tt.labels, sub))
			checkErr(t, err, tt.wantErr)
			var gotObjects []map[string]any
			for _, d := range got {
				gotObjects = append(gotObjects, d.Object.Object)
			}
			if diff := cmp.Diff(tt.wantObjects, gotObjects); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
		})
	}
}
