package localfleet

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStartRetriesAfterLosingAPortRace hands the hub an API server port that another program
// holds, as happens when a port is taken between our check and the bind, and expects the
// start to succeed on fresh ports.
func TestStartRetriesAfterLosingAPortRace(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	calls := 0
	pickPorts = func(n int) ([]int, error) {
		calls++
		ports, err := freePorts(n)
		if calls == 1 && err == nil {
			ports[2] = takenPort // the API server port, bound last
		}
		return ports, err
	}
	defer func() { pickPorts = freePorts }()

	f := StartForTest(t, Options{NoCRDs: true, NoControllerManager: true})
	if calls != 2 {
		t.Errorf("ports picked %d times, want 2 (one lost race, one retry)", calls)
	}
	if strings.Contains(f.Hub.Host(), ":"+strconv.Itoa(takenPort)) {
		t.Errorf("hub serves on the taken port %d", takenPort)
	}
	log, err := os.ReadFile(filepath.Join(f.Hub.Dir, "kube-apiserver.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "address already in use") {
		t.Errorf("kube-apiserver.log does not show the lost race; the retry was not exercised")
	}
}
