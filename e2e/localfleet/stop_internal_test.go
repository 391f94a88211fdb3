package localfleet

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestStopThawsAFrozenAPIServer: a test that fails while a member is frozen must not make
// teardown wait out the SIGKILL grace period (or hang): Stop continues a frozen server, which
// then shuts down on its SIGTERM like any other.
func TestStopThawsAFrozenAPIServer(t *testing.T) {
	f, err := Start(t.Context(), Options{Members: 1, NoCRDs: true, NoControllerManager: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Stop() })
	m := f.Members[0]
	if err := m.FreezeAPIServer(); err != nil {
		t.Fatalf("FreezeAPIServer: %v", err)
	}
	m.mu.Lock()
	apiserver := m.apiserver
	m.mu.Unlock()

	begin := time.Now()
	if err := f.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("TIMING: Stop with a frozen member took %s", time.Since(begin).Round(time.Millisecond))
	<-apiserver.done
	var exit *exec.ExitError
	if errors.As(apiserver.waitErr, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			t.Fatalf("the frozen kube-apiserver was SIGKILLed after %s instead of shutting down on SIGTERM: Stop did not thaw it", stopGrace)
		}
	}
}
