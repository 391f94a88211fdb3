//go:build docker

package kindnode

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestShimAgainstEngine runs a plain container through the shim the way kind runs a node:
// `run --privileged` and `exec --privileged` must both work, on an engine that refuses
// --privileged as well as on one that allows it, and the command in the container must hold
// the capabilities kind's commands need (CAP_SYS_ADMIN for mounts, CAP_NET_ADMIN for
// iptables and CNI).
func TestShimAgainstEngine(t *testing.T) {
	image := testImage(t)
	shim := filepath.Join(ShimDir(repoRoot(t)), "docker")
	logFile := filepath.Join(t.TempDir(), "shim.log")
	name := fmt.Sprintf("flotilla-shim-test-%d", os.Getpid())
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", "-v", name).Run() })
	shimCmd := func(args ...string) (string, error) {
		cmd := exec.Command(shim, args...)
		cmd.Env = append(os.Environ(), ShimLogEnv+"="+logFile)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	if out, err := shimCmd("run", "--detach", "--name", name, "--privileged", "--network", "none",
		"--security-opt", "seccomp=unconfined", image, "/nodecheck", "sleep"); err != nil {
		t.Fatalf("docker run --privileged through the shim: %v\n%s", err, out)
	}
	out, err := shimCmd("exec", "--privileged", name, "/nodecheck", "caps")
	if err != nil {
		t.Fatalf("docker exec --privileged through the shim: %v\n%s", err, out)
	}
	mask, err := strconv.ParseUint(out, 16, 64)
	if err != nil {
		t.Fatalf("CapEff %q: %v", out, err)
	}
	const capNetAdmin, capSysAdmin = 12, 21
	for _, c := range []struct {
		bit  uint
		name string
	}{{capNetAdmin, "CAP_NET_ADMIN"}, {capSysAdmin, "CAP_SYS_ADMIN"}} {
		if mask&(1<<c.bit) == 0 {
			t.Errorf("the command exec'd in the container lacks %s (CapEff %s)", c.name, out)
		}
	}

	log, _ := os.ReadFile(logFile)
	for _, want := range []string{"run " + name + ": --privileged -> --cap-add ALL", "exec " + name + ": dropped --privileged"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("shim log lacks %q:\n%s", want, log)
		}
	}
	inspect, err := exec.Command("docker", "inspect", "-f", "{{.HostConfig.Privileged}} {{.HostConfig.CapAdd}}", name).Output()
	if err != nil {
		t.Fatalf("docker inspect: %v", err)
	}
	if got := strings.TrimSpace(string(inspect)); got != "false [ALL]" {
		t.Errorf("container privileged/capabilities = %q, want %q", got, "false [ALL]")
	}
}
