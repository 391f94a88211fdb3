package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

// LocalOptions configure the local backend.
type LocalOptions struct {
	// Root is the checkout whose config/ is installed.
	Root string
	// Binaries are the controller, fleetctl and kubectl to run.
	Binaries Binaries
	// ArtifactsDir receives the controller's log and, on CollectArtifacts, the clusters' logs.
	ArtifactsDir string
	// Members names the member clusters; the default is member-1 and member-2.
	Members []string
	// ControllerArgs are added to the controller's command line.
	ControllerArgs []string
}

// Local is the backend on local control planes (package localfleet): every cluster is a
// real etcd, kube-apiserver and kube-controller-manager on loopback, and fleet-controller is
// the built binary, run as a process under a ServiceAccount token of the hub.
type Local struct {
	opts         LocalOptions
	fleet        *localfleet.Fleet
	saKubeconfig string
	controller   *Controller
}

var _ Backend = (*Local)(nil)

// StartLocal starts the clusters, installs config/ (without the Deployment) on the hub and
// writes the controller's ServiceAccount kubeconfig. The controller is not started.
func StartLocal(ctx context.Context, opts LocalOptions) (*Local, error) {
	if len(opts.Members) == 0 {
		opts.Members = []string{"member-1", "member-2"}
	}
	if err := os.MkdirAll(opts.ArtifactsDir, 0o755); err != nil {
		return nil, err
	}
	// CRDs come from config/, as in a real install, not from the harness.
	fleet, err := localfleet.Start(ctx, localfleet.Options{MemberNames: opts.Members, NoCRDs: true})
	if err != nil {
		return nil, err
	}
	l := &Local{opts: opts, fleet: fleet}
	if err := l.install(ctx); err != nil {
		_ = fleet.Stop()
		return nil, err
	}
	return l, nil
}

func (l *Local) install(ctx context.Context) error {
	if err := InstallHub(ctx, l.opts.Binaries.Kubectl, l.opts.Root, l.fleet.Hub.KubeconfigPath); err != nil {
		return fmt.Errorf("install config/default on the hub: %w", err)
	}
	// The token file lives with the clusters (removed by Stop), never in the artifacts.
	l.saKubeconfig = filepath.Join(l.fleet.Hub.Dir, ServiceAccount+".kubeconfig")
	return WriteServiceAccountKubeconfig(ctx, l.fleet.Hub.Config, l.saKubeconfig, 4*time.Hour)
}

// Name implements Backend.
func (l *Local) Name() string { return "local" }

// HubKubeconfig implements Backend.
func (l *Local) HubKubeconfig() string { return l.fleet.Hub.KubeconfigPath }

// Members implements Backend.
func (l *Local) Members() []Member {
	var ms []Member
	for _, m := range l.fleet.Members {
		ms = append(ms, Member{Name: m.Name, Kubeconfig: m.KubeconfigPath})
	}
	return ms
}

// StartController implements Backend: the Deployment's flags, but loopback addresses.
func (l *Local) StartController(ctx context.Context) error {
	if l.controller != nil && !l.controller.Exited() {
		return errors.New("fleet-controller is already running")
	}
	c, err := StartController(ctx, ControllerOptions{
		Bin:        l.opts.Binaries.Controller,
		Kubeconfig: l.saKubeconfig,
		LogPath:    filepath.Join(l.opts.ArtifactsDir, "fleet-controller.log"),
		// Local members listen on loopback, which the hub refuses unless told.
		Args: append([]string{"--leader-elect", "--allow-loopback-members"}, l.opts.ControllerArgs...),
	})
	if err != nil {
		return err
	}
	l.controller = c
	return nil
}

// StopController implements Backend.
func (l *Local) StopController() error {
	if l.controller != nil {
		l.controller.Stop()
	}
	return nil
}

// ArtifactsDir implements Backend.
func (l *Local) ArtifactsDir() string { return l.opts.ArtifactsDir }

// CollectArtifacts implements Backend: every control-plane process log.
func (l *Local) CollectArtifacts(context.Context) error {
	var errs []error
	for _, c := range append([]*localfleet.ControlPlane{l.fleet.Hub}, l.fleet.Members...) {
		logs, _ := filepath.Glob(filepath.Join(c.Dir, "*.log"))
		for _, f := range logs {
			errs = append(errs, copyFile(f, filepath.Join(l.opts.ArtifactsDir, "clusters", c.Name, filepath.Base(f))))
		}
	}
	return errors.Join(errs...)
}

// Stop implements Backend.
func (l *Local) Stop() error {
	_ = l.StopController()
	return l.fleet.Stop()
}
