package fleettest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// FreezeAPIServer stops (SIGSTOP) the kube-apiserver whose command line mentions dir — a
// local control plane's directory — so that its TCP connections stay open and nothing
// answers, the nastiest way a member fails. thaw (SIGCONT) is idempotent and also runs at
// the end of tb. (Stands in for localfleet's Freeze/Thaw until those land.)
func FreezeAPIServer(tb testing.TB, dir string) (thaw func()) {
	tb.Helper()
	pid := apiServerPID(tb, dir)
	Must(tb, syscall.Kill(pid, syscall.SIGSTOP))
	var once sync.Once
	thaw = func() { once.Do(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) }
	tb.Cleanup(thaw)
	return thaw
}

func apiServerPID(tb testing.TB, dir string) int {
	tb.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	Must(tb, err)
	for _, path := range cmdlines {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		args := bytes.Split(data, []byte{0})
		if len(args) == 0 || filepath.Base(string(args[0])) != "kube-apiserver" || !bytes.Contains(data, []byte(dir+"/")) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		Must(tb, err)
		return pid
	}
	tb.Fatalf("no kube-apiserver process of %s", dir)
	return 0
}
