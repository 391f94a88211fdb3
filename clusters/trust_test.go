package clusters

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// Tests of the hub's trust boundaries, written as an attacker would try them: someone who
// can write a kubeconfig or a MemberCluster, or a hostile server at a member's address.
// Each asserts that nothing was sent or reflected, not only that a condition appears.

// secretMarker is what a hostile or internal server answers; it must never reach status.
const secretMarker = "SECRET-internal-answer-4f1c"

// countingServer is a server on loopback that counts the requests it receives.
type countingServer struct {
	*httptest.Server
	requests atomic.Int64
}

func newCountingServer(t *testing.T, tlsOn bool, h http.HandlerFunc) *countingServer {
	t.Helper()
	s := &countingServer{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	})
	if tlsOn {
		s.Server = httptest.NewTLSServer(handler)
	} else {
		s.Server = httptest.NewServer(handler)
	}
	t.Cleanup(s.Close)
	return s
}

// kubeconfigFor is a token kubeconfig for server, trusting the CA of tlsServer when given.
func kubeconfigFor(t *testing.T, server string, tlsServer *httptest.Server, edit func(*clientcmdapi.Cluster)) []byte {
	t.Helper()
	cluster := clientcmdapi.NewCluster()
	cluster.Server = server
	if tlsServer != nil {
		cluster.CertificateAuthorityData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsServer.Certificate().Raw})
	}
	if edit != nil {
		edit(cluster)
	}
	user := clientcmdapi.NewAuthInfo()
	user.Token = "member-token"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["m"], cfg.AuthInfos["u"] = cluster, user
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "m", AuthInfo: "u"}
	cfg.CurrentContext = "c"
	data, err := clientcmd.Write(*cfg)
	must(t, err)
	return data
}

// register creates a kubeconfig Secret in namespace ns and a MemberCluster referencing it.
func (r *registry) register(t *testing.T, name, ns string, kubeconfig []byte) {
	t.Helper()
	ctx := context.Background()
	secret := kubeconfigSecret(name+"-kubeconfig", kubeconfig, nil, nil)
	secret.Namespace = ns
	must(t, r.hub.Create(ctx, secret))
	mc := memberCluster(name, name+"-kubeconfig")
	mc.Spec.KubeconfigSecretRef.Namespace = ns
	must(t, r.hub.Create(ctx, mc))
}

// statusLeaks fails the test if any part of the MemberCluster's status quotes marker.
func (r *registry) statusLeaks(t *testing.T, name, marker string) {
	t.Helper()
	mc := &fleetv1alpha1.MemberCluster{}
	must(t, r.hub.Get(context.Background(), client.ObjectKey{Name: name}, mc))
	data, err := json.Marshal(mc.Status)
	must(t, err)
	if strings.Contains(string(data), marker) {
		t.Errorf("status of %s reflects the server's answer: %s", name, data)
	}
}

func TestHostileMemberServersGetAClassifiedReason(t *testing.T) {
	r := startRegistry(t, 1, fastProbes)
	answer := func(code int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body + " " + strings.Repeat(secretMarker, 50)))
		}
	}
	untrusted := newCountingServer(t, true, answer(200, "{}"))
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	closedAddr := closed.Addr().String()
	closed.Close()

	cases := []struct {
		name       string
		kubeconfig []byte
		wantReason string
	}{
		{"internal-500", r.tlsKubeconfig(t, answer(500, "internal error:")), fleetv1alpha1.ReasonServerError},
		{"internal-503", r.tlsKubeconfig(t, answer(503, "unavailable:")), fleetv1alpha1.ReasonServerError},
		{"unauthorized", r.tlsKubeconfig(t, answer(401, "who are you:")), fleetv1alpha1.ReasonUnauthorized},
		{"forbidden", r.tlsKubeconfig(t, answer(403, "no:")), fleetv1alpha1.ReasonForbidden},
		{"html-page", r.tlsKubeconfig(t, answer(200, "<html>admin console")), fleetv1alpha1.ReasonNotKubernetes},
		{"not-found", r.tlsKubeconfig(t, answer(404, "nothing here:")), fleetv1alpha1.ReasonNotKubernetes},
		// The kubeconfig trusts another CA than the server's.
		{"wrong-ca", kubeconfigFor(t, untrusted.URL, nil, func(c *clientcmdapi.Cluster) {
			c.CertificateAuthorityData = r.fleet.Members[0].Config.CAData
		}), fleetv1alpha1.ReasonTLSError},
		{"refused", kubeconfigFor(t, "https://"+closedAddr, untrusted.Server, nil), fleetv1alpha1.ReasonConnectionRefused},
	}
	for _, tc := range cases {
		r.register(t, tc.name, hubNS, tc.kubeconfig)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r.waitCondition(t, tc.name, fleetv1alpha1.ConditionConnected, metav1.ConditionFalse, tc.wantReason, 30*time.Second)
			r.waitCondition(t, tc.name, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, fleetv1alpha1.ReasonNotConnected, 10*time.Second)
			r.statusLeaks(t, tc.name, secretMarker)
		})
	}
}

