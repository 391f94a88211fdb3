package clusters

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// credentialMemo remembers, per member, the credentials last loaded and from which version
// of which kubeconfig Secret, so that the periodic reconcile of a member (its status
// heartbeat) reads and parses the Secret only when it changed: the hub's metadata cache of
// Secrets says which version is current without reading Secret data. It holds one entry per
// registered member and forgets a member when its connection goes.
type credentialMemo struct {
	mu sync.Mutex
	m  map[string]loadedCredentials
}

// loadedCredentials are credentials that passed the policy, and where they came from.
type loadedCredentials struct {
	secret          string // namespace/name/key
	resourceVersion string
	creds           *Credentials
}

func (c *credentialMemo) get(cluster, secret, resourceVersion string) *Credentials {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.m[cluster]
	if !ok || resourceVersion == "" || l.secret != secret || l.resourceVersion != resourceVersion {
		return nil
	}
	return l.creds
}

func (c *credentialMemo) put(cluster, secret, resourceVersion string, creds *Credentials) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]loadedCredentials{}
	}
	c.m[cluster] = loadedCredentials{secret: secret, resourceVersion: resourceVersion, creds: creds}
}

func (c *credentialMemo) forget(cluster string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, cluster)
}

// cachedSecretVersion is the resourceVersion of a Secret in the hub's metadata cache, or ""
// when the cache does not hold it (a namespace outside the registration scope, not synced).
func cachedSecretVersion(ctx context.Context, c client.Reader, key types.NamespacedName) string {
	secret := &metav1.PartialObjectMetadata{}
	secret.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := c.Get(ctx, key, secret); err != nil {
		return ""
	}
	return secret.ResourceVersion
}
