package render

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		sources []Source
		sub     *fleetv1alpha1.Substitution
		// wantLocations lists the accepted documents, in order.
		wantLocations []string
		// wantErr lists the lines of the error; each line must start with its entry.
		wantErr []string
	}{
		{
			name:    "no sources",
			sources: nil,
		},
		{
			name: "multi-document with separators, comments and empty documents",
			sources: []Source{inline(0, "# addons for every cluster\n"+
				"---\n"+configMap("default", "a")+
				"--- # the second one\n"+configMap("default", "b")+
				"---\n"+
				"---\n# nothing here yet\n"+
				"---\n\n"+configMap("default", "c")+
				"---\n")},
			wantLocations: []string{
				"resources[0] (inline) document 1",
				"resources[0] (inline) document 2",
				"resources[0] (inline) document 5",
			},
		},
		{
			name:          "first document without a separator",
			sources:       []Source{inline(0, configMap("", "a")+"---\n"+configMap("", "b"))},
			wantLocations: []string{"resources[0] (inline) document 1", "resources[0] (inline) document 2"},
		},
		{
			name:          "document end marker does not hide the next document",
			sources:       []Source{inline(0, configMap("", "a")+"...\n"+configMap("", "b"))},
			wantLocations: []string{"resources[0] (inline) document 1", "resources[0] (inline) document 2"},
		},
		{
			name:          "CRLF line endings",
			sources:       []Source{inline(0, strings.ReplaceAll(configMap("", "a")+"---\n"+configMap("", "b"), "\n", "\r\n"))},
			wantLocations: []string{"resources[0] (inline) document 1", "resources[0] (inline) document 2"},
		},
		{
			name: "JSON document, tab-indented, next to YAML",
			sources: []Source{inline(0, "{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"ConfigMap\",\n\t\"metadata\": {\"name\": \"from-json\"}\n}\n"+
				"---\n"+configMap("", "from-yaml"))},
			wantLocations: []string{"resources[0] (inline) document 1", "resources[0] (inline) document 2"},
		},
		{
			name: "v1 List expanded into its items",
			sources: []Source{inline(0, "apiVersion: v1\nkind: List\nitems:\n"+
				"- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"+
				"- {apiVersion: v1, kind: Secret, metadata: {name: a, resourceVersion: \"7\"}}\n"),
				inline(1, configMap("", "b"))},
			wantLocations: []string{
				"resources[0] (inline) document 1 item 1",
				"resources[0] (inline) document 1 item 2",
				"resources[1] (inline) document 1",
			},
		},
		{
			name:    "empty List",
			sources: []Source{inline(0, "apiVersion: v1\nkind: List\nitems: []\n")},
		},
		{
			name: "bad List items",
			sources: []Source{inline(0, "apiVersion: v1\nkind: List\nitems:\n"+
				"- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"+
				"- {apiVersion: v1, metadata: {name: b}}\n"+
				"- just a string\n"+
				"- {apiVersion: v1, kind: List, items: []}\n")},
			wantErr: []string{
				"resources[0] (inline) document 1 item 2: no kind",
				"resources[0] (inline) document 1 item 3: not an object",
				"resources[0] (inline) document 1 item 4: a List inside a List is not supported",
			},
		},
		{
			name:    "List items not a list",
			sources: []Source{inline(0, "apiVersion: v1\nkind: List\nitems: {a: b}\n")},
			wantErr: []string{"resources[0] (inline) document 1: items of a List must be a list"},
		},
		{
			name: "missing apiVersion, kind and name, each reported",
			sources: []Source{inline(0, configMap("", "ok")+
				"---\nkind: ConfigMap\nmetadata: {name: a}\n"+
				"---\napiVersion: v1\nmetadata: {name: b}\n"+
				"---\napiVersion: v1\nkind: ConfigMap\n"+
				"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: default}\n"+
				"---\nmetadata: {}\n")},
			wantErr: []string{
				"resources[0] (inline) document 2: no apiVersion",
				"resources[0] (inline) document 3: no kind",
				"resources[0] (inline) document 4: no metadata.name",
				"resources[0] (inline) document 5: no metadata.name",
				"resources[0] (inline) document 6: no apiVersion",
				"resources[0] (inline) document 6: no kind",
				"resources[0] (inline) document 6: no metadata.name",
			},
		},
		{
			name: "fields of the wrong type",
			sources: []Source{inline(0, "apiVersion: 1\nkind: [ConfigMap]\nmetadata: {name: 2, namespace: true}\n"+
				"---\napiVersion: v1\nkind: ConfigMap\nmetadata: [a]\n"+
				"---\napiVersion: a/b/c\nkind: ConfigMap\nmetadata: {name: a}\n")},
			wantErr: []string{
				"resources[0] (inline) document 1: apiVersion is not a string",
				"resources[0] (inline) document 1: kind is not a string",
				"resources[0] (inline) document 1: metadata.name is not a string",
				"resources[0] (inline) document 1: metadata.namespace is not a string",
				"resources[0] (inline) document 2: metadata is not an object",
				`resources[0] (inline) document 3: apiVersion "a/b/c" is not group/version or version`,
			},
		},
		{
			name:    "generateName is refused, with or without a name",
			sources: []Source{inline(0, "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: cfg-}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, generateName: cfg-}\n")},
			wantErr: []string{
				"resources[0] (inline) document 1: metadata.generateName is not allowed: a Baseline applies the same object on every reconcile",
				"resources[0] (inline) document 1: no metadata.name",
				"resources[0] (inline) document 2: metadata.generateName is not allowed",
			},
		},
		{
			name: "invalid names, by the rules of the kind",
			sources: []Source{inline(0, configMap("", "My_Config")+
				"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: team.a}\n"+
				"---\napiVersion: v1\nkind: Service\nmetadata: {name: 1st}\n"+
				"---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: a/b}\n"+
				"---\n"+configMap("Team-A", "ok"))},
			wantErr: []string{
				`resources[0] (inline) document 1: metadata.name "My_Config" is not a valid ConfigMap name: a lowercase RFC 1123 subdomain`,
				`resources[0] (inline) document 2: metadata.name "team.a" is not a valid Namespace name: must not contain dots`,
				`resources[0] (inline) document 3: metadata.name "1st" is not a valid Service name: a DNS-1035 label`,
				`resources[0] (inline) document 4: metadata.name "a/b" is not a valid ClusterRole name: may not contain "/"`,
				`resources[0] (inline) document 5: metadata.namespace "Team-A" is not a valid namespace name`,
			},
		},
		{
			name: "names valid for their kind",
			sources: []Source{inline(0, "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: \"system:aggregate-to-view\"}\n"+
				"---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: coredns.v2, namespace: kube-system}\n")},
			wantLocations: []string{"resources[0] (inline) document 1", "resources[0] (inline) document 2"},
		},
		{
			name: "garbage YAML: error names the source, document and line of the source",
			sources: []Source{inline(0, configMap("", "a")+
				"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n   bad: indent\n"),
				inline(1, "a: b\na: c\n")},
			wantErr: []string{
				"resources[0] (inline) document 2: invalid YAML: line 10: mapping values are not allowed in this context",
				`resources[1] (inline) document 1: invalid YAML: unmarshal errors: line 2: key "a" already set in map`,
			},
		},
		{
			name:    "a document that is not a mapping",
			sources: []Source{inline(0, "- apiVersion: v1\n  kind: ConfigMap\n---\njust words\n")},
			wantErr: []string{
				"resources[0] (inline) document 1: not an object",
				"resources[0] (inline) document 2: not an object",
			},
		},
		{
			name:    "one bad document and nothing is returned",
			sources: []Source{inline(0, configMap("", "a")), inline(1, "kind: ConfigMap\nmetadata: {name: b}\n")},
			wantErr: []string{"resources[1] (inline) document 1: no apiVersion"},
		},
		{
			name: "duplicates across sources and versions",
			sources: []Source{
				inline(0, configMap("default", "a")+"---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\n"),
				inline(1, "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: default}}\n"+
					"---\napiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: web, namespace: default}\n"+
					// Not duplicates: another namespace, another kind, another group.
					"---\n"+configMap("other", "a")+
					"---\napiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: default}\n"+
					"---\napiVersion: example.com/v1\nkind: ConfigMap\nmetadata: {name: a, namespace: default}\n"),
			},
			wantErr: []string{
				"ConfigMap default/a is defined twice: in resources[0] (inline) document 1 and in resources[1] (inline) document 1 item 1",
				"Deployment.apps default/web is defined twice: in resources[0] (inline) document 2 and in resources[1] (inline) document 2",
			},
		},
		{
			name:          "substitution: references stand in for their values in names",
			sources:       []Source{inline(0, configMap("${CLUSTER_LABEL_TEAM}", "${CLUSTER_NAME}-settings")+"data:\n  region: ${REGION}\n  literal: $${HOME}\n")},
			sub:           &fleetv1alpha1.Substitution{Variables: map[string]string{"REGION": "eu-1"}},
			wantLocations: []string{"resources[0] (inline) document 1"},
		},
		{
			name:    "substitution off: a reference in a name is just an invalid name",
			sources: []Source{inline(0, configMap("", "${CLUSTER_NAME}-settings"))},
			wantErr: []string{`resources[0] (inline) document 1: metadata.name "${CLUSTER_NAME}-settings" is not a valid ConfigMap name`},
		},
		{
			name: "substitution: undefined and malformed references are caught on the hub",
			sources: []Source{inline(0, configMap("", "a")+"data:\n  script: echo ${HOME} ${PATH:-/bin}\n"+
				"---\n"+configMap("", "${NAME_PREFIX}-b")+"---\n"+configMap("", "${CLUSTER_LABEL_}"))},
			sub: &fleetv1alpha1.Substitution{Variables: map[string]string{"NAME_PREFIX": "Team"}},
			wantErr: []string{
				`resources[0] (inline) document 1: data.script: "${" must start a reference ${NAME}`,
				`resources[0] (inline) document 1: data.script: undefined variable ${HOME}; write "$${HOME}" for a literal "${HOME}"`,
				`resources[0] (inline) document 2: metadata.name "${NAME_PREFIX}-b" is not a valid ConfigMap name`,
				`resources[0] (inline) document 3: metadata.name: undefined variable ${CLUSTER_LABEL_}`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := Parse(tt.sources, tt.sub)
			checkErr(t, err, tt.wantErr)
			if err != nil && docs != nil {
				t.Errorf("Parse returned %d documents with an error, want none", len(docs))
			}
			if diff := cmp.Diff(tt.wantLocations, locations(docs)); diff != "" {
				t.Errorf("documents (-want +got):\n%s", diff)
			}
			for _, d := range docs {
				// Every accepted object can be deep-copied and encoded, as the apply will.
				if _, err := d.Object.DeepCopy().MarshalJSON(); err != nil {
					t.Errorf("%s: does not encode: %v", d.Location(), err)
				}
			}
		})
	}
}

