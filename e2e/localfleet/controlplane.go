package localfleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	// startTimeout bounds one attempt to bring a process up on a machine whose load is at
	// most its cores; generous because a 2-core machine starting several API servers at
	// once is slow, and stretched by the load when it is higher (scaled).
	startTimeout = 3 * time.Minute
	// checkTimeout bounds one readiness check, stretched by the load the same way: an API
	// server that answers /readyz in 8 s under load must not fail every check of its wait.
	checkTimeout = 5 * time.Second
	// bindAttempts is how often a cluster start is retried after losing a port race.
	bindAttempts = 3
	pollInterval = 100 * time.Millisecond
)

// ControlPlane is one local cluster: etcd, kube-apiserver and optionally
// kube-controller-manager, plus the admin credentials to reach it.
type ControlPlane struct {
	// Name is the cluster name: "hub" or the member's name, also the kubeconfig context.
	Name string
	// Dir holds the cluster's certificates, etcd data and process logs.
	Dir string
	// KubeconfigPath is the admin kubeconfig file, credentials embedded, context Name.
	KubeconfigPath string
	// Config is the admin rest.Config; copy it (rest.CopyConfig) before changing it.
	Config *rest.Config

	opts *resolved
	wd   *watchdog
	out  func(process string) io.Writer // nil: log files only

	pki                                         *pki
	kubeconfig                                  []byte
	etcdClientPort, etcdPeerPort, apiserverPort int

	stopOnce sync.Once
	stopped  chan struct{} // closed by Stop: waits give up

	mu                   sync.Mutex // guards the processes
	etcd, apiserver, kcm *process
}

func newControlPlane(name, fleetDir string, opts *resolved, wd *watchdog, out func(string, string) io.Writer) (*ControlPlane, error) {
	dir := filepath.Join(fleetDir, name)
	if err := os.MkdirAll(filepath.Join(dir, "apiserver-certs"), 0o700); err != nil {
		return nil, err
	}
	c := &ControlPlane{
		Name:           name,
		Dir:            dir,
		KubeconfigPath: filepath.Join(dir, "kubeconfig"),
		opts:           opts,
		wd:             wd,
		stopped:        make(chan struct{}),
	}
	if out != nil {
		c.out = func(process string) io.Writer { return out(name, process) }
	}
	if opts.auditLog {
		if err := c.writeAuditPolicy(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// start brings the cluster up, retrying with fresh ports when a process lost a bind race.
func (c *ControlPlane) start(ctx context.Context) error {
	var err error
	if c.pki, err = newPKI(c.Dir); err != nil {
		return fmt.Errorf("cluster %q: credentials: %w", c.Name, err)
	}
	for attempt := 1; ; attempt++ {
		err = c.startOnce(ctx)
		if err == nil {
			return nil
		}
		c.stopProcesses()
		var exited *exitedError
		if attempt >= bindAttempts || !errors.As(err, &exited) || !strings.Contains(exited.tail, "address already in use") {
			return fmt.Errorf("cluster %q: %w", c.Name, err)
		}
		// Lost a port to another program: fresh ports, fresh etcd.
		if err := os.RemoveAll(filepath.Join(c.Dir, "etcd")); err != nil {
			return fmt.Errorf("cluster %q: %w", c.Name, err)
		}
	}
}

func (c *ControlPlane) startOnce(ctx context.Context) error {
	ports, err := pickPorts(3)
	if err != nil {
		return err
	}
	c.etcdClientPort, c.etcdPeerPort, c.apiserverPort = ports[0], ports[1], ports[2]
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isStopped() {
		return errors.New("stopped while starting")
	}

	if c.etcd, err = c.launch("etcd", c.etcdArgs()); err != nil {
		return err
	}
	etcdHealth := fmt.Sprintf("http://127.0.0.1:%d/health", c.etcdClientPort)
	if err := c.waitFor(ctx, "etcd to be healthy", func(ctx context.Context) error {
		return httpOK(ctx, etcdHealth)
	}, c.etcd); err != nil {
		return err
	}

	if err := c.startAPIServerLocked(ctx); err != nil {
		return err
	}
	if err := c.waitFor(ctx, `namespace "default"`, func(ctx context.Context) error {
		_, err := cs.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
		return err
	}, c.etcd, c.apiserver); err != nil {
		return err
	}

	if !c.opts.withKCM {
		return nil
	}
	if c.kcm, err = c.launch("kube-controller-manager", c.kcmArgs()); err != nil {
		return err
	}
	// The ServiceAccount controller is the last thing a test usually depends on.
	return c.waitFor(ctx, `ServiceAccount "default/default" (created by kube-controller-manager)`, func(ctx context.Context) error {
		_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	}, c.etcd, c.apiserver, c.kcm)
}

// startAPIServerLocked starts kube-apiserver and waits for /readyz; c.mu must be held.
func (c *ControlPlane) startAPIServerLocked(ctx context.Context) error {
	var err error
	if c.apiserver, err = c.launch("kube-apiserver", c.apiserverArgs()); err != nil {
		return err
	}
	httpClient, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		return err
	}
	readyz := c.Config.Host + "/readyz"
	return c.waitFor(ctx, "kube-apiserver /readyz", func(ctx context.Context) error {
		return httpGetOK(ctx, httpClient, readyz)
	}, c.etcd, c.apiserver)
}

// StopAPIServer stops only kube-apiserver, leaving etcd and kube-controller-manager running,
// so that tests can watch a member become unreachable and come back with its data.
func (c *ControlPlane) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isStopped() {
		return fmt.Errorf("cluster %q is stopped", c.Name)
	}
	c.stopProcess(&c.apiserver)
	return nil
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the same port with the same
// etcd and certificates, and waits until it is ready. It does nothing if it is running.
func (c *ControlPlane) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isStopped() {
		return fmt.Errorf("cluster %q is stopped", c.Name)
	}
	if c.apiserver != nil && !c.apiserver.exited() {
		return nil
	}
	c.stopProcess(&c.apiserver) // reap a crashed one
	if err := c.startAPIServerLocked(ctx); err != nil {
		c.stopProcess(&c.apiserver)
		return fmt.Errorf("cluster %q: %w", c.Name, err)
	}
	return nil
}

// FreezeAPIServer stops kube-apiserver with SIGSTOP: its port stays open and the kernel still
// accepts connections, established connections stay up, but nothing answers — the hung member
// that a deadline must catch, unlike StopAPIServer's refused connections. ThawAPIServer undoes
// it; Stop and StopAPIServer thaw a frozen server themselves, so a test that fails while a
// member is frozen still tears down promptly.
func (c *ControlPlane) FreezeAPIServer() error {
	return c.signalAPIServer("freeze", syscall.SIGSTOP)
}

// ThawAPIServer continues a kube-apiserver frozen by FreezeAPIServer (SIGCONT); it answers again
// on the connections it had. Thawing a server that is not frozen does nothing.
func (c *ControlPlane) ThawAPIServer() error {
	return c.signalAPIServer("thaw", syscall.SIGCONT)
}

func (c *ControlPlane) signalAPIServer(what string, sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isStopped() {
		return fmt.Errorf("%s kube-apiserver of cluster %q: cluster is stopped", what, c.Name)
	}
	if c.apiserver == nil {
		return fmt.Errorf("%s kube-apiserver of cluster %q: not running (StopAPIServer)", what, c.Name)
	}
	if err := c.apiserver.signal(sig); err != nil {
		return fmt.Errorf("%s kube-apiserver of cluster %q: %w", what, c.Name, err)
	}
	return nil
}

// Stop stops every process of the cluster and waits for them. The directory stays; Fleet.Stop
// removes it. Safe to call more than once and concurrently.
func (c *ControlPlane) Stop() error {
	c.stopOnce.Do(func() { close(c.stopped) }) // makes a concurrent start give up quickly
	c.stopProcesses()
	return nil
}

func (c *ControlPlane) isStopped() bool {
	select {
	case <-c.stopped:
		return true
	default:
		return false
	}
}

// stopProcesses stops kube-controller-manager and kube-apiserver together, then etcd, which
// both depend on (stopping etcd first would make the API server's shutdown hang).
func (c *ControlPlane) stopProcesses() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { c.stopProcess(&c.kcm) })
	wg.Go(func() { c.stopProcess(&c.apiserver) })
	wg.Wait()
	c.stopProcess(&c.etcd)
}

