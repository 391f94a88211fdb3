package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

// syncBuffer is a bytes.Buffer safe to read while a command running in another goroutine
// writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fleetctl runs the command line as a user would, writing its output to out. It returns the
// command's error; stderr is appended to the output so that a failure message shows it.
func fleetctlTo(ctx context.Context, out io.Writer, args ...string) error {
	cmd := newRootCommand(out, out)
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

// fleetctl runs the command line and returns everything it printed.
func fleetctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out syncBuffer
	err := fleetctlTo(t.Context(), &out, args...)
	t.Logf("$ fleetctl %s\n%s", strings.Join(args, " "), out.String())
	if err != nil {
		t.Logf("error: %v", err)
	}
	return out.String(), err
}

// mustFleetctl runs the command line and fails the test if it fails.
func mustFleetctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := fleetctl(t, args...)
	if err != nil {
		t.Fatalf("fleetctl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// registerArgs is the command line that registers member m as name.
func registerArgs(f *localfleet.Fleet, name string, m *localfleet.ControlPlane, extra ...string) []string {
	return append([]string{"register", name, "--kubeconfig", f.Hub.KubeconfigPath, "--member-kubeconfig", m.KubeconfigPath}, extra...)
}

// adminClient is a client with the cluster's admin credentials, knowing the Flotilla API.
func adminClient(t *testing.T, cp *localfleet.ControlPlane) client.Client {
	t.Helper()
	return configClient(t, cp.Config)
}

func configClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := newClient(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually polls check until it returns nil, failing the test with what was expected and
// the last error after timeout. RBAC changes, for one, take a moment to reach the authorizer.
// eventually is the shared poll (package fleettest).
var eventually = fleettest.Eventually

// assertContains fails the test for every want missing from out.
func assertContains(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q; it was:\n%s", w, out)
		}
	}
}
