//go:build e2e

package e2e_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"

	"github.com/flotilla-dev/flotilla/e2e"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

// BackendEnv chooses the backend: "local" (the default) or "kind".
const BackendEnv = "FLOTILLA_E2E_BACKEND"

// What the kind backend runs (`make e2e` sets them): the node image, the controller image of
// `make docker-build` and the specs' workload images of `make e2e-images`.
const (
	KindNodeImageEnv   = "FLOTILLA_E2E_KIND_NODE_IMAGE"
	ControllerImageEnv = "FLOTILLA_E2E_CONTROLLER_IMAGE"
	EchoImageEnv       = "FLOTILLA_E2E_ECHO_IMAGE"
	ClientImageEnv     = "FLOTILLA_E2E_CLIENT_IMAGE"
)

// suite is what every spec shares: the binaries, the artifacts folder and one backend,
// started by the first spec that needs it (the leader-election spec brings its own hub).
var suite struct {
	root      string
	bins      e2e.Binaries
	artifacts string

	once    sync.Once
	backend e2e.Backend
	err     error
}

func TestMain(m *testing.M) {
	flag.Parse()
	// The specs' own controller-runtime clients log nothing worth reading; without a logger
	// controller-runtime prints a warning with a stack trace into the spec output.
	ctrllog.SetLogger(logr.Discard())
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	begin := time.Now()
	ctx := context.Background()
	var err error
	if suite.root, err = localfleet.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if suite.artifacts, err = e2e.NewArtifactsDir(suite.root); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	binDir, err := os.MkdirTemp("", "flotilla-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(binDir)
	if suite.bins, err = e2e.FindBinaries(ctx, suite.root, binDir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}

	if backendName() == "kind" {
		// kind clusters outlive this process unless deleted: on SIGINT or SIGTERM, and shortly
		// before go test's -timeout would kill it without running any cleanup.
		stopGuard := guardKindClusters(ctx)
		defer stopGuard()
	}
	code := m.Run()

	if suite.backend != nil {
		if code != 0 {
			if err := suite.backend.CollectArtifacts(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: collect artifacts:", err)
			}
		}
		if err := suite.backend.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stop backend:", err)
		}
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: FAILED after %s; artifacts (controller log, describe, events, cluster logs) kept in %s\n",
			time.Since(begin).Round(time.Second), suite.artifacts)
		return code
	}
	fmt.Fprintf(os.Stderr, "e2e: passed in %s\n", time.Since(begin).Round(time.Second))
	_ = os.RemoveAll(suite.artifacts)
	return code
}

// backendName is the backend chosen by $FLOTILLA_E2E_BACKEND.
func backendName() string {
	if b := os.Getenv(BackendEnv); b != "" {
		return b
	}
	return "local"
}

// sharedBackend returns the suite's backend with fleet-controller running, starting both on
// first use. When the spec fails, the state of the hub and members is kept for diagnosis.
func sharedBackend(t *testing.T) e2e.Backend {
	t.Helper()
	suite.once.Do(func() {
		begin := time.Now()
		ctx := context.Background() // outlives this spec: the backend is shared
		// A backend that failed to start has cleaned up after itself; suite.backend stays nil
		// (not an interface holding a nil pointer) so that runSuite does not stop it again.
		switch backendName() {
		case "local":
			var l *e2e.Local
			if l, suite.err = e2e.StartLocal(ctx, e2e.LocalOptions{
				Root: suite.root, Binaries: suite.bins, ArtifactsDir: suite.artifacts,
			}); suite.err == nil {
				suite.backend = l
			}
		case "kind":
			var k *e2e.Kind
			if k, suite.err = startKind(ctx); suite.err == nil {
				suite.backend = k
				live.Store(&suite.backend)
			}
		default:
			suite.err = fmt.Errorf("$%s=%s: no such backend (local or kind)", BackendEnv, backendName())
		}
		if suite.err == nil {
			suite.err = suite.backend.StartController(ctx)
		}
		if suite.err == nil {
			fmt.Fprintf(os.Stderr, "e2e: %s backend up (config/ installed, fleet-controller running) in %s\n",
				backendName(), time.Since(begin).Round(100*time.Millisecond))
		}
	})
	if suite.err != nil {
		t.Fatalf("e2e backend %s: %v", backendName(), suite.err)
	}
	keepArtifactsOnFailure(t, suite.backend.HubKubeconfig(), suite.backend.Members(), suite.backend.ArtifactsDir())
	return suite.backend
}

// keepArtifactsOnFailure registers a cleanup that, when the spec failed, writes Diagnose's
// output into the artifacts folder under the spec's name, says where it is, and names the
// requests RBAC refused in the controller logs (*.log) of logDir.
func keepArtifactsOnFailure(t *testing.T, hubKubeconfig string, members []e2e.Member, logDir string) {
	t.Helper()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dir := filepath.Join(suite.artifacts, regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_"))
		if err := e2e.Diagnose(context.Background(), suite.bins, hubKubeconfig, members, dir); err != nil {
			t.Logf("e2e: diagnose: %v", err)
		}
		t.Logf("e2e: artifacts of this failure kept in %s; controller logs in %s", dir, logDir)
		if denials := e2e.RBACDenials(logDir); len(denials) > 0 {
			t.Logf("e2e: the hub refused the controller (is a rule missing from config/rbac?):\n  %s", strings.Join(denials, "\n  "))
		}
	})
}

