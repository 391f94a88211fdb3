package render

import (
	"regexp"
	"testing"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func TestRevision(t *testing.T) {
	type input struct {
		resources, perNamespace []Source
		sub                     *fleetv1alpha1.Substitution
	}
	base := func() input {
		return input{
			resources:    []Source{inline(0, configMap("", "a")), inline(1, configMap("", "b"))},
			perNamespace: []Source{inline(0, "kind: NetworkPolicy\n")},
		}
	}
	baseRev := Revision(base().resources, base().perNamespace, base().sub)
	if !regexp.MustCompile(`^[0-9a-f]{10}$`).MatchString(baseRev) {
		t.Fatalf("Revision = %q, want 10 hex digits", baseRev)
	}

	tests := []struct {
		name       string
		change     func(in *input)
		wantChange bool
	}{
		{name: "same input", change: func(*input) {}},
		{
			name: "other source names and sensitivity",
			change: func(in *input) {
				in.resources[0].Name = "resources[0] (ConfigMap flotilla-system/addons, key a.yaml)"
				in.resources[1].Sensitive = true
			},
		},
		{name: "one byte of a resource", change: func(in *input) { in.resources[1].YAML[len(in.resources[1].YAML)-2] = 'c' }, wantChange: true},
		{name: "resources reordered", change: func(in *input) { in.resources[0], in.resources[1] = in.resources[1], in.resources[0] }, wantChange: true},
		{name: "a resource removed", change: func(in *input) { in.resources = in.resources[:1] }, wantChange: true},
		{name: "an empty resource added", change: func(in *input) { in.resources = append(in.resources, inline(2, "")) }, wantChange: true},
		{
			name: "the same bytes split differently",
			change: func(in *input) {
				in.resources = []Source{inline(0, configMap("", "a")+configMap("", "b")[:3]), inline(1, configMap("", "b")[3:])}
			},
			wantChange: true,
		},
		{
			name: "a source moved from resources to perNamespace",
			change: func(in *input) {
				in.perNamespace = append([]Source{in.resources[1]}, in.perNamespace...)
				in.resources = in.resources[:1]
			},
			wantChange: true,
		},
		{name: "perNamespace changed", change: func(in *input) { in.perNamespace[0].YAML = []byte("kind: Role\n") }, wantChange: true},
		{name: "substitution turned on", change: func(in *input) { in.sub = &fleetv1alpha1.Substitution{} }, wantChange: true},
		{
			name:       "a variable added",
			change:     func(in *input) { in.sub = &fleetv1alpha1.Substitution{Variables: map[string]string{"A": "1"}} },
			wantChange: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			tt.change(&in)
			got := Revision(in.resources, in.perNamespace, in.sub)
			if changed := got != baseRev; changed != tt.wantChange {
				t.Errorf("Revision = %s, base %s: changed %v, want %v", got, baseRev, changed, tt.wantChange)
			}
		})
	}
}

func TestRevisionVariables(t *testing.T) {
	rev := func(vars map[string]string) string {
		return Revision(nil, nil, &fleetv1alpha1.Substitution{Variables: vars})
	}
	tests := []struct {
		name       string
		a, b       map[string]string
		wantChange bool
	}{
		{name: "same variables", a: map[string]string{"A": "1", "B": "2", "C": "3"}, b: map[string]string{"C": "3", "B": "2", "A": "1"}},
		{name: "a value", a: map[string]string{"A": "1"}, b: map[string]string{"A": "2"}, wantChange: true},
		{name: "a name", a: map[string]string{"A": "1"}, b: map[string]string{"B": "1"}, wantChange: true},
		{name: "name and value framed apart", a: map[string]string{"AB": "C"}, b: map[string]string{"A": "BC"}, wantChange: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if changed := rev(tt.a) != rev(tt.b); changed != tt.wantChange {
				t.Errorf("changed %v, want %v", changed, tt.wantChange)
			}
		})
	}
}
