package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"

	"github.com/flotilla-dev/flotilla/cmd/internal/version"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func newVersionCommand(hub *hubFlags) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the fleetctl version and, unless --client, the hub's Kubernetes version and Flotilla API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, "fleetctl", version.String())
			if clientOnly {
				return nil
			}
			cfg, err := hub.restConfig()
			if err != nil {
				return err
			}
			cfg.Timeout = 10 * time.Second
			dc, err := discovery.NewDiscoveryClientForConfig(cfg)
			if err != nil {
				return err
			}
			sv, err := dc.ServerVersion()
			if err != nil {
				return fmt.Errorf("hub %s is not reachable: %w", cfg.Host, err)
			}
			fmt.Fprintf(out, "hub %s: Kubernetes %s\n", cfg.Host, sv.GitVersion)
			_, err = dc.ServerResourcesForGroupVersion(fleetv1alpha1.GroupVersion.String())
			switch {
			case apierrors.IsNotFound(err):
				fmt.Fprintf(out, "Flotilla API %s: not installed on the hub (make deploy, or kubectl apply -k config/crd)\n", fleetv1alpha1.GroupVersion)
			case err != nil:
				return fmt.Errorf("read the hub's API groups: %w", err)
			default:
				fmt.Fprintf(out, "Flotilla API %s: installed\n", fleetv1alpha1.GroupVersion)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "Print only the fleetctl version; do not contact the hub.")
	return cmd
}