// fleetctl runs fleetctl as a user would, logs and returns its combined output, and fails
// the spec if fleetctl fails.
func fleetctl(t *testing.T, args ...string) string {
	t.Helper()
	return mustRun(t, suite.bins.Fleetctl, args...)
}

// register registers m with fleetctl as its owner would, with labels, and returns fleetctl's
// output. A member's flotilla-system namespace that an earlier `unregister --cleanup` is
// still deleting (a real cluster takes seconds) is waited out, as fleetctl's error advises.
func register(t *testing.T, hub string, m e2e.Member, labels string) string {
	t.Helper()
	args := append([]string{"register", m.Name, "--kubeconfig", hub, "--labels", labels}, m.RegisterArgs()...)
	var out string
	eventually(t, readyTimeout, "fleetctl register "+m.Name+" (once the member's flotilla-system namespace from an earlier cleanup is gone)", func() error {
		var err error
		out, err = runProgram(t, suite.bins.Fleetctl, args...)
		switch {
		case err == nil:
			return nil
		case strings.Contains(out, "is being deleted"):
			return fmt.Errorf("%w: %s", err, out)
		default:
			t.Fatalf("fleetctl %s: %v\n%s", strings.Join(args, " "), err, out)
			return nil
		}
	})
	t.Logf("$ fleetctl %s\n%s", strings.Join(args, " "), out)
	return out
}

// kubectl does the same with the pinned kubectl.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return mustRun(t, suite.bins.Kubectl, args...)
}

func mustRun(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := runProgram(t, bin, args...)
	t.Logf("$ %s %s\n%s", filepath.Base(bin), strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("%s failed: %v", filepath.Base(bin), err)
	}
	return out
}

// runProgram runs a binary without the caller's KUBECONFIG (every cluster is named by a
// flag) and returns its combined output. It logs nothing: polls would flood the log.
func runProgram(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// table parses the aligned table a command printed (kubectl get, fleetctl status) into rows
// by their first column, each a map from column name to cell. Cells are cut at the header's
// column positions, so that names and cells with single spaces ("LAST PROBE", "2s ago")
// survive.
func table(out string) map[string]map[string]string {
	lines := strings.Split(out, "\n")
	head := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "NAME ") {
			head = i
			break
		}
	}
	if head < 0 {
		return nil
	}
	cols := regexp.MustCompile(`\S+( \S+)*`).FindAllStringIndex(lines[head], -1)
	rows := map[string]map[string]string{}
	for _, l := range lines[head+1:] {
		if strings.TrimSpace(l) == "" {
			break
		}
		row := map[string]string{}
		for i, c := range cols {
			end := len(l)
			if i+1 < len(cols) {
				end = min(cols[i+1][0], len(l))
			}
			if c[0] < end {
				row[lines[head][c[0]:c[1]]] = strings.TrimSpace(l[c[0]:end])
			}
		}
		rows[row["NAME"]] = row
	}
	return rows
}

// eventually polls check until it returns nil, failing the spec with what was expected and
// the last error when timeout passes.
// eventually polls once a second: the checks run fleetctl and kubectl as processes.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	fleettest.EventuallyEvery(t, time.Second, timeout, what, check)
}

// processFleet starts a fleet of its own for a spec that runs fleet-controller as a process
// it controls (kills, freezes): the hub installed from config/ as a user would, a kubeconfig
// of the controller's ServiceAccount, and the spec's log folder, kept with the fleet's
// artifacts when the spec fails.
func processFleet(t *testing.T, opts localfleet.Options) (fleet *localfleet.Fleet, saKubeconfig, logDir string) {
	t.Helper()
	ctx := t.Context()
	fleet = localfleet.StartForTest(t, opts)
	if err := e2e.InstallHub(ctx, suite.bins.Kubectl, suite.root, fleet.Hub.KubeconfigPath); err != nil {
		t.Fatal(err)
	}
	saKubeconfig = filepath.Join(t.TempDir(), "controller.kubeconfig")
	if err := e2e.WriteServiceAccountKubeconfig(ctx, fleet.Hub.Config, saKubeconfig, time.Hour); err != nil {
		t.Fatal(err)
	}
	logDir = filepath.Join(suite.artifacts, t.Name())
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var ms []e2e.Member
	for _, m := range fleet.Members {
		ms = append(ms, e2e.Member{Name: m.Name, Kubeconfig: m.KubeconfigPath})
	}
	keepArtifactsOnFailure(t, fleet.Hub.KubeconfigPath, ms, logDir)
	return fleet, saKubeconfig, logDir
}
