package clusters

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

const goodKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: ` + "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJhekNDQVJHZ0F3SUJBZ0lVYkxDb1dLZ1MKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=" + `
users:
- name: u
  user:
    token: abc
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
`

// withUser replaces the user stanza of goodKubeconfig.
func withUser(user string) string {
	return strings.Replace(goodKubeconfig, "    token: abc\n", user, 1)
}

func TestLoadCredentials(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "exec-ran")
	execUser := "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: [\"-c\", \"touch " + marker + "\"]\n"

	tests := []struct {
		name       string
		kubeconfig string
		policy     CredentialPolicy
		wantReason string // empty: accepted
		wantField  string
	}{
		{name: "token kubeconfig is accepted", kubeconfig: goodKubeconfig},
		{name: "exec plugin is rejected", kubeconfig: withUser(execUser),
			wantReason: fleetv1alpha1.ReasonExecNotAllowed, wantField: "users[u].user.exec"},
		{name: "exec plugin is accepted when the hub allows it", kubeconfig: withUser(execUser),
			policy: CredentialPolicy{AllowExec: true}},
		{name: "auth-provider is rejected", kubeconfig: withUser("    auth-provider:\n      name: oidc\n"),
			wantReason: fleetv1alpha1.ReasonAuthProviderNotAllowed, wantField: "users[u].user.auth-provider"},
		{name: "token file is rejected", kubeconfig: withUser("    tokenFile: /var/run/secrets/token\n"),
			wantReason: fleetv1alpha1.ReasonFileReferenceNotAllowed, wantField: "users[u].user.tokenFile"},
		{name: "client key path is rejected", kubeconfig: withUser("    client-certificate: /etc/c.crt\n"),
			wantReason: fleetv1alpha1.ReasonFileReferenceNotAllowed, wantField: "users[u].user.client-certificate"},
		{name: "CA path is rejected",
			kubeconfig: strings.Replace(goodKubeconfig, "certificate-authority-data: LS0", "certificate-authority: /etc/ca.crt\n    x: LS0", 1),
			wantReason: fleetv1alpha1.ReasonFileReferenceNotAllowed, wantField: "clusters[c].cluster.certificate-authority"},
		{name: "insecure TLS is rejected",
			kubeconfig: strings.Replace(goodKubeconfig, "    server:", "    insecure-skip-tls-verify: true\n    server:", 1),
			wantReason: fleetv1alpha1.ReasonInsecureNotAllowed, wantField: "clusters[c].cluster.insecure-skip-tls-verify"},
		{name: "garbage bytes are a clear error", kubeconfig: "\x00\x01garbage: [",
			wantReason: fleetv1alpha1.ReasonInvalidKubeconfig},
		{name: "empty kubeconfig", kubeconfig: "",
			wantReason: fleetv1alpha1.ReasonInvalidKubeconfig},
		{name: "missing current context",
			kubeconfig: strings.Replace(goodKubeconfig, "current-context: ctx", "current-context: nope", 1),
			wantReason: fleetv1alpha1.ReasonInvalidKubeconfig, wantField: "current-context"},
		{name: "context naming a missing cluster",
			kubeconfig: strings.Replace(goodKubeconfig, "{cluster: c,", "{cluster: other,", 1),
			wantReason: fleetv1alpha1.ReasonInvalidKubeconfig, wantField: "contexts[ctx].context.cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds, err := LoadCredentials([]byte(tt.kubeconfig), tt.policy)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
				if creds.Config.Host != "https://127.0.0.1:6443" || creds.Hash == "" {
					t.Errorf("got host %q hash %q", creds.Config.Host, creds.Hash)
				}
				return
			}
			ce, ok := AsCredentialError(err)
			if !ok {
				t.Fatalf("want a CredentialError with reason %s, got %v", tt.wantReason, err)
			}
			if ce.Reason != tt.wantReason || ce.Field != tt.wantField {
				t.Errorf("got reason %q field %q (%v), want reason %q field %q", ce.Reason, ce.Field, ce, tt.wantReason, tt.wantField)
			}
			if strings.Contains(ce.Error(), "abc") {
				t.Errorf("error message leaks the token: %q", ce.Error())
			}
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the exec plugin was run while loading the kubeconfig")
	}
}

func TestCredentialHashChangesWithContent(t *testing.T) {
	a, b := CredentialHash([]byte(goodKubeconfig)), CredentialHash([]byte(withUser("    token: other\n")))
	if a == b {
		t.Errorf("rotated token gives the same hash %s", a)
	}
	if a != CredentialHash([]byte(goodKubeconfig)) {
		t.Error("hash is not deterministic")
	}
}