func (c *ControlPlane) stopProcess(pp **process) {
	if p := *pp; p != nil {
		p.stop()
		c.wd.del(p.pid())
		*pp = nil
	}
}

// launch starts one binary of the cluster and registers its group with the watchdog.
func (c *ControlPlane) launch(name string, args []string) (*process, error) {
	var also io.Writer
	if c.out != nil {
		also = c.out(name)
	}
	p, err := startProcess(name, filepath.Join(c.opts.assetsDir, name), args, c.leanEnv(name), filepath.Join(c.Dir, name+".log"), also)
	if err != nil {
		return nil, err
	}
	c.wd.add(p.pid())
	return p, nil
}

// leanEnv is the Go runtime's memory tuning of a Lean fleet's processes (nil otherwise).
func (c *ControlPlane) leanEnv(name string) []string {
	if !c.opts.lean {
		return nil
	}
	limit := "256MiB"
	if name == "etcd" {
		limit = "96MiB"
	}
	return []string{"GOGC=50", "GOMEMLIMIT=" + limit}
}

// waitFor polls check until it succeeds, failing early with the process's log when one of
// procs exits, or when ctx ends, startTimeout passes or the cluster is stopped. An exit also
// interrupts a check in flight: a probe of a port that some other program holds may hang.
func (c *ControlPlane) waitFor(ctx context.Context, what string, check func(context.Context) error, procs ...*process) error {
	ctx, cancel := context.WithTimeout(ctx, scaled(startTimeout))
	defer cancel()
	for _, p := range procs {
		go func() {
			select {
			case <-p.done:
			case <-c.stopped:
			case <-ctx.Done():
			}
			cancel()
		}()
	}
	lastErr := errors.New("not checked yet")
	for {
		for _, p := range procs {
			if p.exited() {
				return fmt.Errorf("waiting for %s: %w", what, p.exitError())
			}
		}
		if c.isStopped() {
			return fmt.Errorf("waiting for %s: cluster stopped", what)
		}
		if err := ctx.Err(); err != nil {
			last := procs[len(procs)-1]
			//nolint:errorlint // ctx.Err() is the cause; the last check error is only context for a person.
			return fmt.Errorf("waiting for %s: %w (last error: %v); last lines of %s:\n%s",
				what, err, lastErr, last.logPath, tailFile(last.logPath, 20))
		}
		checkCtx, checkCancel := context.WithTimeout(ctx, scaled(checkTimeout))
		lastErr = check(checkCtx)
		checkCancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-time.After(pollInterval):
		case <-ctx.Done():
		}
	}
}
