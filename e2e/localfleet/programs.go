package localfleet

import (
	"errors"
	"fmt"
	"path/filepath"
)

// Programs a caller runs next to the clusters (fleet-controller in the demo) get the same
// guarantees as the control planes: own process group, PDEATHSIG, and the fleet's watchdog
// kills them if the caller dies, even by SIGKILL.

// ProcessOptions say how to run a program with StartProcess.
type ProcessOptions struct {
	// Env is added to this program's environment.
	Env []string
	// LogPath receives the program's output, appended; the default is <Fleet.Dir>/<name>.log,
	// removed by Stop like the clusters' logs.
	LogPath string
}

// Process is a program started by Fleet.StartProcess.
type Process struct {
	// Name is the name given to StartProcess.
	Name string
	// LogPath is the file holding the program's output.
	LogPath string

	p  *process
	wd *watchdog
}

// StartProcess starts bin with args in its own process group, tied to the fleet: it dies with
// the caller (PDEATHSIG and the watchdog) and Fleet.Stop stops it before the clusters. It
// returns once the program has started, not once it is ready; poll for readiness.
func (f *Fleet) StartProcess(name, bin string, args []string, o ProcessOptions) (*Process, error) {
	logPath := o.LogPath
	if logPath == "" {
		logPath = filepath.Join(f.Dir, name+".log")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping {
		return nil, errors.New("localfleet: fleet is stopping")
	}
	p, err := startProcess(name, bin, args, o.Env, logPath, nil)
	if err != nil {
		return nil, fmt.Errorf("localfleet: %w", err)
	}
	f.wd.add(p.pid())
	proc := &Process{Name: name, LogPath: logPath, p: p, wd: f.wd}
	f.procs = append(f.procs, proc)
	return proc, nil
}

// Pid is the program's process id (also its process group id).
func (p *Process) Pid() int { return p.p.pid() }

// Done is closed once the program has exited.
func (p *Process) Done() <-chan struct{} { return p.p.done }

// Err is the program's exit status (nil for a clean exit); valid once Done is closed.
func (p *Process) Err() error { return p.p.waitErr }

// Stop sends SIGTERM to the program's process group, SIGKILL after 5 seconds, and waits until it
// has exited. Safe to call more than once and concurrently.
func (p *Process) Stop() {
	p.p.stop()
	p.wd.del(p.p.pid())
}

// stopProcesses stops what StartProcess started and refuses new programs.
func (f *Fleet) stopProcesses() {
	f.mu.Lock()
	f.stopping = true
	procs := f.procs
	f.mu.Unlock()
	for _, p := range procs {
		p.Stop()
	}
}
