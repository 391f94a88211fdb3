package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// ArtifactsEnv overrides where the suite keeps its artifacts (a CI upload folder, say); the
// default is _artifacts/e2e-<timestamp>/ in the checkout.
const ArtifactsEnv = "FLOTILLA_E2E_ARTIFACTS"

// NewArtifactsDir creates the folder of this run's artifacts.
func NewArtifactsDir(root string) (string, error) {
	dir := os.Getenv(ArtifactsEnv)
	if dir == "" {
		dir = filepath.Join(root, "_artifacts", "e2e-"+time.Now().Format("20060102-150405"))
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return abs, os.MkdirAll(abs, 0o755)
}

// Diagnose writes into dir what a person needs to see why a spec failed: Flotilla's objects
// on the hub described, fleetctl status, the hub's events and Leases, and each member's
// events. It reads no Secret data. Each command's failure is written in place of its output,
// so one broken cluster does not hide the rest.
func Diagnose(ctx context.Context, b Binaries, hubKubeconfig string, members []Member, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	hub := "--kubeconfig=" + hubKubeconfig
	type capture struct {
		file string
		bin  string
		args []string
	}
	captures := []capture{
		// The "flotilla" category: MemberClusters, Baselines, BaselineBindings, ExportedServices.
		{"hub-flotilla-objects.txt", b.Kubectl, []string{hub, "get", "flotilla", "-o", "wide"}},
		{"hub-flotilla-describe.txt", b.Kubectl, []string{hub, "describe", "flotilla"}},
		{"hub-memberclusters.yaml", b.Kubectl, []string{hub, "get", "memberclusters", "-o", "yaml"}},
		{"hub-events.txt", b.Kubectl, []string{hub, "get", "events", "-A", "--sort-by=.lastTimestamp"}},
		{"hub-leases.yaml", b.Kubectl, []string{hub, "-n", HubNamespace, "get", "leases", "-o", "yaml"}},
		{"hub-namespace.txt", b.Kubectl, []string{hub, "-n", HubNamespace, "get", "secrets,serviceaccounts,roles,rolebindings"}},
		{"fleetctl-status.txt", b.Fleetctl, []string{"status", hub}},
	}
	for _, m := range members {
		captures = append(captures, capture{"member-" + m.Name + "-events.txt", b.Kubectl,
			[]string{"--kubeconfig=" + m.Kubeconfig, "get", "events", "-A", "--sort-by=.lastTimestamp"}})
	}
	var errs []error
	for _, c := range captures {
		out, err := runCmd(ctx, nil, c.bin, c.args...)
		if err != nil {
			out = fmt.Appendf(out, "\n%v\n", err)
		}
		errs = append(errs, os.WriteFile(filepath.Join(dir, c.file), out, 0o644))
	}
	return errors.Join(errs...)
}

// copyFile copies a log into the artifacts; a missing source is not an error.
func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}

// deniedRE matches an API server's RBAC denial as it appears in a JSON log line (quotes
// escaped): `cannot patch resource \"memberclusters/status\" in API group \"fleet.flotilla.dev\" at the cluster scope`.
var deniedRE = regexp.MustCompile(`cannot (\w+) resource \\"([^\\"]+)\\" in API group \\"([^\\"]*)\\"( at the cluster scope| in the namespace \\"[^\\"]+\\")`)

// RBACDenials lists, once each, the requests the API server refused for lack of RBAC in the
// *.log files of dir: the usual reason a spec fails after a rule left config/rbac.
func RBACDenials(dir string) []string {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	seen := map[string]bool{}
	var denials []string
	for _, f := range logs {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, m := range deniedRE.FindAllSubmatch(data, -1) {
			d := fmt.Sprintf("%s %s (group %q)%s", m[1], m[2], m[3], strings.ReplaceAll(string(m[4]), `\"`, `"`))
			if !seen[d] {
				seen[d] = true
				denials = append(denials, d)
			}
		}
	}
	return denials
}
