package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// hubFlags locate the hub cluster exactly as kubectl would: --kubeconfig, then KUBECONFIG,
// then ~/.kube/config, then the in-cluster service account; --context picks a context.
type hubFlags struct {
	kubeconfig string
	context    string
}

func (h *hubFlags) bind(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&h.kubeconfig, "kubeconfig", "",
		"Path to the kubeconfig of the hub cluster (default: $KUBECONFIG, ~/.kube/config, or in-cluster).")
	cmd.PersistentFlags().StringVar(&h.context, "context", "", "Kubeconfig context of the hub cluster.")
}

// restConfig resolves the hub's client configuration.
func (h *hubFlags) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = h.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: h.context}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("find the hub cluster (use --kubeconfig/--context or KUBECONFIG): %w", err)
	}
	cfg.UserAgent = "fleetctl"
	return cfg, nil
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	hub := &hubFlags{}
	root := &cobra.Command{
		Use:   "fleetctl",
		Short: "Manage a Flotilla fleet: register member clusters, inspect baselines and exported services",
		Long: `fleetctl talks to the Flotilla hub cluster. It finds the hub like kubectl
(--kubeconfig, --context, KUBECONFIG, in-cluster). Flags that point at a member
cluster are always named --member-...`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	hub.bind(root)
	root.AddCommand(
		newVersionCommand(hub),
		newRegisterCommand(hub), newUnregisterCommand(hub), newRotateCommand(hub), newStatusCommand(hub),
		newDiffCommand(hub), newRolloutCommand(hub),
	)
	return root
}
