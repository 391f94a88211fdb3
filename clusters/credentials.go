package clusters

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	utilnet "k8s.io/apimachinery/pkg/util/net"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
	"github.com/flotilla-dev/flotilla/internal/membertoken"
)

// CredentialPolicy says which kinds of kubeconfig credentials the hub accepts. It is set by
// the hub administrator through controller flags only: a kubeconfig Secret can never loosen
// it, because whoever can write a Secret in the hub namespace could otherwise make the hub
// run a program (exec) or read its own files (tokenFile, client-key paths).
type CredentialPolicy struct {
	AllowExec           bool
	AllowAuthProvider   bool
	AllowFileReferences bool
	AllowInsecure       bool
	// AllowLoopback lets member servers live on the hub's own loopback (127.0.0.0/8, ::1):
	// for local fleets, tests and the demo only. Link-local and cloud metadata addresses,
	// plain http and proxy-url are never allowed (see endpoint.go).
	AllowLoopback bool
}

// CredentialError is a kubeconfig the policy rejects. Reason is a MemberCluster condition
// reason; Field names the offending kubeconfig field so a person knows what to change.
type CredentialError struct {
	Reason string
	Field  string
	Detail string
}

func (e *CredentialError) Error() string {
	if e.Field == "" {
		return e.Detail
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Detail)
}

// Credentials is a kubeconfig that passed the policy.
type Credentials struct {
	// Config connects to the member. It is never logged or copied into API objects.
	Config *rest.Config
	// Hash identifies the kubeconfig bytes; the connection changes only when it changes.
	Hash string
	// ConnectionHash identifies everything in the kubeconfig but a bearer token. When only
	// the token changed (the hub renewed it), a connected member takes the new token in
	// place instead of rebuilding its client and cache (see Connections.Ensure).
	ConnectionHash string
	// Host is the member's API server URL (safe to show).
	Host string
	// token carries the bearer token into Config's requests, nil when the user has none.
	token *bearerToken
}

// Claims are the claims of a short-lived ServiceAccount token in the kubeconfig; ok is false
// for credentials that do not expire (a legacy token, a client certificate).
func (c *Credentials) Claims() (membertoken.Claims, bool) {
	if c.token == nil {
		return membertoken.Claims{}, false
	}
	return membertoken.Parse(c.token.get())
}

// CredentialHash is the hash recorded in status.observedCredentialHash. Only a prefix of a
// SHA-256 is kept: enough to tell versions apart, useless to recover the content.
func CredentialHash(kubeconfig []byte) string {
	sum := sha256.Sum256(kubeconfig)
	return hex.EncodeToString(sum[:8])
}

// LoadCredentials parses a kubeconfig and checks it against the policy before anything in
// it is used: an exec plugin is rejected before it could run, a file reference before it
// could be read. Only the current context's cluster and user matter, since that is what
// the hub would use.
func LoadCredentials(kubeconfig []byte, policy CredentialPolicy) (*Credentials, error) {
	if len(kubeconfig) == 0 {
		return nil, &CredentialError{Reason: fleetv1alpha1.ReasonInvalidKubeconfig, Detail: "kubeconfig is empty"}
	}
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, &CredentialError{Reason: fleetv1alpha1.ReasonInvalidKubeconfig,
			Detail: fmt.Sprintf("kubeconfig does not parse: %v", err)}
	}
	ctxName := cfg.CurrentContext
	kctx, ok := cfg.Contexts[ctxName]
	switch {
	case ctxName == "" && len(cfg.Contexts) == 1:
		// A single context and no current-context is common in generated kubeconfigs.
		for name, c := range cfg.Contexts {
			ctxName, kctx = name, c
		}
	case ctxName == "":
		return nil, &CredentialError{Reason: fleetv1alpha1.ReasonInvalidKubeconfig, Field: "current-context",
			Detail: "not set and the kubeconfig has no single context to use"}
	case !ok:
		return nil, &CredentialError{Reason: fleetv1alpha1.ReasonInvalidKubeconfig, Field: "current-context",
			Detail: fmt.Sprintf("context %q does not exist", ctxName)}
	}
	cluster, ok := cfg.Clusters[kctx.Cluster]
	if !ok {
		return nil, &CredentialError{Reason: fleetv1alpha1.ReasonInvalidKubeconfig,
			Field: fmt.Sprintf("contexts[%s].context.cluster", ctxName), Detail: fmt.Sprintf("cluster %q does not exist", kctx.Cluster)}
	}
	user, ok := cfg.AuthInfos[kctx.AuthInfo]
	if !ok {
		if kctx.AuthInfo != "" {
			return nil, &CredentialError{Reason: fleetv1alpha1.ReasonInvalidKubeconfig,
				Field: fmt.Sprintf("contexts[%s].context.user", ctxName), Detail: fmt.Sprintf("user %q does not exist", kctx.AuthInfo)}
		}
		user = clientcmdapi.NewAuthInfo()
	}
	if err := checkPolicy(kctx.Cluster, cluster, kctx.AuthInfo, user, policy); err != nil {
		return nil, err
	}
	serverField := fmt.Sprintf("clusters[%s].cluster.server", kctx.Cluster)
	if cluster.Server == "" {
		return nil, &CredentialError{Reason: fleetv1alpha1.ReasonInvalidKubeconfig, Field: serverField, Detail: "is empty"}
	}
	if ce := checkServerURL(serverField, cluster.Server, policy); ce != nil {
		return nil, ce
	}

	if user.Exec != nil && user.Exec.InteractiveMode == "" {
		// A controller has no terminal: an allowed plugin must never wait for input.
		user.Exec.InteractiveMode = clientcmdapi.NeverExecInteractiveMode
	}

	// Only the selected context goes into the client config, so nothing the policy did not
	// look at can be used.
	minimal := clientcmdapi.NewConfig()
	minimal.Clusters[kctx.Cluster] = cluster
	minimal.AuthInfos[kctx.AuthInfo] = user
	minimal.Contexts[ctxName] = kctx
	minimal.CurrentContext = ctxName
	rc, err := clientcmd.NewDefaultClientConfig(*minimal, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, &CredentialError{Reason: fleetv1alpha1.ReasonInvalidKubeconfig, Detail: fmt.Sprintf("kubeconfig is unusable: %v", err)}
	}
	// Every connection made with these credentials goes through the endpoint policy's dialer.
	rc.Dial = guardedDialer(policy).DialContext
	creds := &Credentials{Config: rc, Hash: CredentialHash(kubeconfig), Host: cluster.Server}
	if user.Token != "" && rc.BearerTokenFile == "" {
		// The token travels through a holder that a renewal can update under a live connection.
		creds.token = newBearerToken(user.Token)
		rc.BearerToken = ""
		rc.WrapTransport = creds.token.wrap
	}
	tokenless := user.DeepCopy()
	tokenless.Token = ""
	minimal.AuthInfos[kctx.AuthInfo] = tokenless
	withoutToken, err := clientcmd.Write(*minimal)
	if err != nil {
		return nil, &CredentialError{Reason: fleetv1alpha1.ReasonInvalidKubeconfig, Detail: fmt.Sprintf("kubeconfig is unusable: %v", err)}
	}
	creds.ConnectionHash = CredentialHash(withoutToken)
	return creds, nil
}

