package localfleet

import (
	"fmt"
	"net"
	"sync"
)

// pickPorts is freePorts; a variable so that a test can stage a lost port race.
var pickPorts = freePorts

var (
	portsMu sync.Mutex
	// portsUsed holds every port this program has handed out, so that clusters starting in
	// parallel never get the same port from the kernel between its close and the bind.
	portsUsed = map[int]bool{}
)

// freePorts returns n distinct loopback ports that were free a moment ago. Another program can
// still take one before our process binds it; startCluster retries on that bind race.
func freePorts(n int) ([]int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			return nil, fmt.Errorf("no free loopback port after %d tries", tries)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		// Keep it open until we are done so the kernel does not hand it out twice.
		defer l.Close()
		port := l.Addr().(*net.TCPAddr).Port
		if portsUsed[port] {
			continue
		}
		portsUsed[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}
