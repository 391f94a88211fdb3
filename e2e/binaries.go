package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

// BinDirEnv names a directory that already holds fleet-controller and fleetctl (`make
// test-e2e-local` builds them into bin/ with version stamps and sets it). Without it the
// suite builds both itself, so `go test -tags e2e ./e2e/` never runs stale binaries.
const BinDirEnv = "FLOTILLA_E2E_BIN_DIR"

// Binaries are the programs the specs run, the way a user runs them.
type Binaries struct {
	Controller string
	Fleetctl   string
	// Kubectl is the pinned kubectl that `make deploy` uses.
	Kubectl string
}

// FindBinaries returns the binaries in $FLOTILLA_E2E_BIN_DIR, or builds them from the
// checkout at root into dir.
func FindBinaries(ctx context.Context, root, dir string) (Binaries, error) {
	b := Binaries{}
	var err error
	if b.Kubectl, err = findKubectl(root); err != nil {
		return b, err
	}
	if from := os.Getenv(BinDirEnv); from != "" {
		b.Controller, b.Fleetctl = filepath.Join(from, "fleet-controller"), filepath.Join(from, "fleetctl")
		for _, bin := range []string{b.Controller, b.Fleetctl} {
			if _, err := os.Stat(bin); err != nil {
				return b, fmt.Errorf("$%s=%s: %w", BinDirEnv, from, err)
			}
		}
		return b, nil
	}
	b.Controller, b.Fleetctl = filepath.Join(dir, "fleet-controller"), filepath.Join(dir, "fleetctl")
	for bin, pkg := range map[string]string{b.Controller: "./cmd/fleet-controller", b.Fleetctl: "./cmd/fleetctl"} {
		begin := time.Now()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
		fmt.Fprintf(os.Stderr, "e2e: built %s in %s\n", pkg, time.Since(begin).Round(time.Second))
	}
	return b, nil
}

// findKubectl returns bin/k8s/<version>/kubectl of the checkout (`make k8s-binaries`), or
// the one in $FLOTILLA_K8S_ASSETS.
func findKubectl(root string) (string, error) {
	candidates := []string{filepath.Join(root, "bin", "k8s", localfleet.KubernetesVersion, "kubectl")}
	if dir := os.Getenv(localfleet.AssetsEnv); dir != "" {
		candidates = append(candidates, filepath.Join(dir, "kubectl"))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("no kubectl %s in %v: run `make k8s-binaries`", localfleet.KubernetesVersion, candidates)
}