// bearerToken is a member's bearer token, shared by every client of one connection, so that
// a renewed token is used from the next request on while the member cache keeps its watches.
type bearerToken struct{ v atomic.Pointer[string] }

func newBearerToken(token string) *bearerToken {
	b := &bearerToken{}
	b.set(token)
	return b
}

func (b *bearerToken) get() string    { return *b.v.Load() }
func (b *bearerToken) set(tok string) { b.v.Store(&tok) }
func (b *bearerToken) wrap(rt http.RoundTripper) http.RoundTripper {
	return &bearerRoundTripper{token: b, next: rt}
}

// bearerRoundTripper adds the current token to every request (as client-go's bearer round
// tripper does for a static token).
type bearerRoundTripper struct {
	token *bearerToken
	next  http.RoundTripper
}

func (rt *bearerRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") != "" {
		return rt.next.RoundTrip(req)
	}
	req = utilnet.CloneRequest(req)
	req.Header.Set("Authorization", "Bearer "+rt.token.get())
	return rt.next.RoundTrip(req)
}

func (rt *bearerRoundTripper) WrappedRoundTripper() http.RoundTripper { return rt.next }

func checkPolicy(clusterName string, cluster *clientcmdapi.Cluster, userName string, user *clientcmdapi.AuthInfo, p CredentialPolicy) error {
	userField := func(f string) string { return fmt.Sprintf("users[%s].user.%s", userName, f) }
	clusterField := func(f string) string { return fmt.Sprintf("clusters[%s].cluster.%s", clusterName, f) }
	if user.Exec != nil && !p.AllowExec {
		return &CredentialError{Reason: fleetv1alpha1.ReasonExecNotAllowed, Field: userField("exec"),
			Detail: "exec credential plugins are not allowed on this hub (controller flag --allow-exec-credentials)"}
	}
	if user.AuthProvider != nil && !p.AllowAuthProvider {
		return &CredentialError{Reason: fleetv1alpha1.ReasonAuthProviderNotAllowed, Field: userField("auth-provider"),
			Detail: "auth-provider plugins are not allowed on this hub (controller flag --allow-auth-provider-credentials)"}
	}
	if !p.AllowFileReferences {
		refs := []struct{ field, value string }{
			{userField("tokenFile"), user.TokenFile},
			{userField("client-certificate"), user.ClientCertificate},
			{userField("client-key"), user.ClientKey},
			{clusterField("certificate-authority"), cluster.CertificateAuthority},
		}
		for _, r := range refs {
			if r.value != "" {
				return &CredentialError{Reason: fleetv1alpha1.ReasonFileReferenceNotAllowed, Field: r.field,
					Detail: "references a file on the hub; embed the data instead (…-data fields) or allow it with --allow-file-references"}
			}
		}
	}
	if cluster.ProxyURL != "" {
		// Not a flag: a proxy chosen by whoever wrote the kubeconfig would receive the
		// member's token and pick the real destination, bypassing the endpoint policy.
		return &CredentialError{Reason: fleetv1alpha1.ReasonProxyNotAllowed, Field: clusterField("proxy-url"),
			Detail: "the hub never connects through a proxy named in a kubeconfig; remove proxy-url (a hub-wide proxy is set with HTTPS_PROXY on the controller)"}
	}
	if cluster.InsecureSkipTLSVerify && !p.AllowInsecure {
		return &CredentialError{Reason: fleetv1alpha1.ReasonInsecureNotAllowed, Field: clusterField("insecure-skip-tls-verify"),
			Detail: "TLS verification cannot be turned off on this hub (controller flag --allow-insecure-tls)"}
	}
	return nil
}

// AsCredentialError returns the CredentialError in err's chain, if any.
func AsCredentialError(err error) (*CredentialError, bool) {
	var ce *CredentialError
	ok := errors.As(err, &ce)
	return ce, ok
}
