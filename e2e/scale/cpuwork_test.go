package scale

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// work is the CPU the fleet's processes used, split by who did it: the members' API servers
// and etcds, the hub's, and this process (the hub controller and the benchmark's own
// clients). On 2 cores saturated by the members a phase takes as long as the work it causes,
// so this says why a ratio against the floor is what it is, not only that it is.
type work struct {
	members, hubPlane, self time.Duration
}

func (w work) sub(o work) work {
	return work{members: w.members - o.members, hubPlane: w.hubPlane - o.hubPlane, self: w.self - o.self}
}

// measureWork reads the CPU time so far of every process of fleet and of this one.
func measureWork(b *testing.B, fleet *localfleet.Fleet) work {
	b.Helper()
	w := work{self: cpuTime(b)}
	for _, m := range fleet.Members {
		w.members += planeCPU(b, m)
	}
	w.hubPlane = planeCPU(b, fleet.Hub)
	return w
}

// planeCPU is the CPU time its processes (API server, etcd, controller manager) used.
func planeCPU(b *testing.B, c *localfleet.ControlPlane) time.Duration {
	var total time.Duration
	for name, pid := range c.PIDs() {
		d, err := procCPU(pid)
		if err != nil {
			b.Fatalf("cluster %s: %s: %v", c.Name, name, err)
		}
		total += d
	}
	return total
}

// procCPU is utime+stime of pid, from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: fields count from
	// the last ')'. utime and stime are fields 14 and 15, the 12th and 13th after it.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, len(f))
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * clockTick, nil
}