// tlsKubeconfig starts an https server on loopback answering with h and returns a
// kubeconfig that trusts it.
func (r *registry) tlsKubeconfig(t *testing.T, h http.HandlerFunc) []byte {
	s := newCountingServer(t, true, h)
	return kubeconfigFor(t, s.URL, s.Server, nil)
}

func TestRefusedEndpointsAreNeverContacted(t *testing.T) {
	r := startRegistry(t, 1, fastProbes)
	ctx := context.Background()
	internal := newCountingServer(t, true, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(secretMarker)) })
	plain := newCountingServer(t, false, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(secretMarker)) })
	proxy := newCountingServer(t, false, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(secretMarker)) })
	must(t, r.hub.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenant"}}))

	cases := []struct {
		name, namespace string
		kubeconfig      []byte
		wantReason      string
	}{
		{"plain-http", hubNS, kubeconfigFor(t, plain.URL, nil, nil), fleetv1alpha1.ReasonHTTPNotAllowed},
		{"via-proxy", hubNS, kubeconfigFor(t, internal.URL, internal.Server, func(c *clientcmdapi.Cluster) { c.ProxyURL = proxy.URL }),
			fleetv1alpha1.ReasonProxyNotAllowed},
		{"metadata", hubNS, kubeconfigFor(t, "https://169.254.169.254", nil, nil), fleetv1alpha1.ReasonEndpointNotAllowed},
		{"metadata-v6", hubNS, kubeconfigFor(t, "https://[fd00:ec2::254]:443", nil, nil), fleetv1alpha1.ReasonEndpointNotAllowed},
		// A tenant's MemberCluster pointing at a kubeconfig outside the hub namespace.
		{"other-namespace", "tenant", kubeconfigFor(t, internal.URL, internal.Server, nil), fleetv1alpha1.ReasonSecretNamespaceNotAllowed},
	}
	for _, tc := range cases {
		r.register(t, tc.name, tc.namespace, tc.kubeconfig)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mc := r.waitCondition(t, tc.name, fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionFalse, tc.wantReason, 20*time.Second)
			r.waitCondition(t, tc.name, fleetv1alpha1.ConditionReady, metav1.ConditionFalse, tc.wantReason, 10*time.Second)
			if _, ok := r.conns.Health(tc.name); ok {
				t.Errorf("the hub holds a connection to %s", tc.name)
			}
			if tc.wantReason == fleetv1alpha1.ReasonSecretNamespaceNotAllowed {
				msg := mc.Status.Conditions[0].Message
				for _, c := range mc.Status.Conditions {
					if c.Type == fleetv1alpha1.ConditionCredentialsValid {
						msg = c.Message
					}
				}
				if !strings.Contains(msg, `namespace "`+hubNS+`"`) || !strings.Contains(msg, "was not read") {
					t.Errorf("message %q does not say which namespaces are allowed", msg)
				}
			}
		})
	}
	for name, s := range map[string]*countingServer{"internal https server": internal, "plain http server": plain, "proxy": proxy} {
		if n := s.requests.Load(); n != 0 {
			t.Errorf("the %s received %d requests from the hub, want none", name, n)
		}
	}
}

func TestLoopbackMembersOnlyWhenAllowed(t *testing.T) {
	fleet := startFleet(t, 1)
	r, _ := runRegistryWith(t, fleet, SetupOptions{Connections: fastProbes}) // the hub's defaults
	byName := newCountingServer(t, true, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(secretMarker)) })
	_, port, err := net.SplitHostPort(byName.Listener.Addr().String())
	must(t, err)

	r.register(t, "by-address", hubNS, r.fleet.Members[0].Kubeconfig())
	// A host name that resolves to loopback is refused as the address is.
	r.register(t, "by-name", hubNS, kubeconfigFor(t, "https://localhost:"+port, byName.Server, func(c *clientcmdapi.Cluster) {
		c.TLSServerName = "127.0.0.1"
	}))
	for _, name := range []string{"by-address", "by-name"} {
		r.waitCondition(t, name, fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionFalse, fleetv1alpha1.ReasonEndpointNotAllowed, 20*time.Second)
		if _, ok := r.conns.Health(name); ok {
			t.Errorf("the hub holds a connection to %s", name)
		}
	}
	if n := byName.requests.Load(); n != 0 {
		t.Errorf("the server behind localhost received %d requests, want none", n)
	}
}
