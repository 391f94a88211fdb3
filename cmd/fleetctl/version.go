package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/cmd/internal/version"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// versionReport is what `fleetctl version` prints; -o json|yaml print it as is, the way
// `kubectl version -o json` prints clientVersion and serverVersion.
type versionReport struct {
	ClientVersion version.Info `json:"clientVersion"`
	// Hub is absent with --client.
	Hub *hubVersion `json:"hub,omitempty"`
}

type hubVersion struct {
	Server            string `json:"server"`
	KubernetesVersion string `json:"kubernetesVersion"`
	// FlotillaAPI is whether the hub serves fleet.flotilla.dev/v1alpha1.
	FlotillaAPI bool `json:"flotillaAPI"`
	// Controller is what the acting fleet-controller recorded; absent if it recorded nothing.
	Controller *controllerVersion `json:"controller,omitempty"`
	// ControllerError says why the controller's version could not be read, if it could not.
	ControllerError string `json:"controllerError,omitempty"`
}

// controllerVersion is the Lease fleetv1alpha1.ControllerVersionLease the leading
// fleet-controller writes when it starts.
type controllerVersion struct {
	Version   string `json:"version"`
	GitCommit string `json:"gitCommit"`
	// Identity names the instance (host name and process id; the pod name in the hub).
	Identity string `json:"identity"`
	// Since is when that instance started acting on the fleet.
	Since *time.Time `json:"since,omitempty"`
}

func newVersionCommand(hub *hubFlags) *cobra.Command {
	var clientOnly bool
	hubNamespace := fleetv1alpha1.DefaultHubNamespace
	out := newOutputFlags(outputText)
	// The report is not a Kubernetes object; it is printed as raw JSON, which needs no type.
	out.print.TypeSetterPrinter = nil
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the fleetctl version and, unless --client, the hub's Kubernetes version, the Flotilla API and the running fleet-controller's version",
		Long: `version prints fleetctl's own version (stamped by make, or the module version of
'go install github.com/flotilla-dev/flotilla/cmd/fleetctl@vX'), and unless --client
the hub's Kubernetes version, whether it serves the Flotilla API, and the version of the
fleet-controller acting on the fleet: the leader records its build in the Lease
<hub-namespace>/` + fleetv1alpha1.ControllerVersionLease + ` when it starts, so this is the
version that runs, wherever it runs, not the one a Deployment asks for.`,
		Example: `  fleetctl version
  fleetctl version -o json | jq -r .hub.controller.version`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out.format() == "name" {
				return fmt.Errorf("-o name prints kind/name of objects, and version prints no object: use -o json or -o yaml")
			}
			if err := out.validate(); err != nil {
				return err
			}
			r := &versionReport{ClientVersion: version.Get()}
			if !clientOnly {
				h, err := readHubVersion(cmd.Context(), hub, hubNamespace, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				r.Hub = h
			}
			if !out.human() {
				data, err := json.Marshal(r)
				if err != nil {
					return err
				}
				p, err := out.printer()
				if err != nil {
					return err
				}
				return p.PrintObj(&runtime.Unknown{Raw: data}, cmd.OutOrStdout())
			}
			writeVersion(cmd.OutOrStdout(), r, time.Now())
			return nil
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "Print only the fleetctl version; do not contact the hub.")
	cmd.Flags().StringVar(&hubNamespace, "hub-namespace", hubNamespace, "Hub namespace where fleet-controller records its version.")
	out.bind(cmd)
	cmd.Flags().Lookup("output").Usage = "Output format. One of: (json, yaml, jsonpath, go-template and their -file forms)."
	return cmd
}

func readHubVersion(ctx context.Context, hub *hubFlags, hubNamespace string, stderr io.Writer) (*hubVersion, error) {
	cfg, err := hub.restConfig()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 10 * time.Second
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	sv, err := dc.ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("hub %s is not reachable: %w", cfg.Host, err)
	}
	h := &hubVersion{Server: cfg.Host, KubernetesVersion: sv.GitVersion}
	_, err = dc.ServerResourcesForGroupVersion(fleetv1alpha1.GroupVersion.String())
	switch {
	case apierrors.IsNotFound(err):
		return h, nil
	case err != nil:
		return nil, fmt.Errorf("read the hub's API groups: %w", err)
	}
	h.FlotillaAPI = true
	c, err := newClient(cfg, stderr)
	if err != nil {
		return nil, err
	}
	lease := &coordinationv1.Lease{}
	switch err := c.Get(ctx, client.ObjectKey{Namespace: hubNamespace, Name: fleetv1alpha1.ControllerVersionLease}, lease); {
	case apierrors.IsNotFound(err):
		h.ControllerError = "no fleet-controller has recorded its version (is it running, with --hub-namespace " + hubNamespace + "?)"
	case err != nil:
		// A viewer without access still learns everything else.
		h.ControllerError = fmt.Sprintf("cannot read lease %s/%s: %v", hubNamespace, fleetv1alpha1.ControllerVersionLease, err)
	default:
		cv := &controllerVersion{
			Version:   lease.Annotations[fleetv1alpha1.AnnotationVersion],
			GitCommit: lease.Annotations[fleetv1alpha1.AnnotationGitCommit],
		}
		if lease.Spec.HolderIdentity != nil {
			cv.Identity = *lease.Spec.HolderIdentity
		}
		if lease.Spec.AcquireTime != nil {
			t := lease.Spec.AcquireTime.UTC()
			cv.Since = &t
		}
		h.Controller = cv
	}
	return h, nil
}

func writeVersion(w io.Writer, r *versionReport, now time.Time) {
	fmt.Fprintln(w, "fleetctl", r.ClientVersion)
	h := r.Hub
	if h == nil {
		return
	}
	fmt.Fprintf(w, "hub %s: Kubernetes %s\n", h.Server, h.KubernetesVersion)
	if !h.FlotillaAPI {
		fmt.Fprintf(w, "Flotilla API %s: not installed on the hub (kubectl apply -f dist/install.yaml, or make deploy)\n", fleetv1alpha1.GroupVersion)
		return
	}
	fmt.Fprintf(w, "Flotilla API %s: installed\n", fleetv1alpha1.GroupVersion)
	if cv := h.Controller; cv != nil {
		since := ""
		if cv.Since != nil {
			since = ", since " + ago(now, *cv.Since)
		}
		fmt.Fprintf(w, "fleet-controller %s (commit %s, %s%s)\n", orDash(cv.Version), orDash(cv.GitCommit), orDash(cv.Identity), since)
	} else {
		fmt.Fprintf(w, "fleet-controller: unknown: %s\n", h.ControllerError)
	}
}
