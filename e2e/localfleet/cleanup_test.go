package localfleet_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

const helperEnv = "FLOTILLA_LOCALFLEET_HELPER"

// TestHelperProcess is not a test: TestKill9LeavesNothing runs the test binary with helperEnv
// set, and this starts a fleet, freezes the member's API server (SIGKILL must still reach a
// stopped process), reports it on stdout and waits to be killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	f, err := localfleet.Start(t.Context(), localfleet.Options{Members: 1, NoCRDs: true, NoControllerManager: true})
	if err != nil {
		fmt.Printf("ERROR %v\n", strings.ReplaceAll(err.Error(), "\n", " | "))
		os.Exit(2)
	}
	if err := f.Members[0].FreezeAPIServer(); err != nil {
		fmt.Printf("ERROR %v\n", err)
		os.Exit(2)
	}
	// A program of the caller's, as the demo runs fleet-controller: it must die with us too.
	extra, err := f.StartProcess("sleeper", "/bin/sleep", []string{"600"}, localfleet.ProcessOptions{})
	if err != nil {
		fmt.Printf("ERROR %v\n", err)
		os.Exit(2)
	}
	for _, pid := range fleetPIDs(f) {
		fmt.Printf("PID %d\n", pid)
	}
	fmt.Printf("EXTRA %d\n", extra.Pid())
	fmt.Printf("DIR %s\nREADY\n", f.Dir)
	time.Sleep(2 * time.Minute) // killed long before; never Stop: that is the point
	os.Exit(3)
}

// TestKill9LeavesNothing kills a program holding a fleet with SIGKILL, which runs no cleanup
// code at all, and checks that the control planes — a frozen one among them — and the
// directory still go away.
func TestKill9LeavesNothing(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var pids []int
	var dir string
	extra := 0
	lines := bufio.NewScanner(stdout)
	for ready := false; !ready; {
		if !lines.Scan() {
			t.Fatalf("helper ended before READY; stderr:\n%s", stderr.String())
		}
		switch f := strings.Fields(lines.Text()); {
		case len(f) == 2 && f[0] == "PID":
			pid, _ := strconv.Atoi(f[1])
			pids = append(pids, pid)
		case len(f) == 2 && f[0] == "EXTRA":
			extra, _ = strconv.Atoi(f[1])
		case len(f) == 2 && f[0] == "DIR":
			dir = f[1]
		case len(f) == 1 && f[0] == "READY":
			ready = true
		case len(f) > 0 && f[0] == "ERROR":
			t.Fatalf("helper could not start a fleet: %s", lines.Text())
		}
	}
	if len(pids) != 4 || dir == "" || extra == 0 {
		t.Fatalf("helper reported pids %v, extra %d and dir %q, want 4 pids (2 clusters x etcd, kube-apiserver), the StartProcess program and a dir", pids, extra, dir)
	}
	if got := processesMentioning(dir); len(got) < len(pids)+1 {
		t.Fatalf("before the kill, processes mentioning %s = %v, want the %d control-plane processes and the watchdog", dir, got, len(pids))
	}
	pids = append(pids, extra)

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed := time.Now()

	eventually(t, 10*time.Second, "every process of the killed program's fleet to exit and its directory to be removed", func() error {
		var left []int
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("still running: %v", left)
		}
		if got := processesMentioning(dir); len(got) > 0 {
			return fmt.Errorf("processes still refer to %s (the watchdog?): %v", dir, got)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			return fmt.Errorf("%s still exists", dir)
		}
		return nil
	})
	t.Logf("TIMING: everything gone %s after SIGKILL", time.Since(killed).Round(time.Millisecond))
}

func fleetPIDs(f *localfleet.Fleet) []int {
	var pids []int
	for _, c := range append([]*localfleet.ControlPlane{f.Hub}, f.Members...) {
		for _, pid := range c.PIDs() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether pid is a process that has not exited. A zombie has exited: once we are
// gone, reaping our orphans is up to init, which this test does not control.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) state ...": comm may hold spaces, so look after the last ')'.
	rest := stat[bytes.LastIndexByte(stat, ')')+1:]
	f := strings.Fields(string(rest))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// processesMentioning lists live processes whose command line contains s: every process of a
// fleet, the watchdog included, names the fleet's directory in its arguments.
func processesMentioning(s string) []string {
	var found []string
	entries, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, e := range entries {
		cmdline, err := os.ReadFile(e)
		if err != nil || !bytes.Contains(cmdline, []byte(s)) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(e)))
		if pid == os.Getpid() || !alive(pid) {
			continue
		}
		found = append(found, fmt.Sprintf("%d: %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	}
	return found
}
