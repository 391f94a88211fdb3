package localfleet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a process may take to exit after SIGTERM before it gets SIGKILL.
const stopGrace = 5 * time.Second

// process is one running control-plane binary in its own process group.
type process struct {
	name    string // etcd, kube-apiserver, kube-controller-manager
	logPath string
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{} // closed when the process has exited and been reaped
	waitErr error         // valid after done is closed

	stopOnce sync.Once
}

// startProcess starts bin with args in a new process group, appending its output to logPath
// (and to also, if not nil). env, if not nil, is added to this program's environment. The
// caller registers the group with the watchdog; PDEATHSIG covers the moment in between.
func startProcess(name, bin string, args, env []string, logPath string, also io.Writer) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logFile, "--- %s %s %s\n", time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))

	cmd := exec.Command(bin, args...)
	cmd.Stdin = nil // /dev/null
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if also != nil {
		w := io.MultiWriter(logFile, also)
		cmd.Stdout, cmd.Stderr = w, w
	} else {
		// A file, not a pipe: no copying goroutine, and output still lands after we die.
		cmd.Stdout, cmd.Stderr = logFile, logFile
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // own group: terminal signals go to the caller only
		Pdeathsig: syscall.SIGKILL, // dies with us (see spawn for why this is reliable)
	}
	if err := spawn(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, logFile: logFile, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the process group, unless the process has exited (its id may be reused).
func (p *process) signal(sig syscall.Signal) error {
	if p.exited() {
		return fmt.Errorf("%s has exited", p.name)
	}
	if err := syscall.Kill(-p.pid(), sig); err != nil {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	return nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitedError reports a process that exited when it should be running.
type exitedError struct {
	name, logPath string
	waitErr       error
	tail          string // the last lines of its log: the reason is almost always there
}

func (e *exitedError) Error() string {
	return fmt.Sprintf("%s exited (%v); last lines of %s:\n%s", e.name, e.waitErr, e.logPath, e.tail)
}

// exitError describes an unexpected exit; call it only after the process exited.
func (p *process) exitError() error {
	return &exitedError{name: p.name, logPath: p.logPath, waitErr: p.waitErr, tail: tailFile(p.logPath, 20)}
}

// stop sends SIGTERM to the process group, SIGKILL after stopGrace, and waits until the process
// has been reaped. Safe to call more than once and concurrently. A frozen process (Freeze) is
// continued right after the SIGTERM, so that it shuts down cleanly instead of sitting out
// stopGrace with the signal pending.
func (p *process) stop() {
	p.stopOnce.Do(func() {
		pgid := p.pid() // Setpgid with Pgid 0: the group id is the pid
		if p.exited() {
			return // the binaries fork no children, so an exited leader leaves an empty group
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		_ = syscall.Kill(-pgid, syscall.SIGCONT)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	})
}

var (
	spawnOnce sync.Once
	spawnReqs chan spawnRequest
)

type spawnRequest struct {
	cmd  *exec.Cmd
	errc chan error
}

// spawn starts cmd from one goroutine locked to its OS thread for the life of the program.
// PDEATHSIG fires when the *thread* that forked the child exits, not the process; Go may end a
// thread whose goroutine exited while locked to it, which would kill our children at a random
// moment. Forking only from a thread that never exits makes PDEATHSIG mean "when we die".
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the program
			for r := range spawnReqs {
				r.errc <- r.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnReqs <- spawnRequest{cmd: cmd, errc: errc}
	return <-errc
}

// tailFile returns up to n last lines of a file, for error messages and test logs.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	const window = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		_, _ = f.Seek(-window, io.SeekEnd)
	}
	data, err := io.ReadAll(f)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// prefixWriter prefixes every line with a tag and serializes writes from many processes onto
// one writer, so that the demo's combined output stays readable.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (pw *prefixWriter) Write(b []byte) (int, error) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.buf = append(pw.buf, b...)
	for {
		i := bytes.IndexByte(pw.buf, '\n')
		if i < 0 {
			break
		}
		if _, err := fmt.Fprintf(pw.w, "%s%s\n", pw.prefix, pw.buf[:i]); err != nil {
			pw.buf = pw.buf[:0]
			return len(b), nil // never fail the process's output because of the extra writer
		}
		pw.buf = pw.buf[i+1:]
	}
	return len(b), nil
}
