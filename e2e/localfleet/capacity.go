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
	// apiserverInotify and kcmInotify are how many inotify instances one kube-apiserver and
	// one kube-controller-manager hold (they watch their certificates and keys for
	// rotation): counted in /proc of running ones. fs.inotify.max_user_instances (128 by
	// default) is shared by every process of the user, so by default the whole machine holds
	// about 40 API servers, or 16 clusters with kube-controller-manager.
	apiserverInotify = 3
	kcmInotify       = 5
)

// checkCapacity refuses a fleet the machine cannot hold: not enough available memory, or
// more inotify instances than the user may ever have. Where the kernel does not tell (no
// /proc), it checks nothing. Instances other programs hold now only earn a warning through
// progress: they may be gone by the time this fleet's processes start (other tests ending),
// and a refusal on a guess would fail a run that could have passed.
func checkCapacity(r *resolved) error {
	n := len(r.memberNames) + 1
	need := n * r.clusterMiB()
	if avail, ok := memAvailableMiB(); ok && need > avail {
		return fmt.Errorf("localfleet: the hub and %d members need about %.1f GiB of memory (%d MiB per control plane), "+
			"but only %.1f GiB is available (MemAvailable in /proc/meminfo): start fewer members (Lean and "+
			"NoControllerManager take the least) or free memory first", n-1, gib(need), r.clusterMiB(), gib(avail))
	}
	limit, used, ok := inotifyInstances()
	if !ok {
		return nil
	}
	per := apiserverInotify
	if r.withKCM {
		per += kcmInotify
	}
	fix := fmt.Sprintf("raise the limit (sysctl -w fs.inotify.max_user_instances=%d) or start fewer members", max(1024, used+n*per+128))
	switch {
	case n*per > limit:
		return fmt.Errorf("localfleet: the hub and %d members need %d inotify instances (%d per cluster: its control-plane "+
			"processes watch their certificates), more than fs.inotify.max_user_instances=%d allows this user; they would "+
			"fail with \"too many open files\": %s", n-1, n*per, per, limit, fix)
	case used+n*per > limit:
		r.progress(fmt.Sprintf("localfleet: warning: the hub and %d members need %d inotify instances, and other programs of "+
			"this user hold %d of fs.inotify.max_user_instances=%d; if a control plane fails with \"too many open files\", %s",
			n-1, n*per, used, limit, fix))
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
