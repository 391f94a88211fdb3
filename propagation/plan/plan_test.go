package plan

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/propagation/render"
)

// member is a fake Observer: the metadata of the objects a member holds, by "Kind ns/name".
type member map[string]*metav1.PartialObjectMetadata

func (m member) Meta(_ context.Context, gvk schema.GroupVersionKind, key types.NamespacedName) (*metav1.PartialObjectMetadata, error) {
	ref := gvk.Kind + " " + key.Name
	if key.Namespace != "" {
		ref = gvk.Kind + " " + key.Namespace + "/" + key.Name
	}
	if ref == "ConfigMap broken/x" {
		return nil, errors.New("connection refused")
	}
	return m[ref], nil
}

// live is member metadata with a UID and labels (k=v pairs).
func live(uid string, kv ...string) *metav1.PartialObjectMetadata {
	l := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), Labels: l}}
}

func doc(apiVersion, kind, ns, name string) render.Document {
	o := &unstructured.Unstructured{}
	o.SetAPIVersion(apiVersion)
	o.SetKind(kind)
	o.SetNamespace(ns)
	o.SetName(name)
	return render.Document{Object: o}
}

func crd(group, kind string) render.Document {
	d := doc("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets."+group)
	_ = unstructured.SetNestedField(d.Object.Object, group, "spec", "group")
	_ = unstructured.SetNestedField(d.Object.Object, kind, "spec", "names", "kind")
	return d
}

func entry(kind, ns, name, uid string) fleetv1alpha1.InventoryEntry {
	e := fleetv1alpha1.InventoryEntry{Version: "v1", Kind: kind, Namespace: ns, Name: name, UID: types.UID(uid)}
	if kind == "NetworkPolicy" {
		e.Group = "networking.k8s.io"
	}
	return e
}

func baseline(mutate ...func(*fleetv1alpha1.BaselineSpec)) *fleetv1alpha1.Baseline {
	b := &fleetv1alpha1.Baseline{ObjectMeta: metav1.ObjectMeta{Name: "sec"}}
	for _, m := range mutate {
		m(&b.Spec)
	}
	return b
}

func withPolicy(p fleetv1alpha1.ApplyPolicy) func(*fleetv1alpha1.BaselineSpec) {
	return func(s *fleetv1alpha1.BaselineSpec) { s.Policy = p }
}

func adopt(s *fleetv1alpha1.BaselineSpec) { s.ConflictPolicy = fleetv1alpha1.ConflictAdopt }

func noPrune(s *fleetv1alpha1.BaselineSpec) { f := false; s.Prune = &f }

// mapper serves the core kinds the tests use; anything else is not served.
func mapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	for _, k := range []string{"ConfigMap", "Secret"} {
		m.Add(schema.GroupVersionKind{Version: "v1", Kind: k}, meta.RESTScopeNamespace)
	}
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, meta.RESTScopeRoot)
	m.Add(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}, meta.RESTScopeRoot)
	m.Add(schema.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}, meta.RESTScopeNamespace)
	return m
}

// decision is an Object as the tests compare it.
type decision struct {
	Ref            string
	Placement      Placement
	Reason         string
	Compare, Write bool
}

func decisions(p *Plan) [][]decision {
	var out [][]decision
	for _, s := range p.Stages {
		var ds []decision
		for _, o := range s.Objects {
			ds = append(ds, decision{Ref: render.ObjectRef(o.Doc.Object), Placement: o.Placement, Reason: o.Reason, Compare: o.Compare, Write: o.Write})
		}
		out = append(out, ds)
	}
	return out
}

