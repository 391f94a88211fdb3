package clusters

import (
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

// SetupOptions configure the cluster registry.
type SetupOptions struct {
	// HubNamespace holds kubeconfig Secrets registered by label.
	HubNamespace string
	// Policy is the hub administrator's credential policy.
	Policy CredentialPolicy
	// Connections tunes probing and reconnects.
	Connections Options
	// Heartbeat bounds how stale status.lastProbeTime may get when nothing changes.
	Heartbeat time.Duration
	// ClusterAPIPollInterval is how often the hub is checked for Cluster API's Cluster kind
	// until it appears.
	ClusterAPIPollInterval time.Duration
}

// Setup adds the connection manager and the registry's controllers to mgr and returns the
// connection manager for the other domains' controllers to use.
func Setup(mgr ctrl.Manager, opts SetupOptions) (*Connections, error) {
	if opts.ClusterAPIPollInterval <= 0 {
		opts.ClusterAPIPollInterval = 15 * time.Second
	}
	conns := NewConnections(mgr.GetScheme(), opts.Connections)
	if err := mgr.Add(conns); err != nil {
		return nil, err
	}
	if err := (&MemberClusterReconciler{
		Client:       mgr.GetClient(),
		SecretReader: mgr.GetAPIReader(),
		Connections:  conns,
		Policy:       opts.Policy,
		Heartbeat:    opts.Heartbeat,
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up MemberCluster controller: %w", err)
	}
	if err := (&SecretSourceReconciler{
		Client:       mgr.GetClient(),
		HubNamespace: opts.HubNamespace,
		Recorder:     mgr.GetEventRecorder("flotilla-secret-source"),
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("set up kubeconfig Secret source: %w", err)
	}
	// Cluster API is optional: its source starts when (and if) the hub serves the Cluster kind.
	if err := mgr.Add(&clusterAPIActivator{
		mgr:      mgr,
		interval: opts.ClusterAPIPollInterval,
		source: &ClusterAPISourceReconciler{
			Client:   mgr.GetClient(),
			Recorder: mgr.GetEventRecorder("flotilla-cluster-api-source"),
		},
	}); err != nil {
		return nil, err
	}
	return conns, nil
}
