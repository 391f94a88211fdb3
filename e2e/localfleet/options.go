package localfleet

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ModulePath is the module whose go.mod marks the repository root.
const ModulePath = "github.com/flotilla-dev/flotilla"

// KubernetesVersion is the version of the control-plane binaries the harness expects.
const KubernetesVersion = "v1.37.2"

// AssetsEnv names the environment variable that overrides where the control-plane binaries are.
const AssetsEnv = "FLOTILLA_K8S_ASSETS"

// HubName is the name of the hub cluster (its kubeconfig context and directory).
const HubName = "hub"

// Options configures a Fleet. The zero value starts a hub with CRDs and no members.
type Options struct {
	// Members is the number of member clusters; ignored when MemberNames is set.
	Members int
	// MemberNames names the members; the default is member-1 … member-N.
	MemberNames []string
	// CRDDir holds CRD manifests (*.yaml) installed on the hub only. The default is
	// <repo root>/config/crd/bases; a directory without YAML files installs nothing.
	CRDDir string
	// NoCRDs skips CRD installation altogether, whatever CRDDir says.
	NoCRDs bool
	// AssetsDir holds etcd, kube-apiserver and kube-controller-manager. The default is
	// $FLOTILLA_K8S_ASSETS, else <repo root>/bin/k8s/<KubernetesVersion>.
	AssetsDir string
	// WorkDir is the parent of the fleet's temporary directory; the default is os.TempDir().
	WorkDir string
	// NoControllerManager starts no kube-controller-manager: faster, but namespaces never
	// finish deleting, no garbage collection, no default ServiceAccount.
	NoControllerManager bool
	// Lean trims every control plane's memory for fleets of dozens of members, without
	// changing what an API server answers: etcd and kube-apiserver collect garbage more
	// often (GOGC=50, a soft GOMEMLIMIT) and etcd keeps a shorter raft log in memory.
	// Combine with NoControllerManager, which saves the most.
	Lean bool
	// AuditLog makes every kube-apiserver keep an audit log of every request (Metadata level,
	// no bodies), so that tests can count writes at the server: ControlPlane.AuditMark and
	// ControlPlane.Writes. Off by default: it costs a file write per request.
	AuditLog bool
	// Log receives every process's output, each line prefixed with cluster and process.
	// The default discards it; each process's log is kept in a file in its cluster's
	// directory either way.
	Log io.Writer
	// Progress, when set, receives one line per control plane that is ready ("member-7
	// ready: 9 of 51, 1m12s"), so that a person watching a start of dozens of members
	// sees it move. StartForTest logs them to the test.
	Progress func(line string)
	// StartParallel bounds how many control planes start at once; the default is 4 per
	// CPU (at least 4). Starting dozens at once on a few cores makes every one of them
	// miss its readiness timeout.
	StartParallel int
}

// resolved is Options with every default filled in.
type resolved struct {
	memberNames []string
	crdDir      string // empty: install nothing
	assetsDir   string
	workDir     string
	withKCM     bool
	lean        bool
	auditLog    bool
	log         io.Writer // nil: files only
	progress    func(string)
	parallel    int
}

var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager"}

func (o Options) resolve() (resolved, error) {
	r := resolved{workDir: o.WorkDir, withKCM: !o.NoControllerManager, lean: o.Lean, auditLog: o.AuditLog, log: o.Log,
		progress: o.Progress, parallel: o.StartParallel}
	if r.progress == nil {
		r.progress = func(string) {}
	}
	switch {
	case o.StartParallel < 0:
		return r, fmt.Errorf("localfleet: StartParallel must not be negative, got %d", o.StartParallel)
	case o.StartParallel == 0:
		r.parallel = startParallel()
	}
	if r.workDir == "" {
		r.workDir = os.TempDir()
	}

	switch {
	case len(o.MemberNames) > 0:
		r.memberNames = append([]string(nil), o.MemberNames...)
	case o.Members < 0:
		return r, fmt.Errorf("localfleet: Members must not be negative, got %d", o.Members)
	default:
		for i := 1; i <= o.Members; i++ {
			r.memberNames = append(r.memberNames, fmt.Sprintf("member-%d", i))
		}
	}
	// Names become directory names, kubeconfig contexts and, in tests, MemberCluster names.
	seen := map[string]bool{HubName: true}
	for _, n := range r.memberNames {
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return r, fmt.Errorf("localfleet: member name %q: %s", n, strings.Join(errs, "; "))
		}
		if seen[n] {
			return r, fmt.Errorf("localfleet: duplicate member name %q (%q is the hub)", n, HubName)
		}
		seen[n] = true
	}

	root, rootErr := RepoRoot()
	r.assetsDir = o.AssetsDir
	if r.assetsDir == "" {
		r.assetsDir = os.Getenv(AssetsEnv)
	}
	if r.assetsDir == "" {
		if rootErr != nil {
			return r, fmt.Errorf("localfleet: no AssetsDir, no $%s, and %w", AssetsEnv, rootErr)
		}
		r.assetsDir = filepath.Join(root, "bin", "k8s", KubernetesVersion)
	}
	needed := binaries
	if !r.withKCM {
		needed = binaries[:2]
	}
	for _, b := range needed {
		if err := checkExecutable(filepath.Join(r.assetsDir, b)); err != nil {
			return r, fmt.Errorf("localfleet: %s %s is missing from %s: %w; run `make k8s-binaries` to build it (or set $%s)",
				b, KubernetesVersion, r.assetsDir, err, AssetsEnv)
		}
	}

	if !o.NoCRDs {
		r.crdDir = o.CRDDir
		if r.crdDir != "" {
			if _, err := os.Stat(r.crdDir); err != nil {
				return r, fmt.Errorf("localfleet: CRD directory: %w", err) // fail before starting anything
			}
		} else if rootErr == nil {
			r.crdDir = filepath.Join(root, "config", "crd", "bases")
			if _, err := os.Stat(r.crdDir); errors.Is(err, os.ErrNotExist) {
				r.crdDir = "" // the default directory is optional; an explicit one is not
			}
		}
	}
	return r, nil
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// RepoRoot returns the Flotilla repository root: the nearest directory at or above the working
// directory whose go.mod declares ModulePath. Tests run in package directories and the demo at
// the root, so both find the same bin/ and config/.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if moduleOf(filepath.Join(dir, "go.mod")) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s at or above the working directory", ModulePath)
		}
		dir = parent
	}
}

// moduleOf returns the module path declared by a go.mod file, or "" if there is none.
func moduleOf(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if f := strings.Fields(s.Text()); len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}
