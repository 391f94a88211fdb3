package e2e

import "context"

// Backend provides what the specs run against: a hub with Flotilla's config/ installed,
// member clusters, and fleet-controller running against the hub as config/rbac allows.
// The local backend runs control planes as processes; a kind backend runs the same specs
// on kind clusters and the controller as the Deployment of config/manager.
type Backend interface {
	// Name names the backend in messages ("local", "kind").
	Name() string
	// HubKubeconfig is the path of an admin kubeconfig of the hub: what a platform engineer
	// passes to fleetctl and kubectl.
	HubKubeconfig() string
	// Members are the member clusters, with admin kubeconfigs.
	Members() []Member
	// StartController runs fleet-controller with leader election, as the Deployment does,
	// under the ServiceAccount of config/rbac, and returns once it is ready.
	StartController(ctx context.Context) error
	// StopController stops it; a stopped controller's leader lease is released.
	StopController() error
	// ArtifactsDir is where the backend writes its logs (the controller's, the clusters');
	// the suite adds its diagnostics there and keeps the folder when a spec fails.
	ArtifactsDir() string
	// CollectArtifacts copies logs that live elsewhere (control-plane logs, node logs) into
	// ArtifactsDir before Stop removes them.
	CollectArtifacts(ctx context.Context) error
	// Stop stops the controller and the clusters and removes what the backend made, except
	// ArtifactsDir.
	Stop() error
}

// Member is one member cluster.
type Member struct {
	Name string
	// Kubeconfig is the path of an admin kubeconfig, as a cluster owner holds.
	Kubeconfig string
	// HubServer is the API server URL the hub's controller reaches the member at, when it is
	// not the one in Kubeconfig (kind: the node's name on the kind network, while Kubeconfig
	// points at a port published on this machine); empty when it is the same.
	HubServer string
	// HubKubeconfig is an admin kubeconfig naming HubServer; empty when HubServer is.
	HubKubeconfig string
}

// RegisterArgs are the member flags of `fleetctl register` for m: its kubeconfig and, when
// the hub reaches it elsewhere, --member-server.
func (m Member) RegisterArgs() []string {
	args := []string{"--member-kubeconfig", m.Kubeconfig}
	if m.HubServer != "" {
		args = append(args, "--member-server", m.HubServer)
	}
	return args
}

// KubeconfigForHub is the kubeconfig to hand to the hub in a Secret: one whose server the
// hub's controller can reach.
func (m Member) KubeconfigForHub() string {
	if m.HubKubeconfig != "" {
		return m.HubKubeconfig
	}
	return m.Kubeconfig
}
