package v1alpha1

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseClusterLabels(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{name: "empty", in: "", want: map[string]string{}},
		{name: "blank", in: "  ", want: map[string]string{}},
		{name: "one", in: "env=prod", want: map[string]string{"env": "prod"}},
		{name: "several, spaces trimmed", in: "env=prod, region=eu", want: map[string]string{"env": "prod", "region": "eu"}},
		{name: "prefixed key and empty value", in: "example.com/tier=", want: map[string]string{"example.com/tier": ""}},
		{name: "no equals", in: "env", wantErr: "want key=value"},
		{name: "empty entry", in: "env=prod,", wantErr: "want key=value"},
		{name: "selector operator refused", in: "env!=prod", wantErr: `key "env!"`},
		{name: "double equals refused", in: "env==prod", wantErr: `value "=prod"`},
		{name: "duplicate", in: "env=a,env=b", wantErr: "given twice"},
		{name: "bad value", in: "env=a b", wantErr: `value "a b"`},
		{name: "bad key", in: "-env=a", wantErr: `key "-env"`},
		{name: "empty key", in: "=a", wantErr: `key ""`},
		{name: "reserved", in: LabelRegistration + "=x", wantErr: "the registration source sets it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseClusterLabels(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseClusterLabels(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseClusterLabels(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseClusterLabels(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}
