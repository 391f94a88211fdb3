package clusters

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/membertoken"
)

// A renewal changes the kubeconfig's token only; the connection must see that it can keep
// everything else, and must notice any other change.
func TestConnectionHashIgnoresTheTokenOnly(t *testing.T) {
	load := func(kubeconfig string) *Credentials {
		t.Helper()
		creds, err := LoadCredentials([]byte(kubeconfig), CredentialPolicy{})
		must(t, err)
		return creds
	}
	base := load(goodKubeconfig)
	renewed := load(withUser("    token: renewed\n"))
	moved := load(strings.Replace(goodKubeconfig, "member.example.com", "other.example.com", 1))
	if renewed.Hash == base.Hash || renewed.ConnectionHash != base.ConnectionHash {
		t.Errorf("new token only: Hash %s→%s, ConnectionHash %s→%s; want a new Hash and the same ConnectionHash",
			base.Hash, renewed.Hash, base.ConnectionHash, renewed.ConnectionHash)
	}
	if moved.ConnectionHash == base.ConnectionHash {
		t.Error("another server, same token: ConnectionHash unchanged, want a new one")
	}
}

// The token holder is what every client of a connection sends: replacing its value changes
// the next request's Authorization header, and a header set by the caller is kept.
func TestBearerTokenIsSentFromTheHolder(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	b := newBearerToken("first")
	cfg := &rest.Config{Host: srv.URL, WrapTransport: b.wrap}
	client, err := rest.HTTPClientFor(cfg)
	must(t, err)
	get := func(header string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := client.Do(req)
		must(t, err)
		resp.Body.Close()
	}
	get("")
	b.set("second")
	get("")
	get("Bearer explicit")
	want := []string{"Bearer first", "Bearer second", "Bearer explicit"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Authorization headers = %q, want %q", got, want)
	}
}

func TestTokenExpiredSaysHowToFixIt(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	claims := membertoken.Claims{IssuedAt: now.Add(-time.Hour), Expiry: now.Add(-time.Minute)}
	mc := memberCluster("eu-1", "eu-1-kubeconfig")
	mc.Labels = map[string]string{fleetv1alpha1.LabelRegistration: fleetv1alpha1.RegistrationFleetctl}

	ce := tokenExpired(mc, claims, now)
	if ce == nil || ce.Reason != fleetv1alpha1.ReasonTokenExpired {
		t.Fatalf("tokenExpired = %+v, want reason TokenExpired", ce)
	}
	for _, want := range []string{"expired at " + claims.Expiry.UTC().Format(time.RFC3339), "fleetctl rotate-credentials eu-1 --member-kubeconfig"} {
		if !strings.Contains(ce.Detail, want) {
			t.Errorf("message %q lacks %q", ce.Detail, want)
		}
	}
	mc.Labels = nil // hand-made: no fleetctl command applies
	if ce := tokenExpired(mc, claims, now); ce == nil || strings.Contains(ce.Detail, "fleetctl") {
		t.Errorf("hand-registered member: got %+v, want TokenExpired without a fleetctl command", ce)
	}
	if ce := tokenExpired(mc, claims, claims.Expiry.Add(-time.Second)); ce != nil {
		t.Errorf("a token one second before expiry: got %+v, want nil", ce)
	}
}

func TestRenewRetryIsBounded(t *testing.T) {
	for _, tc := range []struct{ remaining, want time.Duration }{
		{30 * time.Minute, time.Minute},
		{5 * time.Minute, 30 * time.Second},
		{20 * time.Second, 5 * time.Second},
	} {
		if got := renewRetry(tc.remaining); got != tc.want {
			t.Errorf("renewRetry(%s) = %s, want %s", tc.remaining, got, tc.want)
		}
	}
}
