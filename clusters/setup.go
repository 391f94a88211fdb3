package clusters

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/flotilla-dev/flotilla/internal/status"
)

// SetupOptions configure the cluster registry.
type SetupOptions struct {
	// HubNamespace holds kubeconfig Secrets registered by label.
	HubNamespace string
	// Policy is the hub administrator's credential and member endpoint policy.
	Policy CredentialPolicy
	// ClusterAPINamespaces and ClusterAPILabelKeys are the Cluster API registration policy
	// (see RegistrationPolicy); empty namespaces mean the hub namespace only, nil label
	// keys DefaultClusterAPILabelKeys.
	ClusterAPINamespaces []string
	ClusterAPILabelKeys  []string
	// Connections tunes probing and reconnects.
	Connections Options
	// Heartbeat bounds how stale status.lastProbeTime may get when nothing changes.
	Heartbeat time.Duration
	// MemberCleanupTimeout bounds how long a deleted MemberCluster waits for the clean-up
	// of what Flotilla wrote in it (an unreachable member leaves after this).
	MemberCleanupTimeout time.Duration
	// ClusterAPIPollInterval is how often the hub is checked for Cluster API's Cluster kind
	// until it appears.
	ClusterAPIPollInterval time.Duration
	// MemberTokenLifetime is the lifetime of the member tokens the hub requests when it renews
	// one (default DefaultMemberTokenLifetime, at least MinMemberTokenLifetime);
	// MemberTokenRenewFraction of a token's lifetime after which it is renewed (default
	// DefaultMemberTokenRenewFraction).
	MemberTokenLifetime      time.Duration
	MemberTokenRenewFraction float64
}

// Setup adds the connection manager and the registry's controllers to mgr and returns the
// connection manager for the other domains' controllers to use.
func Setup(mgr ctrl.Manager, opts SetupOptions) (*Connections, error) {
	if opts.ClusterAPIPollInterval <= 0 {
		opts.ClusterAPIPollInterval = 15 * time.Second
	}
	registration := opts.registration()
	conns := NewConnections(mgr.GetScheme(), opts.Connections)
	if err := mgr.Add(conns); err != nil {
		return nil, err
	}
	if err := (&MemberClusterReconciler{
		Client:         mgr.GetClient(),
		SecretReader:   mgr.GetAPIReader(),
		Connections:    conns,
		Policy:         opts.Policy,
		Registration:   registration,
		Heartbeat:      opts.Heartbeat,
		CleanupTimeout: opts.MemberCleanupTimeout,
		Recorder:       status.Events(mgr.GetEventRecorder("flotilla-membercluster")),
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up MemberCluster controller: %w", err)
	}
	if err := (&TokenRenewalReconciler{
		Client:         mgr.GetClient(),
		SecretReader:   mgr.GetAPIReader(),
		Policy:         opts.Policy,
		HubNamespace:   opts.HubNamespace,
		Lifetime:       opts.MemberTokenLifetime,
		RenewFraction:  opts.MemberTokenRenewFraction,
		RequestTimeout: opts.Connections.RequestTimeout,
		Recorder:       status.Events(mgr.GetEventRecorder("flotilla-token-renewal")),
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up member token renewal: %w", err)
	}
	if err := (&SecretSourceReconciler{
		Client:       mgr.GetClient(),
		HubNamespace: opts.HubNamespace,
		Recorder:     status.Events(mgr.GetEventRecorder("flotilla-secret-source")),
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up kubeconfig Secret source: %w", err)
	}
	// Cluster API is optional: its source starts when (and if) the hub serves the Cluster kind.
	if err := mgr.Add(&clusterAPIActivator{
		mgr:      mgr,
		interval: opts.ClusterAPIPollInterval,
		source: &ClusterAPISourceReconciler{
			Client:   mgr.GetClient(),
			Recorder: status.Events(mgr.GetEventRecorder("flotilla-cluster-api-source")),
			Policy:   registration,
		},
	}); err != nil {
		return nil, err
	}
	return conns, nil
}

func (o SetupOptions) registration() RegistrationPolicy {
	return RegistrationPolicy{HubNamespace: o.HubNamespace, ClusterAPINamespaces: o.ClusterAPINamespaces, ClusterAPILabelKeys: o.ClusterAPILabelKeys}
}

// SecretCacheOptions scopes the manager's cache of Secrets (metadata watches of the
// registration sources and the MemberCluster controller, Baseline sources) to the
// namespaces the hub reads Secrets from, so that the hub never lists or watches Secrets
// cluster-wide: the hub namespace and the Cluster API namespaces. With Cluster API
// namespaces "*", other namespaces are watched only for Secrets labelled as Cluster API
// kubeconfigs (cluster.x-k8s.io/cluster-name).
func SecretCacheOptions(opts SetupOptions) cache.ByObject {
	p := opts.registration()
	namespaces := map[string]cache.Config{}
	if ns := p.SecretNamespaces(); ns != nil {
		for _, n := range ns {
			namespaces[n] = cache.Config{}
		}
		return cache.ByObject{Namespaces: namespaces}
	}
	namespaces[p.HubNamespace] = cache.Config{}
	sel := labels.NewSelector()
	req, _ := labels.NewRequirement(clusterv1.ClusterNameLabel, selection.Exists, nil)
	namespaces[cache.AllNamespaces] = cache.Config{LabelSelector: sel.Add(*req)}
	return cache.ByObject{Namespaces: namespaces}
}
