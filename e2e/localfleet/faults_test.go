package localfleet_test

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

// TestFreezeAndThaw checks the hung-member fault: while a member's API server is frozen, a
// request neither fails fast nor gets an answer — it runs into the caller's deadline, on a
// connection opened before the freeze and on a new one alike — and after Thaw the same client
// is answered again.
func TestFreezeAndThaw(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 1, NoCRDs: true, NoControllerManager: true})
	m := f.Members[0]
	warm := kubernetes.NewForConfigOrDie(m.Config) // keeps its connection open across the freeze
	getDefault(t, warm, 10*time.Second)            // opens it

	if err := m.FreezeAPIServer(); err != nil {
		t.Fatalf("FreezeAPIServer: %v", err)
	}
	if _, running := m.PIDs()["kube-apiserver"]; !running {
		t.Errorf("kube-apiserver not listed as running while frozen (it is stopped, not gone)")
	}
	const deadline = 2 * time.Second
	fresh := rest.CopyConfig(m.Config)
	fresh.Dial = (&net.Dialer{}).DialContext // a config with its own Dial shares no cached transport
	freshClient := kubernetes.NewForConfigOrDie(fresh)
	for name, cs := range map[string]*kubernetes.Clientset{"open connection": warm, "new connection": freshClient} {
		begin := time.Now()
		err := getDefaultErr(t.Context(), cs, deadline)
		took := time.Since(begin)
		if err == nil {
			t.Fatalf("%s: GET namespace answered while the API server was frozen", name)
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("%s: connection refused while frozen, want a timeout (a frozen server keeps its port): %v", name, err)
		}
		if !errors.Is(err, context.DeadlineExceeded) || took < deadline {
			t.Fatalf("%s: after %s: err=%v, want the %s deadline to expire", name, took.Round(time.Millisecond), err, deadline)
		}
		t.Logf("%s: request while frozen timed out after %s as expected", name, took.Round(time.Millisecond))
	}

	if err := m.ThawAPIServer(); err != nil {
		t.Fatalf("ThawAPIServer: %v", err)
	}
	begin := time.Now()
	getDefault(t, warm, 10*time.Second)
	t.Logf("TIMING: first answer %s after Thaw", time.Since(begin).Round(time.Millisecond))
	if err := m.ThawAPIServer(); err != nil {
		t.Errorf("ThawAPIServer on a running server: %v, want nothing to happen", err)
	}

	// A test that forgot Options.AuditLog must fail loudly, never count zero writes from a log
	// that does not exist.
	if _, err := m.AuditMark(); err == nil {
		t.Errorf("AuditMark on a fleet started without Options.AuditLog succeeded, want an error naming the option")
	}

	if err := m.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := m.FreezeAPIServer(); err == nil {
		t.Errorf("FreezeAPIServer after StopAPIServer succeeded, want an error saying it is not running")
	}
}

func getDefault(t *testing.T, cs kubernetes.Interface, timeout time.Duration) {
	t.Helper()
	if err := getDefaultErr(t.Context(), cs, timeout); err != nil {
		t.Fatalf("GET namespace default: %v", err)
	}
}

func getDefaultErr(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := cs.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
	return err
}