func TestMake(t *testing.T) {
	const lb = fleetv1alpha1.LabelBaseline
	cm := doc("v1", "ConfigMap", "team", "settings")
	np := doc("networking.k8s.io/v1", "NetworkPolicy", "team", "deny-all")
	ns := doc("v1", "Namespace", "", "team")
	tests := []struct {
		name          string
		baseline      *fleetv1alpha1.Baseline
		desired       []render.Document
		inventory     []fleetv1alpha1.InventoryEntry
		member        member
		wantUnknown   []string
		wantStages    [][]decision
		wantWait      []bool
		wantPrune     []Prune
		wantErr       string
		wantOwnedRefs []string
	}{
		{
			name:          "missing objects are created, Namespaces first and waited for",
			baseline:      baseline(),
			desired:       []render.Document{cm, np, ns},
			member:        member{},
			wantStages:    [][]decision{{{"Namespace team", Missing, "", true, true}}, {{"NetworkPolicy team/deny-all", Missing, "", true, true}}, {{"ConfigMap team/settings", Missing, "", true, true}}},
			wantWait:      []bool{true, false, false},
			wantOwnedRefs: []string{"Namespace team", "NetworkPolicy team/deny-all", "ConfigMap team/settings"},
		},
		{
			name:          "an object carrying this Baseline's label is mine",
			baseline:      baseline(),
			desired:       []render.Document{cm},
			member:        member{"ConfigMap team/settings": live("u1", lb, "sec")},
			wantStages:    [][]decision{{{"ConfigMap team/settings", Mine, "", true, true}}},
			wantWait:      []bool{false},
			wantOwnedRefs: []string{"ConfigMap team/settings"},
		},
		{
			name:          "an object whose UID is in the inventory is mine with its label stripped",
			baseline:      baseline(),
			desired:       []render.Document{np},
			inventory:     []fleetv1alpha1.InventoryEntry{entry("NetworkPolicy", "team", "deny-all", "u1")},
			member:        member{"NetworkPolicy team/deny-all": live("u1")},
			wantStages:    [][]decision{{{"NetworkPolicy team/deny-all", Mine, "", true, true}}},
			wantWait:      []bool{false},
			wantOwnedRefs: []string{"NetworkPolicy team/deny-all"},
		},
		{
			name:          "an object whose UID is in the inventory is mine with another Baseline's label",
			baseline:      baseline(),
			desired:       []render.Document{np},
			inventory:     []fleetv1alpha1.InventoryEntry{entry("NetworkPolicy", "team", "deny-all", "u1")},
			member:        member{"NetworkPolicy team/deny-all": live("u1", lb, "other")},
			wantStages:    [][]decision{{{"NetworkPolicy team/deny-all", Mine, "", true, true}}},
			wantWait:      []bool{false},
			wantOwnedRefs: []string{"NetworkPolicy team/deny-all"},
		},
		{
			name:       "a recreated object (new UID) without the label is a conflict under Abort",
			baseline:   baseline(),
			desired:    []render.Document{np},
			inventory:  []fleetv1alpha1.InventoryEntry{entry("NetworkPolicy", "team", "deny-all", "u1")},
			member:     member{"NetworkPolicy team/deny-all": live("u2")},
			wantStages: [][]decision{{{"NetworkPolicy team/deny-all", Conflict, "exists and is not managed by Flotilla (conflictPolicy Abort)", false, false}}},
			wantWait:   []bool{false},
		},
		{
			name:          "an unlabelled object is adopted under Adopt",
			baseline:      baseline(adopt),
			desired:       []render.Document{cm},
			member:        member{"ConfigMap team/settings": live("u1")},
			wantStages:    [][]decision{{{"ConfigMap team/settings", Adopt, "", true, true}}},
			wantWait:      []bool{false},
			wantOwnedRefs: []string{"ConfigMap team/settings"},
		},
		{
			name:       "another Baseline's object is a conflict even under Adopt",
			baseline:   baseline(adopt),
			desired:    []render.Document{cm},
			member:     member{"ConfigMap team/settings": live("u1", lb, "other")},
			wantStages: [][]decision{{{"ConfigMap team/settings", Conflict, `is owned by Baseline "other"`, false, false}}},
			wantWait:   []bool{false},
		},
		{
			name:          "Inform compares but writes nothing, and owns only what exists",
			baseline:      baseline(withPolicy(fleetv1alpha1.PolicyInform)),
			desired:       []render.Document{cm, np},
			member:        member{"ConfigMap team/settings": live("u1", lb, "sec")},
			wantStages:    [][]decision{{{"NetworkPolicy team/deny-all", Missing, "", true, false}}, {{"ConfigMap team/settings", Mine, "", true, false}}},
			wantWait:      []bool{false, false},
			wantOwnedRefs: []string{"ConfigMap team/settings"},
		},
		{
			name:          "CreateOnly writes what is missing and leaves what exists",
			baseline:      baseline(withPolicy(fleetv1alpha1.PolicyCreateOnly)),
			desired:       []render.Document{cm, np},
			member:        member{"ConfigMap team/settings": live("u1", lb, "sec")},
			wantStages:    [][]decision{{{"NetworkPolicy team/deny-all", Missing, "", true, true}}, {{"ConfigMap team/settings", Mine, "", false, false}}},
			wantWait:      []bool{false, false},
			wantOwnedRefs: []string{"NetworkPolicy team/deny-all", "ConfigMap team/settings"},
		},
		{
			name:        "a kind the member does not serve fails the whole plan",
			baseline:    baseline(),
			desired:     []render.Document{cm, doc("example.com/v1", "Widget", "team", "w")},
			member:      member{},
			wantUnknown: []string{"Widget team/w (example.com/v1)"},
		},
		{
			name:          "a kind a CRD of the same Baseline defines is not unknown",
			baseline:      baseline(),
			desired:       []render.Document{doc("example.com/v1", "Widget", "team", "w"), crd("example.com", "Widget")},
			member:        member{},
			wantStages:    [][]decision{{{"CustomResourceDefinition widgets.example.com", Missing, "", true, true}}, {{"Widget team/w", Missing, "", true, true}}},
			wantWait:      []bool{true, false},
			wantOwnedRefs: []string{"CustomResourceDefinition widgets.example.com", "Widget team/w"},
		},
		{
			name:     "what left the Baseline is pruned while owned; Namespaces only when annotated",
			baseline: baseline(),
			desired:  nil,
			inventory: []fleetv1alpha1.InventoryEntry{
				entry("ConfigMap", "team", "labelled", ""),
				entry("ConfigMap", "team", "stripped", "u2"),
				entry("ConfigMap", "team", "taken", "u3"),
				entry("ConfigMap", "team", "gone", "u4"),
				entry("Namespace", "", "team", "u5"),
				entry("Namespace", "", "marked", "u6"),
			},
			member: member{
				"ConfigMap team/labelled": live("u1", lb, "sec"),
				"ConfigMap team/stripped": live("u2"),
				"ConfigMap team/taken":    live("other-uid", lb, "other"),
				"Namespace team":          live("u5", lb, "sec"),
				"Namespace marked": func() *metav1.PartialObjectMetadata {
					m := live("u6", lb, "sec")
					m.Annotations = map[string]string{fleetv1alpha1.AnnotationPrune: "true"}
					return m
				}(),
			},
			wantPrune: []Prune{
				{Entry: entry("ConfigMap", "team", "labelled", "")},
				{Entry: entry("ConfigMap", "team", "stripped", "u2")},
				{Entry: entry("Namespace", "", "team", "u5"), Kept: `a Namespace is pruned only when annotated fleet.flotilla.dev/prune: "true"`},
				{Entry: entry("Namespace", "", "marked", "u6")},
			},
		},
		{
			name:      "spec.prune false keeps what left",
			baseline:  baseline(noPrune),
			inventory: []fleetv1alpha1.InventoryEntry{entry("ConfigMap", "team", "old", "u1")},
			member:    member{"ConfigMap team/old": live("u1", lb, "sec")},
			wantPrune: []Prune{{Entry: entry("ConfigMap", "team", "old", "u1"), Kept: "spec.prune is false"}},
		},
		{
			name:      "Inform never prunes",
			baseline:  baseline(withPolicy(fleetv1alpha1.PolicyInform)),
			inventory: []fleetv1alpha1.InventoryEntry{entry("ConfigMap", "team", "old", "u1")},
			member:    member{"ConfigMap team/old": live("u1", lb, "sec")},
			wantPrune: []Prune{{Entry: entry("ConfigMap", "team", "old", "u1"), Kept: "policy Inform never prunes"}},
		},
		{
			name:          "a desired object is not pruned, whatever version the inventory recorded",
			baseline:      baseline(),
			desired:       []render.Document{cm},
			inventory:     []fleetv1alpha1.InventoryEntry{{Version: "v0", Kind: "ConfigMap", Namespace: "team", Name: "settings", UID: "u1"}},
			member:        member{"ConfigMap team/settings": live("u1")},
			wantStages:    [][]decision{{{"ConfigMap team/settings", Mine, "", true, true}}},
			wantWait:      []bool{false},
			wantOwnedRefs: []string{"ConfigMap team/settings"},
		},
		{
			name:     "a failed read fails the plan, naming the object",
			baseline: baseline(),
			desired:  []render.Document{doc("v1", "ConfigMap", "broken", "x")},
			member:   member{},
			wantErr:  "read ConfigMap broken/x: connection refused",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Make(context.Background(), Input{Baseline: tc.baseline, Desired: tc.desired, Inventory: tc.inventory, Mapper: mapper(), Observer: tc.member})
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Make: got error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Make: %v", err)
			}
			if diff := cmp.Diff(tc.wantUnknown, p.UnknownKinds); diff != "" {
				t.Errorf("unknown kinds (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantStages, decisions(p)); diff != "" {
				t.Errorf("stages (-want +got):\n%s", diff)
			}
			var waits []bool
			for _, s := range p.Stages {
				waits = append(waits, s.Wait)
			}
			if diff := cmp.Diff(tc.wantWait, waits); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantPrune, p.Prune); diff != "" {
				t.Errorf("prune (-want +got):\n%s", diff)
			}
			var owned []string
			for _, o := range p.Owned(tc.baseline) {
				owned = append(owned, render.ObjectRef(o.Doc.Object))
			}
			if diff := cmp.Diff(tc.wantOwnedRefs, owned); diff != "" {
				t.Errorf("owned (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInventoryRecordsUIDs(t *testing.T) {
	objs := []Object{
		{Doc: doc("v1", "ConfigMap", "team", "b"), UID: "u2"},
		{Doc: doc("v1", "ConfigMap", "team", "a"), UID: "u1"},
	}
	want := []fleetv1alpha1.InventoryEntry{entry("ConfigMap", "team", "a", "u1"), entry("ConfigMap", "team", "b", "u2")}
	if diff := cmp.Diff(want, Inventory(objs)); diff != "" {
		t.Errorf("Inventory (-want +got):\n%s", diff)
	}
}

func TestSelectNamespaces(t *testing.T) {
	ns := func(name string, phase corev1.NamespacePhase, deleting bool, kv ...string) corev1.Namespace {
		n := corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}, Status: corev1.NamespaceStatus{Phase: phase}}
		for i := 0; i+1 < len(kv); i += 2 {
			n.Labels[kv[i]] = kv[i+1]
		}
		if deleting {
			now := metav1.Now()
			n.DeletionTimestamp = &now
		}
		return n
	}
	all := []corev1.Namespace{
		ns("a", corev1.NamespaceActive, false, "tenant", "yes"),
		ns("b", corev1.NamespaceActive, false),
		ns("c", corev1.NamespaceTerminating, false, "tenant", "yes"),
		ns("d", corev1.NamespaceActive, true, "tenant", "yes"),
		ns("e", corev1.NamespaceActive, false, "tenant", "yes"),
	}
	tests := []struct {
		name    string
		sel     metav1.LabelSelector
		want    []string
		wantErr bool
	}{
		{name: "empty selector picks every live namespace", want: []string{"a", "b", "e"}},
		{name: "label selector, terminating and deleted skipped", sel: metav1.LabelSelector{MatchLabels: map[string]string{"tenant": "yes"}}, want: []string{"a", "e"}},
		{name: "no match", sel: metav1.LabelSelector{MatchLabels: map[string]string{"tenant": "no"}}},
		{name: "invalid selector", sel: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tenant", Operator: "Bogus"}}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SelectNamespaces(&tc.sel, all)
			if (err != nil) != tc.wantErr {
				t.Fatalf("SelectNamespaces: error %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("SelectNamespaces (-want +got):\n%s", diff)
			}
		})
	}
}
