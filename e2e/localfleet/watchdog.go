package localfleet

import (
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
)

// watchdogScript keeps a list of live process groups, fed through stdin ("add PGID", "del PGID").
// Only our process holds the write end of that pipe, so EOF means we closed it (Stop) or died,
// possibly by SIGKILL; then it kills what is left and removes the fleet directory ($1).
// It ignores terminal signals so that a Ctrl-C cannot take it down before the cleanup.
const watchdogScript = `trap '' INT HUP TERM
groups=" "
while read -r op id; do
	case "$op" in
	add) groups="$groups$id " ;;
	del) groups=$(printf '%s' "$groups" | sed "s/ $id / /") ;;
	esac
done
for g in $groups; do kill -9 -"$g" 2>/dev/null; done
rm -rf -- "$1"
`

// watchdog is the per-Fleet cleanup process described in the package documentation.
type watchdog struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	in     io.WriteCloser
	closed bool
}

func startWatchdog(dir string) (*watchdog, error) {
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "flotilla-localfleet-watchdog", dir)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// Own group and no PDEATHSIG: it must outlive us. Stdout and stderr are /dev/null so that
	// it never holds a pipe of `go test` open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := spawn(cmd); err != nil {
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	return &watchdog{cmd: cmd, in: in}, nil
}

// add tells the watchdog to kill the group if we die.
func (w *watchdog) add(pgid int) { w.send("add", pgid) }

// del tells the watchdog the group is gone, so that a later process reusing the id is spared.
func (w *watchdog) del(pgid int) { w.send("del", pgid) }

func (w *watchdog) send(op string, pgid int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	// An error means the watchdog died; PDEATHSIG and Stop still clean up, so go on.
	_, _ = fmt.Fprintf(w.in, "%s %d\n", op, pgid)
}

// close lets the watchdog run its cleanup and waits for it.
func (w *watchdog) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	_ = w.in.Close()
	w.mu.Unlock()
	_ = w.cmd.Wait()
}
