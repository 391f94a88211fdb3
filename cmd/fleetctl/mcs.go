package main

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/internal/mcscrd"
)

// mcsCRDTimeout bounds the wait for the member to serve newly installed MCS CRDs.
const mcsCRDTimeout = time.Minute

// installMCSCRDs installs the MCS CRDs in a member with the user's credentials (the hub's
// identity may not create CRDs it then relies on for itself), before the hub connects, so
// that the hub finds the kinds served on its first probe.
func installMCSCRDs(ctx context.Context, c client.Client, cfg *rest.Config, steps stepPrinter) error {
	disco, err := discovery.NewDiscoveryClientForConfig(clientConfig(cfg))
	if err != nil {
		return fmt.Errorf("install MCS CRDs: %w", err)
	}
	done, err := mcscrd.Install(ctx, c, disco, mcsCRDTimeout)
	for _, d := range done {
		steps.printf("%s", d)
	}
	if err != nil {
		return fmt.Errorf("install MCS CRDs: %w", err)
	}
	return nil
}