func TestParseObjects(t *testing.T) {
	tests := []struct {
		name        string
		yaml        string
		wantObjects []map[string]any
	}{
		{
			name: "server-set fields and status stripped, the rest kept",
			yaml: `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels: {app: web}
  resourceVersion: "42"
  uid: 0b7c1f7e-6f0e-4a4b-9d5e-1b2a3c4d5e6f
  generation: 3
  creationTimestamp: "2024-01-01T00:00:00Z"
  selfLink: /apis/apps/v1/namespaces/default/deployments/web
  managedFields:
  - manager: kubectl
spec:
  replicas: 2
  ratio: 0.5
status:
  readyReplicas: 2
`,
			wantObjects: []map[string]any{{
				"apiVersion": "apps/v1",
				"kind":       "Deployment",
				"metadata": map[string]any{
					"name":      "web",
					"namespace": "default",
					"labels":    map[string]any{"app": "web"},
				},
				"spec": map[string]any{"replicas": int64(2), "ratio": 0.5},
			}},
		},
		{
			name: "stripped in List items too",
			yaml: "apiVersion: v1\nkind: List\nmetadata: {resourceVersion: \"1\"}\nitems:\n" +
				"- {apiVersion: v1, kind: ConfigMap, metadata: {name: a, creationTimestamp: null}, status: {}}\n",
			wantObjects: []map[string]any{{
				"apiVersion": "v1",
				"kind":       "ConfigMap",
				"metadata":   map[string]any{"name": "a"},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := Parse([]Source{inline(0, tt.yaml)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []map[string]any
			for _, d := range docs {
				got = append(got, d.Object.Object)
			}
			if diff := cmp.Diff(tt.wantObjects, got); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
		})
	}
}

// A Secret's content must never reach an error message, which ends up in conditions and
// events that many more people can read than the Secret.
func TestParseSecretDoesNotLeak(t *testing.T) {
	const secret = "hunter2"
	tests := []struct {
		name    string
		yaml    string
		wantErr []string
	}{
		{
			name: "tab in indentation",
			yaml: "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData:\n  password: " + secret + "\n\tfoo: bar\n",
			wantErr: []string{
				"resources[0] (Secret flotilla-system/creds, key app.yaml) document 1: invalid YAML at line 6 (details hidden: the source is a Secret)",
			},
		},
		{
			name:    "parser quotes a key",
			yaml:    "? [" + secret + ", x]\n: y\n",
			wantErr: []string{"resources[0] (Secret flotilla-system/creds, key app.yaml) document 1: invalid YAML (details hidden: the source is a Secret)"},
		},
		{
			name:    "duplicate key",
			yaml:    "---\n" + secret + ": a\n" + secret + ": b\n",
			wantErr: []string{"resources[0] (Secret flotilla-system/creds, key app.yaml) document 1: invalid YAML at line 3 (details hidden: the source is a Secret)"},
		},
		{
			name: "invalid values are not echoed",
			yaml: "apiVersion: " + secret + "/a/b\nkind: Secret\nmetadata: {name: " + secret + "_, namespace: " + secret + "_}\n",
			wantErr: []string{
				"resources[0] (Secret flotilla-system/creds, key app.yaml) document 1: apiVersion is not group/version or version",
				"resources[0] (Secret flotilla-system/creds, key app.yaml) document 1: metadata.name is not a valid Secret name",
				"resources[0] (Secret flotilla-system/creds, key app.yaml) document 1: metadata.namespace is not a valid namespace name",
			},
		},
		{
			// A Baseline author names a member's kubeconfig Secret of the hub namespace as a
			// source: it is no manifest, nothing of it is applied or quoted.
			name: "a member kubeconfig",
			yaml: "apiVersion: v1\nkind: Config\nclusters:\n- name: m\n  cluster: {server: 'https://10.0.0.1:6443'}\n" +
				"users:\n- name: u\n  user: {token: " + secret + "}\ncontexts:\n- name: c\n  context: {cluster: m, user: u}\ncurrent-context: c\n",
			wantErr: []string{"resources[0] (Secret flotilla-system/creds, key app.yaml) document 1: no metadata.name"},
		},
		{
			name:    "a bare value",
			yaml:    secret + "\n",
			wantErr: []string{"resources[0] (Secret flotilla-system/creds, key app.yaml) document 1: not an object"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]Source{fromSecret(tt.yaml)}, nil)
			checkErr(t, err, tt.wantErr)
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error quotes the Secret's content:\n%v", err)
			}
		})
	}
}

