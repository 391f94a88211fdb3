// Package membertoken reads and replaces the ServiceAccount token in a member kubeconfig, for
// the two programs that handle the hub's member credentials: fleet-controller renews
// short-lived tokens and reports expired ones, and fleetctl issues and rotates them.
//
// Claims are read without verifying the token's signature. That is sound only for what they
// are used for here: deciding *when* to renew a token the hub already holds and is about to
// present to the member that issued it, and naming the ServiceAccount to renew it for. The
// member's API server verifies every token; nothing here grants access on a claim's word.
//
// It must not log, store or return a token anywhere but to its caller.
package membertoken

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Claims are the parts of a ServiceAccount token that decide its renewal.
type Claims struct {
	// IssuedAt and Expiry come from iat and exp. A token without exp (a legacy token from a
	// ServiceAccount token Secret) has no Claims: it never expires and is never renewed.
	IssuedAt, Expiry time.Time
	// Namespace, ServiceAccount and UID name the ServiceAccount the token is for.
	Namespace, ServiceAccount, UID string
	// ID is the token's jti: API servers name it in audit logs (credential-id "JTI=<ID>").
	ID string
}

// Lifetime is how long the token was issued for.
func (c Claims) Lifetime() time.Duration { return c.Expiry.Sub(c.IssuedAt) }

// RenewAt is the moment a token should be renewed: after fraction of its lifetime.
func (c Claims) RenewAt(fraction float64) time.Time {
	return c.IssuedAt.Add(time.Duration(float64(c.Lifetime()) * fraction))
}

// payload is the JSON of a ServiceAccount token's claims (k8s.io/apiserver's serviceaccount
// private claims under "kubernetes.io").
type payload struct {
	Exp     *int64 `json:"exp"`
	Iat     *int64 `json:"iat"`
	Subject string `json:"sub"`
	ID      string `json:"jti"`
	K8s     struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io"`
}

// serviceAccountPrefix starts the sub claim of a ServiceAccount token.
const serviceAccountPrefix = "system:serviceaccount:"

// Parse returns the claims of a short-lived ServiceAccount token. ok is false for anything
// else: not a JWT, no exp or iat, no ServiceAccount named — a token to be left alone.
func Parse(token string) (c Claims, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return Claims{}, false
	}
	var p payload
	if err := json.Unmarshal(raw, &p); err != nil || p.Exp == nil || p.Iat == nil || *p.Exp <= *p.Iat {
		return Claims{}, false
	}
	c = Claims{IssuedAt: time.Unix(*p.Iat, 0), Expiry: time.Unix(*p.Exp, 0),
		Namespace: p.K8s.Namespace, ServiceAccount: p.K8s.ServiceAccount.Name, UID: p.K8s.ServiceAccount.UID, ID: p.ID}
	if c.Namespace == "" || c.ServiceAccount == "" {
		// Older issuers put the ServiceAccount only in sub.
		ns, name, found := strings.Cut(strings.TrimPrefix(p.Subject, serviceAccountPrefix), ":")
		if !strings.HasPrefix(p.Subject, serviceAccountPrefix) || !found || ns == "" || name == "" {
			return Claims{}, false
		}
		c.Namespace, c.ServiceAccount = ns, name
	}
	return c, true
}

// ErrNoToken is a kubeconfig whose current user authenticates without a bearer token.
var ErrNoToken = errors.New("the kubeconfig's user has no token")

// FromKubeconfig returns the bearer token of the kubeconfig's current context (or of its only
// context, the way fleet-controller picks it).
func FromKubeconfig(kubeconfig []byte) (string, error) {
	_, user, err := currentUser(kubeconfig)
	if err != nil {
		return "", err
	}
	if user.Token == "" {
		return "", ErrNoToken
	}
	return user.Token, nil
}

// Replace returns the kubeconfig with the current user's token replaced, everything else as
// it was (clientcmd's serialization, as fleetctl writes it).
func Replace(kubeconfig []byte, token string) ([]byte, error) {
	cfg, user, err := currentUser(kubeconfig)
	if err != nil {
		return nil, err
	}
	if user.Token == "" {
		return nil, ErrNoToken
	}
	user.Token = token
	return clientcmd.Write(*cfg)
}

func currentUser(kubeconfig []byte) (*clientcmdapi.Config, *clientcmdapi.AuthInfo, error) {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("kubeconfig does not parse: %w", err)
	}
	name := cfg.CurrentContext
	if name == "" && len(cfg.Contexts) == 1 {
		for n := range cfg.Contexts {
			name = n
		}
	}
	kctx, ok := cfg.Contexts[name]
	if !ok {
		return nil, nil, fmt.Errorf("kubeconfig has no current context")
	}
	user, ok := cfg.AuthInfos[kctx.AuthInfo]
	if !ok {
		return nil, nil, fmt.Errorf("kubeconfig context %q names no existing user", name)
	}
	return cfg, user, nil
}
