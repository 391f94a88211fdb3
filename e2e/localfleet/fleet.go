package localfleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Fleet is a hub and its member clusters, all running on this machine.
type Fleet struct {
	// Hub is the cluster the Flotilla controller runs against; CRDs are installed here.
	Hub *ControlPlane
	// Members are the member clusters, in the order of Options.MemberNames.
	Members []*ControlPlane
	// Dir holds one directory per cluster; Stop removes it.
	Dir string

	wd       *watchdog
	stopOnce sync.Once
	stopErr  error

	mu       sync.Mutex // guards procs and stopping
	procs    []*Process // started by StartProcess; stopped before the clusters
	stopping bool       // Stop began: StartProcess refuses
}

// TB is the part of testing.TB that StartForTest uses. It is declared here, rather than taking
// testing.TB, so that this package does not import package testing: programs that only call
// Start (hack/demo) must not link test code.
type TB interface {
	Helper()
	Context() context.Context
	Cleanup(func())
	Failed() bool
	Fatal(args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

// Start starts the hub and the members in parallel and returns when every API server is ready,
// the CRDs are served on the hub and (unless disabled) every kube-controller-manager has
// created the default ServiceAccount. On failure nothing is left running and the error names
// the cluster and carries the end of the failing process's log.
func Start(ctx context.Context, opts Options) (*Fleet, error) {
	r, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if err := checkCapacity(&r); err != nil {
		return nil, err
	}
	raiseOpenFileLimit()
	if err := os.MkdirAll(r.workDir, 0o755); err != nil {
		return nil, fmt.Errorf("localfleet: %w", err)
	}
	dir, err := os.MkdirTemp(r.workDir, "flotilla-fleet-")
	if err != nil {
		return nil, fmt.Errorf("localfleet: %w", err)
	}
	wd, err := startWatchdog(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("localfleet: %w", err)
	}
	f := &Fleet{Dir: dir, wd: wd}

	var out func(cluster, process string) io.Writer
	if r.log != nil {
		mu := &sync.Mutex{}
		out = func(cluster, process string) io.Writer {
			return &prefixWriter{mu: mu, w: r.log, prefix: "[" + cluster + "/" + process + "] "}
		}
	}
	for i, name := range append([]string{HubName}, r.memberNames...) {
		c, err := newControlPlane(name, dir, &r, wd, out)
		if err != nil {
			_ = f.Stop()
			return nil, fmt.Errorf("localfleet: cluster %q: %w", name, err)
		}
		if i == 0 {
			f.Hub = c
		} else {
			f.Members = append(f.Members, c)
		}
	}

	// One failure cancels the others: waiting for them to come up only to stop them is slow.
	// At most r.parallel start at once, the hub first.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clusters := f.clusters()
	errs := make([]error, len(clusters))
	slots := make(chan struct{}, r.parallel)
	begin := time.Now()
	var ready atomic.Int32
	if len(clusters) > r.parallel {
		r.progress(fmt.Sprintf("localfleet: starting %d control planes, %d at a time", len(clusters), r.parallel))
	}
	var wg sync.WaitGroup
	notStarted := 0
	for i, c := range clusters {
		// Once a cluster failed or the caller cancelled, start no more (a select between a
		// free slot and the cancellation could pick the slot).
		if ctx.Err() == nil {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			if notStarted == 0 {
				errs[i] = fmt.Errorf("%d control planes not started: %w", len(clusters)-i, ctx.Err())
			}
			notStarted++
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			err := c.start(ctx)
			if err == nil && c == f.Hub && r.crdDir != "" {
				if err = installCRDs(ctx, c, r.crdDir); err != nil {
					err = fmt.Errorf("cluster %q: install CRDs from %s: %w", c.Name, r.crdDir, err)
				}
			}
			if err != nil {
				errs[i] = err
				cancel()
				return
			}
			r.progress(fmt.Sprintf("localfleet: %s ready: %d of %d, %s", c.Name, ready.Add(1), len(clusters), time.Since(begin).Round(time.Second)))
		})
	}
	wg.Wait()
	if err := startError(ctx, errs); err != nil {
		_ = f.Stop()
		return nil, fmt.Errorf("localfleet: %w", err)
	}
	return f, nil
}

// startError keeps the errors that caused the failure and drops the cancellations they caused
// in the other clusters, unless the caller's context is what ended.
func startError(ctx context.Context, errs []error) error {
	var causes, all []error
	for _, err := range errs {
		if err == nil {
			continue
		}
		all = append(all, err)
		if !errors.Is(err, context.Canceled) {
			causes = append(causes, err)
		}
	}
	if len(causes) > 0 {
		return errors.Join(causes...)
	}
	return errors.Join(all...)
}

// StartForTest starts a fleet for a test and stops it when the test ends. When the test failed,
// it first logs the end of every process log, since Stop removes them.
func StartForTest(t TB, opts Options) *Fleet {
	t.Helper()
	begin := time.Now()
	if opts.Progress == nil {
		opts.Progress = func(line string) { t.Logf("%s", line) }
	}
	f, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("localfleet: hub + %d members ready in %s (%s)", len(f.Members), time.Since(begin).Round(time.Millisecond), f.Dir)
	t.Cleanup(func() {
		if t.Failed() {
			f.logTails(t, 40)
		}
		if err := f.Stop(); err != nil {
			t.Errorf("localfleet: stop: %v", err)
		}
	})
	return f
}

// Member returns the member with the given name, or nil.
func (f *Fleet) Member(name string) *ControlPlane {
	for _, m := range f.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Stop stops every process, waits for them to exit and removes Dir. It is safe to call more
// than once and from several goroutines (a test cleanup and a signal handler, say); later
// calls wait for the first and return its result.
func (f *Fleet) Stop() error {
	f.stopOnce.Do(func() {
		// The caller's processes first: they talk to the clusters and would otherwise log a
		// storm of connection errors while the clusters go away.
		f.stopProcesses()
		var wg sync.WaitGroup
		for _, c := range f.clusters() {
			wg.Go(func() { _ = c.Stop() })
		}
		wg.Wait()
		f.wd.close() // the watchdog removes Dir too; removing it here as well makes Stop's result certain
		if err := os.RemoveAll(f.Dir); err != nil {
			f.stopErr = fmt.Errorf("localfleet: remove %s: %w", f.Dir, err)
		}
	})
	return f.stopErr
}

func (f *Fleet) clusters() []*ControlPlane {
	var all []*ControlPlane
	if f.Hub != nil {
		all = append(all, f.Hub)
	}
	return append(all, f.Members...)
}

func (f *Fleet) logTails(t TB, lines int) {
	t.Helper()
	for _, c := range f.clusters() {
		for _, file := range c.logFiles() {
			t.Logf("localfleet: last %d lines of %s:\n%s", lines, file, tailFile(file, lines))
		}
	}
}