func TestParseSensitiveDocuments(t *testing.T) {
	docs, err := Parse([]Source{inline(0, configMap("", "a")), fromSecret("apiVersion: v1\nkind: Secret\nmetadata: {name: b}\n")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for _, d := range docs {
		got = append(got, d.Sensitive)
	}
	if diff := cmp.Diff([]bool{false, true}, got); diff != "" {
		t.Errorf("Sensitive (-want +got):\n%s", diff)
	}
}

// FuzzParse checks that no input makes Parse panic, and that what it accepts can be
// applied: every object has apiVersion, kind and a name, and encodes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		configMap("default", "a"),
		"---\n" + configMap("", "a") + "--- # c\n" + configMap("", "b") + "...\n",
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n",
		"{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"n\"}}",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"${CLUSTER_NAME}\"}\ndata: {a: \"$${X} ${Y\"}\n",
		"a: &x [*x]\n",
		"\xef\xbb\xbf# bom\n---\r\n",
	} {
		f.Add([]byte(s), false, false)
		f.Add([]byte(s), true, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, sensitive, substitute bool) {
		var sub *fleetv1alpha1.Substitution
		if substitute {
			sub = &fleetv1alpha1.Substitution{Variables: map[string]string{"Y": "y"}}
		}
		docs, err := Parse([]Source{{Name: "fuzz", YAML: data, Sensitive: sensitive}}, sub)
		if err != nil {
			if docs != nil {
				t.Fatalf("documents returned with an error: %v", err)
			}
			return
		}
		for _, d := range docs {
			if d.Object.GetAPIVersion() == "" || d.Object.GetKind() == "" || d.Object.GetName() == "" {
				t.Fatalf("%s accepted without apiVersion, kind or name: %v", d.Location(), d.Object.Object)
			}
			if _, err := d.Object.DeepCopy().MarshalJSON(); err != nil {
				t.Fatalf("%s accepted but does not encode: %v", d.Location(), err)
			}
		}
		if substitute {
			// Substitution of what Parse accepted must not panic either.
			_, _ = Substitute(docs, Variables("c1", map[string]string{"team": "a"}, sub))
		}
	})
}
