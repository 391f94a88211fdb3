package clusters

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// TestProbeClassifiesHostileAnswers probes real servers on loopback that answer as a
// hostile or internal endpoint would; the probe's reason is classified and its message
// never quotes the answer.
func TestProbeClassifiesHostileAnswers(t *testing.T) {
	answer := func(code int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body + strings.Repeat(secretMarker, 50)))
		}
	}
	serve := func(h http.HandlerFunc) []byte {
		s := newCountingServer(t, true, h)
		return kubeconfigFor(t, s.URL, s.Server, nil)
	}
	other := newCountingServer(t, true, answer(200, "{}"))
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	closedURL := "https://" + closed.Addr().String()
	closed.Close()

	tests := []struct {
		name       string
		kubeconfig []byte
		policy     CredentialPolicy
		wantReason string
	}{
		{"500 with a body", serve(answer(500, "stack trace: ")), CredentialPolicy{AllowLoopback: true}, fleetv1alpha1.ReasonServerError},
		{"502", serve(answer(502, "")), CredentialPolicy{AllowLoopback: true}, fleetv1alpha1.ReasonServerError},
		{"401", serve(answer(401, "")), CredentialPolicy{AllowLoopback: true}, fleetv1alpha1.ReasonUnauthorized},
		{"403", serve(answer(403, "")), CredentialPolicy{AllowLoopback: true}, fleetv1alpha1.ReasonForbidden},
		{"429 shedding load", serve(answer(429, "")), CredentialPolicy{AllowLoopback: true}, fleetv1alpha1.ReasonServerError},
		{"html", serve(answer(200, "<html>")), CredentialPolicy{AllowLoopback: true}, fleetv1alpha1.ReasonNotKubernetes},
		{"json that is no version", serve(answer(200, `{"gitVersion":"`)), CredentialPolicy{AllowLoopback: true}, fleetv1alpha1.ReasonNotKubernetes},
		{"redirect elsewhere", serve(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://169.254.169.254/latest/meta-data/", http.StatusFound)
		}), CredentialPolicy{AllowLoopback: true}, fleetv1alpha1.ReasonEndpointNotAllowed},
		// No CA in the kubeconfig: the system roots do not know the test server's.
		{"untrusted certificate", kubeconfigFor(t, other.URL, nil, nil), CredentialPolicy{AllowLoopback: true}, fleetv1alpha1.ReasonTLSError},
		{"nothing listening", kubeconfigFor(t, closedURL, other.Server, nil), CredentialPolicy{AllowLoopback: true}, fleetv1alpha1.ReasonConnectionRefused},
		{"loopback refused by the dialer", kubeconfigFor(t, "https://localhost:"+port(t, other.URL), other.Server, nil), CredentialPolicy{}, fleetv1alpha1.ReasonEndpointNotAllowed},
	}
	scheme := runtime.NewScheme()
	must(t, clientgoscheme.AddToScheme(scheme))
	conns := NewConnections(scheme, fastProbes)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds, err := LoadCredentials(tt.kubeconfig, tt.policy)
			must(t, err)
			m, err := newMember(conns.memberConfig(), "hostile", creds)
			must(t, err)
			_, _, err = m.probe(context.Background())
			if err == nil {
				t.Fatal("probe succeeded")
			}
			reason, msg := classifyProbeError(err, fastProbes.ProbeTimeout)
			if diff := cmp.Diff(tt.wantReason, reason); diff != "" {
				t.Errorf("reason (-want +got):\n%s\nmessage %q, error %v", diff, msg, err)
			}
			if strings.Contains(msg, secretMarker) || len(msg) > 200 {
				t.Errorf("message quotes the server's answer: %q", msg)
			}
		})
	}
}

func port(t *testing.T, rawURL string) string {
	_, p, err := net.SplitHostPort(strings.TrimPrefix(rawURL, "https://"))
	must(t, err)
	return p
}

// TestVersionProbe: the probe's pre-built request keeps the path of a server behind a proxy
// and carries the member's token and the controller's user agent, as the REST client's
// requests did; an answer that changes is parsed again, not served from the last one.
func TestVersionProbe(t *testing.T) {
	var gitVersion atomic.Value
	gitVersion.Store("v1.37.2")
	var badRequests atomic.Int32
	s := newCountingServer(t, true, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/k8s/clusters/c-1/version" || r.Header.Get("Authorization") != "Bearer member-token" ||
			r.Header.Get("User-Agent") != "fleet-controller" {
			badRequests.Add(1)
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_, _ = fmt.Fprintf(w, `{"major":"1","minor":"37","gitVersion":%q}`, gitVersion.Load())
	})
	creds, err := LoadCredentials(kubeconfigFor(t, s.URL+"/k8s/clusters/c-1", s.Server, nil), CredentialPolicy{AllowLoopback: true})
	must(t, err)
	scheme := runtime.NewScheme()
	must(t, clientgoscheme.AddToScheme(scheme))
	m, err := newMember(NewConnections(scheme, fastProbes).memberConfig(), "proxied", creds)
	must(t, err)
	for _, want := range []string{"v1.37.2", "v1.37.2", "v1.38.0"} {
		gitVersion.Store(want)
		got, err := m.version.get(context.Background())
		if err != nil {
			t.Fatalf("probe: %v (%d requests the server did not expect)", err, badRequests.Load())
		}
		if got != want {
			t.Errorf("version = %q, want %q", got, want)
		}
	}
}
