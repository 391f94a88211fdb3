package membertoken

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// jwt is a token with the given claims, signed by nobody.
func jwt(t *testing.T, claims map[string]any) string {
	t.Helper()
	body, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(body) + "." + enc([]byte("not-a-signature"))
}

func TestParse(t *testing.T) {
	iat, exp := int64(1_800_000_000), int64(1_800_003_600)
	k8s := map[string]any{"namespace": "flotilla-system", "serviceaccount": map[string]any{"name": "flotilla-hub", "uid": "u-1"}}
	cases := []struct {
		name   string
		token  string
		want   Claims
		wantOK bool
	}{
		{"short-lived token", jwt(t, map[string]any{"iat": iat, "exp": exp, "jti": "j-1", "kubernetes.io": k8s}),
			Claims{IssuedAt: time.Unix(iat, 0), Expiry: time.Unix(exp, 0), Namespace: "flotilla-system", ServiceAccount: "flotilla-hub", UID: "u-1", ID: "j-1"}, true},
		{"service account only in sub", jwt(t, map[string]any{"iat": iat, "exp": exp, "sub": "system:serviceaccount:ns:sa"}),
			Claims{IssuedAt: time.Unix(iat, 0), Expiry: time.Unix(exp, 0), Namespace: "ns", ServiceAccount: "sa"}, true},
		{"legacy token without exp", jwt(t, map[string]any{"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:ns:sa"}), Claims{}, false},
		{"no iat", jwt(t, map[string]any{"exp": exp, "kubernetes.io": k8s}), Claims{}, false},
		{"exp before iat", jwt(t, map[string]any{"iat": exp, "exp": iat, "kubernetes.io": k8s}), Claims{}, false},
		{"not a service account", jwt(t, map[string]any{"iat": iat, "exp": exp, "sub": "alice"}), Claims{}, false},
		{"opaque token", "abcdef0123456789", Claims{}, false},
		{"three parts, payload not base64", "a.!!!.c", Claims{}, false},
		{"payload not JSON", "a." + base64.RawURLEncoding.EncodeToString([]byte("nope")) + ".c", Claims{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Parse(tc.token)
			if ok != tc.wantOK {
				t.Fatalf("Parse ok = %v, want %v", ok, tc.wantOK)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse claims (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenewAt(t *testing.T) {
	c := Claims{IssuedAt: time.Unix(1000, 0), Expiry: time.Unix(1000+3600, 0)}
	if got, want := c.RenewAt(0.5), time.Unix(1000+1800, 0); !got.Equal(want) {
		t.Errorf("RenewAt(0.5) = %s, want %s", got, want)
	}
}

func TestReplaceKeepsEverythingButTheToken(t *testing.T) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["m"] = &clientcmdapi.Cluster{Server: "https://m.example:6443", CertificateAuthorityData: []byte("ca")}
	cfg.AuthInfos["hub"] = &clientcmdapi.AuthInfo{Token: "old"}
	cfg.AuthInfos["other"] = &clientcmdapi.AuthInfo{Token: "other-token"}
	cfg.Contexts["m"] = &clientcmdapi.Context{Cluster: "m", AuthInfo: "hub"}
	cfg.CurrentContext = "m"
	in, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Replace(in, "new")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := FromKubeconfig(out); err != nil || got != "new" {
		t.Errorf("token after Replace = %q, %v; want new", got, err)
	}
	cfg.AuthInfos["hub"].Token = "new"
	want, _ := clientcmd.Write(*cfg)
	if diff := cmp.Diff(string(want), string(out)); diff != "" {
		t.Errorf("Replace changed more than the token (-want +got):\n%s", diff)
	}

	cfg.AuthInfos["hub"] = &clientcmdapi.AuthInfo{ClientCertificateData: []byte("cert")}
	noToken, _ := clientcmd.Write(*cfg)
	if _, err := Replace(noToken, "new"); !errors.Is(err, ErrNoToken) {
		t.Errorf("Replace on a certificate user: got %v, want ErrNoToken", err)
	}
}
