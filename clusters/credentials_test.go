package clusters

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

const goodKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://member.example.com:6443
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
		// The member endpoint policy, as someone who can write a kubeconfig would try it.
		{name: "plain http is refused", kubeconfig: withServer("http://member.example.com:6443"),
			wantReason: fleetv1alpha1.ReasonHTTPNotAllowed, wantField: serverField},
		{name: "proxy-url is refused", kubeconfig: strings.Replace(goodKubeconfig, "    server:", "    proxy-url: http://proxy.example.com:3128\n    server:", 1),
			wantReason: fleetv1alpha1.ReasonProxyNotAllowed, wantField: "clusters[c].cluster.proxy-url"},
		{name: "cloud metadata address is refused", kubeconfig: withServer("https://169.254.169.254"),
			wantReason: fleetv1alpha1.ReasonEndpointNotAllowed, wantField: serverField},
		{name: "any link-local address is refused", kubeconfig: withServer("https://169.254.10.1:6443"),
			wantReason: fleetv1alpha1.ReasonEndpointNotAllowed, wantField: serverField},
		{name: "IPv4-mapped metadata address is refused", kubeconfig: withServer("https://[::ffff:169.254.169.254]:443"),
			wantReason: fleetv1alpha1.ReasonEndpointNotAllowed, wantField: serverField},
		{name: "AWS IPv6 metadata address is refused", kubeconfig: withServer("https://[fd00:ec2::254]"),
			wantReason: fleetv1alpha1.ReasonEndpointNotAllowed, wantField: serverField},
		{name: "IPv6 link-local is refused", kubeconfig: withServer("https://[fe80::1]:6443"),
			wantReason: fleetv1alpha1.ReasonEndpointNotAllowed, wantField: serverField},
		{name: "loopback is refused by default", kubeconfig: withServer("https://127.0.0.1:6443"),
			wantReason: fleetv1alpha1.ReasonEndpointNotAllowed, wantField: serverField},
		{name: "IPv6 loopback is refused by default", kubeconfig: withServer("https://[::1]:6443"),
			wantReason: fleetv1alpha1.ReasonEndpointNotAllowed, wantField: serverField},
		{name: "unspecified address (reaches the hub itself) is refused", kubeconfig: withServer("https://0.0.0.0:6443"),
			wantReason: fleetv1alpha1.ReasonEndpointNotAllowed, wantField: serverField},
		{name: "loopback is accepted when the hub allows it", kubeconfig: withServer("https://127.0.0.1:6443"),
			policy: CredentialPolicy{AllowLoopback: true}},
		{name: "allowing loopback does not allow metadata", kubeconfig: withServer("https://169.254.169.254"),
			policy:     CredentialPolicy{AllowLoopback: true, AllowInsecure: true, AllowExec: true, AllowAuthProvider: true, AllowFileReferences: true},
			wantReason: fleetv1alpha1.ReasonEndpointNotAllowed, wantField: serverField},
		{name: "private network address is accepted", kubeconfig: withServer("https://10.0.0.7:6443")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds, err := LoadCredentials([]byte(tt.kubeconfig), tt.policy)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
				if creds.Config.Host != wantHost(tt.kubeconfig) || creds.Hash == "" {
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

const serverField = "clusters[c].cluster.server"

// withServer replaces the server URL of goodKubeconfig.
func withServer(server string) string {
	return strings.Replace(goodKubeconfig, "https://member.example.com:6443", server, 1)
}

// wantHost is the server URL in a kubeconfig built from goodKubeconfig.
func wantHost(kubeconfig string) string {
	i := strings.Index(kubeconfig, "server: ") + len("server: ")
	return kubeconfig[i : i+strings.Index(kubeconfig[i:], "\n")]
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

// fakeResolver answers host name lookups from a table, as a DNS server an attacker
// controls would.
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	addrs, ok := f[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

func TestCheckEndpointResolvesEveryAddress(t *testing.T) {
	dns := fakeResolver{
		"member.example.com":   {"10.0.0.7", "2001:db8::7"},
		"metadata.example.com": {"169.254.169.254"},
		"mixed.example.com":    {"10.0.0.7", "169.254.169.254"}, // one bad address is enough
		"imds6.example.com":    {"fd00:ec2::254"},
		"localhost":            {"127.0.0.1", "::1"},
	}
	tests := []struct {
		name       string
		server     string
		policy     CredentialPolicy
		wantReason string
	}{
		{name: "public name", server: "https://member.example.com:6443"},
		{name: "name of the metadata service", server: "https://metadata.example.com", wantReason: fleetv1alpha1.ReasonEndpointNotAllowed},
		{name: "name with one link-local address among others", server: "https://mixed.example.com", wantReason: fleetv1alpha1.ReasonEndpointNotAllowed},
		{name: "name of the IPv6 metadata address", server: "https://imds6.example.com", wantReason: fleetv1alpha1.ReasonEndpointNotAllowed},
		{name: "localhost by default", server: "https://localhost:6443", wantReason: fleetv1alpha1.ReasonEndpointNotAllowed},
		{name: "localhost when allowed", server: "https://localhost:6443", policy: CredentialPolicy{AllowLoopback: true}},
		{name: "unresolvable name is left to the probe", server: "https://nowhere.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ce := CheckEndpoint(context.Background(), dns, tt.server, tt.policy)
			got := ""
			if ce != nil {
				got = ce.Reason
			}
			if diff := cmp.Diff(tt.wantReason, got); diff != "" {
				t.Errorf("reason (-want +got):\n%s (%v)", diff, ce)
			}
		})
	}
}

// TestGuardedDialerRefusesBeforeConnecting: a refused address is never contacted, whatever
// a host name resolves to when the connection is made.
func TestGuardedDialerRefusesBeforeConnecting(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()

	ctx := context.Background()
	if _, err := guardedDialer(CredentialPolicy{}).DialContext(ctx, "tcp", l.Addr().String()); !isRefused(err) {
		t.Fatalf("dial loopback without --allow-loopback-members: got %v, want the endpoint policy's refusal", err)
	}
	start := time.Now()
	if _, err := guardedDialer(CredentialPolicy{AllowLoopback: true}).DialContext(ctx, "tcp", "169.254.169.254:80"); !isRefused(err) {
		t.Fatalf("dial 169.254.169.254: got %v, want the endpoint policy's refusal", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing 169.254.169.254 took %s: a connection was attempted", d)
	}
	c, err := guardedDialer(CredentialPolicy{AllowLoopback: true}).DialContext(ctx, "tcp", l.Addr().String())
	must(t, err)
	c.Close()
	<-accepted // the allowed dial is the only connection the listener ever saw
	select {
	case <-accepted:
		t.Error("the listener accepted a connection the endpoint policy refused")
	default:
	}
}

func isRefused(err error) bool {
	var r *endpointRefusedError
	return errors.As(err, &r)
}

// FuzzLoadCredentials: whatever the kubeconfig, LoadCredentials does not panic, and what it
// accepts under the default policy is an https server at an address the policy allows,
// without proxy, exec, auth-provider or file references.
func FuzzLoadCredentials(f *testing.F) {
	f.Add(goodKubeconfig)
	f.Add(withServer("http://member.example.com"))
	f.Add(withServer("https://[::ffff:169.254.169.254]"))
	f.Add(withServer("HTTPS://127.0.0.1"))
	f.Add(strings.Replace(goodKubeconfig, "    server:", "    proxy-url: socks5://x\n    server:", 1))
	f.Fuzz(func(t *testing.T, kubeconfig string) {
		creds, err := LoadCredentials([]byte(kubeconfig), CredentialPolicy{})
		if err != nil {
			return
		}
		u, perr := url.Parse(creds.Host)
		if perr != nil || u.Scheme != "https" {
			t.Fatalf("accepted server %q", creds.Host)
		}
		if addr, aerr := netip.ParseAddr(u.Hostname()); aerr == nil && addressNotAllowed(addr, CredentialPolicy{}) != "" {
			t.Fatalf("accepted refused address %q", creds.Host)
		}
		if creds.Config.Proxy != nil || creds.Config.ExecProvider != nil || creds.Config.AuthProvider != nil ||
			creds.Config.BearerTokenFile != "" || creds.Config.CertFile != "" || creds.Config.KeyFile != "" || creds.Config.CAFile != "" {
			t.Fatalf("accepted a kubeconfig the policy forbids: %q", kubeconfig)
		}
	})
}
