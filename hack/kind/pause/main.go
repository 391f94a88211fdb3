// Command pause is the sandbox ("pause") container of the Flotilla kind node image: it
// holds a pod's namespaces open, reaps orphaned children (it is PID 1 when the pod shares
// its process namespace) and exits on SIGINT or SIGTERM. The image is built FROM scratch
// under the name kubeadm and containerd expect (registry.k8s.io/pause:<version>).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
