package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// hubFlags locate the hub cluster with kubectl's own connection flags (cli-runtime's
// ConfigFlags): --kubeconfig, then KUBECONFIG, then ~/.kube/config, then the in-cluster
// service account; --context, --as, --request-timeout, --server, --token ... behave exactly
// as in kubectl, so a script that drives both passes both the same flags.
type hubFlags struct {
	*genericclioptions.ConfigFlags
}

// defaultRequestTimeout bounds every single hub request unless --request-timeout says
// otherwise, so that an unreachable hub fails a command instead of hanging it.
const defaultRequestTimeout = "30s"

func newHubFlags() *hubFlags {
	f := genericclioptions.NewConfigFlags(true)
	// Left out: fleetctl's objects are cluster-scoped and its one hub namespace has its own
	// flag (--hub-namespace), so -n would silently do nothing; fleetctl does no cached
	// discovery, so --cache-dir would do nothing either.
	f.Namespace = nil
	f.CacheDir = nil
	f.Timeout = ptr.To(defaultRequestTimeout)
	return &hubFlags{ConfigFlags: f}
}

func (h *hubFlags) bind(cmd *cobra.Command) { h.AddFlags(cmd.PersistentFlags()) }

// restConfig resolves the hub's client configuration.
func (h *hubFlags) restConfig() (*rest.Config, error) {
	cfg, err := h.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("find the hub cluster (use --kubeconfig/--context or KUBECONFIG): %w", err)
	}
	cfg.UserAgent = "fleetctl"
	return cfg, nil
}

// flagValue is the value of a string connection flag, "" when unset.
func flagValue(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	hub := newHubFlags()
	root := &cobra.Command{
		Use:   "fleetctl",
		Short: "Manage a Flotilla fleet: register member clusters, inspect baselines and exported services",
		Long: `fleetctl talks to the Flotilla hub cluster. It finds the hub like kubectl, with
kubectl's connection flags (--kubeconfig, --context, --as, --request-timeout, ...,
KUBECONFIG, in-cluster). Flags that point at a member cluster are always named
--member-...

For scripts: status, rollout status, version and register --dry-run print
-o json|yaml|name (and jsonpath/go-template) through kubectl's printers, and -o wide
for more columns; status --exit-code fails when something is not ready.`,
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
