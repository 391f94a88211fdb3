package localfleet

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// What a fleet needs of the machine. A fleet of dozens of members fails late and obscurely
// when the machine cannot hold it (an API server killed for memory minutes into the start,
// "too many open files" from a kube-apiserver that cannot watch its certificates), so Start
// checks first and says what is missing.
const (
	// leanClusterMiB and clusterMiB are what one control plane takes once ready: measured, 50
	// lean members without kube-controller-manager took 10.5 GB (≈ 210 MiB each); a full
	// one ≈ 270 MiB of kube-apiserver and 40 MiB of etcd, plus kube-controller-manager.
	leanClusterMiB = 210
	clusterMiB     = 310
	kcmMiB         = 60
	// apiserverInotify is how many inotify instances one kube-apiserver holds (it watches
	// its serving certificate and client CAs for rotation): counted in /proc of a running
	// one. fs.inotify.max_user_instances (128 by default) is shared by every process of the
	// user, so the default allows about 40 API servers on the whole machine.
	apiserverInotify = 3
)

// checkCapacity refuses a fleet the machine cannot hold: not enough available memory, or
// not enough inotify instances left for its API servers. Where the kernel does not tell
// (no /proc), it checks nothing.
func checkCapacity(r *resolved) error {
	n := len(r.memberNames) + 1
	need := n * r.clusterMiB()
	if avail, ok := memAvailableMiB(); ok && need > avail {
		return fmt.Errorf("localfleet: the hub and %d members need about %.1f GiB of memory (%d MiB per control plane), "+
			"but only %.1f GiB is available (MemAvailable in /proc/meminfo): start fewer members (Lean and "+
			"NoControllerManager take the least) or free memory first", n-1, gib(need), r.clusterMiB(), gib(avail))
	}
	if limit, used, ok := inotifyInstances(); ok && used+n*apiserverInotify > limit {
		return fmt.Errorf("localfleet: the hub and %d members need %d inotify instances (%d per kube-apiserver, which "+
			"watches its certificates), but this user has %d of fs.inotify.max_user_instances=%d left (other programs "+
			"hold %d); kube-apiserver would fail with \"too many open files\": raise the limit "+
			"(sysctl -w fs.inotify.max_user_instances=%d) or start fewer members",
			n-1, n*apiserverInotify, apiserverInotify, max(limit-used, 0), limit, used, used+n*apiserverInotify+128)
	}
	return nil
}

// clusterMiB is the memory one control plane of this fleet takes once ready.
func (r *resolved) clusterMiB() int {
	switch {
	case r.lean && !r.withKCM:
		return leanClusterMiB
	case r.withKCM:
		return clusterMiB + kcmMiB
	default:
		return clusterMiB
	}
}

func gib(mib int) float64 { return float64(mib) / 1024 }

// memAvailableMiB is the kernel's estimate of memory available to new processes.
func memAvailableMiB() (int, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if f := strings.Fields(s.Text()); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, err := strconv.Atoi(f[1])
			return kb / 1024, err == nil
		}
	}
	return 0, false
}

// inotifyInstances returns fs.inotify.max_user_instances and how many inotify instances
// processes of this user hold now.
func inotifyInstances() (limit, used int, ok bool) {
	raw, err := os.ReadFile("/proc/sys/fs/inotify/max_user_instances")
	if err != nil {
		return 0, 0, false
	}
	if limit, err = strconv.Atoi(strings.TrimSpace(string(raw))); err != nil {
		return 0, 0, false
	}
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, 0, false
	}
	uid := uint32(os.Getuid())
	for _, p := range procs {
		fi, err := os.Stat(p)
		if err != nil {
			continue // exited meanwhile
		}
		if st, isUnix := fi.Sys().(*syscall.Stat_t); !isUnix || st.Uid != uid {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(p, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(p, "fd", fd.Name())); err == nil && target == "anon_inode:inotify" {
				used++
			}
		}
	}
	return limit, used, true
}

var raiseOnce sync.Once

// raiseOpenFileLimit raises this process's soft RLIMIT_NOFILE to its hard limit, once. The Go
// runtime raises it for itself but gives child processes the original soft limit back; set
// explicitly, the children (every etcd and kube-apiserver) inherit the raised one, and a big
// fleet's API servers, each holding a watch connection per client and kind, do not run out.
func raiseOpenFileLimit() {
	raiseOnce.Do(func() {
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= lim.Max {
			return
		}
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) // best effort: the old limit still works for small fleets
	})
}

// startParallel is how many control planes start at once by default: enough to overlap one
// cluster's waits with another's work, few enough that each gets CPU to pass its readiness
// checks. Fifty at once on 2 cores timed out on /readyz.
func startParallel() int {
	return max(4, 4*runtime.NumCPU())
}

// loadFactor scales readiness timeouts with the machine's load: a control plane that is
// ready in 10 s on an idle machine takes minutes when the load average is ten times the
// cores. It is the 1-minute load average per core, between 1 and maxLoadFactor.
func loadFactor() float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 1
	}
	f := strings.Fields(string(raw))
	if len(f) == 0 {
		return 1
	}
	load, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 1
	}
	return min(max(load/float64(runtime.NumCPU()), 1), maxLoadFactor)
}

const maxLoadFactor = 5

// scaled is d stretched by the machine's load (loadFactor).
func scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * loadFactor())
}
