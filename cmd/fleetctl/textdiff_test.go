package main

import (
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestUnifiedDiff(t *testing.T) {
	lines := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
	cases := []struct {
		name string
		a, b string
		want []string
	}{
		{name: "equal", a: "a\nb", b: "a\nb", want: nil},
		{name: "one line changed in the middle", a: "1\n2\n3\n4\n5\n6\n7\n8\n9", b: "1\n2\n3\n4\nX\n6\n7\n8\n9",
			want: []string{"@@ -2,7 +2,7 @@", " 2", " 3", " 4", "-5", "+X", " 6", " 7", " 8"}},
		{name: "added at the end", a: "a\nb", b: "a\nb\nc",
			want: []string{"@@ -1,2 +1,3 @@", " a", " b", "+c"}},
		{name: "from nothing", a: "", b: "a\nb",
			want: []string{"@@ -0,0 +1,2 @@", "+a", "+b"}},
		{name: "changes far apart make two hunks", a: "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12", b: "X\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\nY",
			want: []string{"@@ -1,4 +1,4 @@", "-1", "+X", " 2", " 3", " 4", "@@ -9,4 +9,4 @@", " 9", " 10", " 11", "-12", "+Y"}},
		{name: "changes close together share a hunk", a: "1\n2\n3\n4\n5", b: "X\n2\n3\n4\nY",
			want: []string{"@@ -1,5 +1,5 @@", "-1", "+X", " 2", " 3", " 4", "-5", "+Y"}},
		{name: "a list item inserted keeps the rest", a: "rules:\n- get\n- list\nkind: x", b: "rules:\n- get\n- list\n- watch\nkind: x",
			want: []string{"@@ -1,4 +1,5 @@", " rules:", " - get", " - list", "+- watch", " kind: x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, unifiedDiff(lines(tc.a), lines(tc.b))); diff != "" {
				t.Errorf("unifiedDiff (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMaskSecrets(t *testing.T) {
	secret := func(data map[string]any, annotations map[string]any) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret",
			"metadata": map[string]any{"name": "s", "annotations": annotations}}}
		if data != nil {
			u.Object["data"] = data
		}
		return u
	}
	cases := []struct {
		name                  string
		before, after         *unstructured.Unstructured
		wantBefore, wantAfter map[string]any
	}{
		{
			name:       "same, changed, added and removed values",
			before:     secret(map[string]any{"same": "c2VjcmV0", "changed": "b2xk", "removed": "eA=="}, nil),
			after:      secret(map[string]any{"same": "c2VjcmV0", "changed": "bmV3", "added": "eQ=="}, nil),
			wantBefore: map[string]any{"same": maskSame, "changed": maskBefore, "removed": maskSame},
			wantAfter:  map[string]any{"same": maskSame, "changed": maskAfter, "added": maskSame},
		},
		{
			name:      "a Secret to create",
			after:     secret(map[string]any{"password": "aHVudGVyMg=="}, nil),
			wantAfter: map[string]any{"password": maskSame},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gotBefore, gotAfter := maskSecrets(tc.before, tc.after)
			if diff := cmp.Diff(tc.wantBefore, nestedMap(gotBefore, []string{"data"})); diff != "" {
				t.Errorf("before (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAfter, nestedMap(gotAfter, []string{"data"})); diff != "" {
				t.Errorf("after (-want +got):\n%s", diff)
			}
			if tc.before != nil && tc.before.Object["data"].(map[string]any)["same"] != "c2VjcmV0" {
				t.Error("maskSecrets changed its input")
			}
		})
	}

	t.Run("stringData and kubectl's last-applied annotation are masked, other annotations are not", func(t *testing.T) {
		after := secret(nil, map[string]any{lastApplied: `{"data":{"password":"aHVudGVyMg=="}}`, "team": "a"})
		after.Object["stringData"] = map[string]any{"password": "hunter2"}
		_, got := maskSecrets(nil, after)
		lines, err := diffLines(got)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Join(lines, "\n")
		for _, leak := range []string{"hunter2", "aHVudGVyMg=="} {
			if strings.Contains(text, leak) {
				t.Errorf("masked Secret shows %q:\n%s", leak, text)
			}
		}
		if !strings.Contains(text, "team: a") {
			t.Errorf("masked Secret lost an ordinary annotation:\n%s", text)
		}
	})

	t.Run("other kinds are left alone", func(t *testing.T) {
		cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "data": map[string]any{"k": "v"}}}
		_, got := maskSecrets(nil, cm)
		if v := nestedMap(got, []string{"data"})["k"]; v != "v" {
			t.Errorf("ConfigMap value = %v, want it shown", v)
		}
	})
}

func TestDiffLinesStripsServerFields(t *testing.T) {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "x", "namespace": "default", "resourceVersion": "7", "uid": "u",
			"generation": int64(2), "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": []any{map[string]any{"manager": "m"}}},
		"data":   map[string]any{"k": "v"},
		"status": map[string]any{"x": "y"},
	}}
	got, err := diffLines(obj)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"apiVersion: v1", "data:", "  k: v", "kind: ConfigMap", "metadata:", "  name: x", "  namespace: default"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("diffLines (-want +got):\n%s", diff)
	}
}

func TestExitCode(t *testing.T) {
	cases := []struct {
		name          string
		err           error
		wantCode      int
		wantPrintable bool
	}{
		{name: "success", err: nil, wantCode: 0},
		{name: "ordinary error", err: errString("boom"), wantCode: 1, wantPrintable: true},
		{name: "differences", err: &exitError{code: diffExitChanges}, wantCode: 1},
		{name: "diff failed", err: withExitCode(diffExitError, errString("boom")), wantCode: 2, wantPrintable: true},
		{name: "an exit code is kept", err: withExitCode(diffExitError, &exitError{code: diffExitChanges}), wantCode: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, printable := exitCode(tc.err)
			if code != tc.wantCode || printable != tc.wantPrintable {
				t.Errorf("exitCode = %d, %v; want %d, %v", code, printable, tc.wantCode, tc.wantPrintable)
			}
		})
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestDiffUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{"diff"}, {"diff", "a", "b"}, {"diff", "a", "--no-such-flag"}} {
		err := fleetctlTo(t.Context(), io.Discard, args...)
		if code, _ := exitCode(err); code != diffExitError {
			t.Errorf("fleetctl %v: exit code %d (%v), want %d: 1 means differences", args, code, err, diffExitError)
		}
	}
}

func TestCheckStoredKubeconfig(t *testing.T) {
	cases := []struct {
		name string
		user clientcmdapi.AuthInfo
		ca   string
		want string // in the error; "" for none
	}{
		{name: "token and embedded CA", user: clientcmdapi.AuthInfo{Token: "t"}},
		{name: "exec plugin", user: clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "sh"}}, want: `an exec plugin (user "u")`},
		{name: "auth provider", user: clientcmdapi.AuthInfo{AuthProvider: &clientcmdapi.AuthProviderConfig{Name: "gcp"}}, want: `an auth-provider (user "u")`},
		{name: "token file", user: clientcmdapi.AuthInfo{TokenFile: "/etc/passwd"}, want: `a file reference (user "u")`},
		{name: "CA file", user: clientcmdapi.AuthInfo{Token: "t"}, ca: "/etc/ca.crt", want: `a file reference (cluster "c")`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientcmdapi.NewConfig()
			cfg.AuthInfos["u"] = &tc.user
			cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://x", CertificateAuthority: tc.ca}
			err := checkStoredKubeconfig(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("checkStoredKubeconfig: %v, want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("checkStoredKubeconfig: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
