package localfleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// startTimeout bounds one attempt to bring a process up; generous because a 2-core
	// machine starting several API servers at once is slow.
	startTimeout = 3 * time.Minute
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

	opts                                        *resolved
	wd                                          *watchdog
	out                                         func(process string) io.Writer // nil: log files only
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
	p, err := startProcess(name, filepath.Join(c.opts.assetsDir, name), args, filepath.Join(c.Dir, name+".log"), also)
	if err != nil {
		return nil, err
	}
	c.wd.add(p.pid())
	return p, nil
}

// waitFor polls check until it succeeds, failing early with the process's log when one of
// procs exits, or when ctx ends, startTimeout passes or the cluster is stopped. An exit also
// interrupts a check in flight: a probe of a port that some other program holds may hang.
func (c *ControlPlane) waitFor(ctx context.Context, what string, check func(context.Context) error, procs ...*process) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
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
			return fmt.Errorf("waiting for %s: %w (last error: %v); last lines of %s:\n%s",
				what, err, lastErr, last.logPath, tailFile(last.logPath, 20))
		}
		checkCtx, checkCancel := context.WithTimeout(ctx, 5*time.Second)
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

func (c *ControlPlane) etcdArgs() []string {
	client := fmt.Sprintf("http://127.0.0.1:%d", c.etcdClientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", c.etcdPeerPort)
	return []string{
		"--name=" + c.Name,
		"--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=" + c.Name + "=" + peer,
		"--unsafe-no-fsync", // throwaway data; fsync dominates start-up and write latency
	}
}

func (c *ControlPlane) apiserverArgs() []string {
	p := c.pki
	return []string{
		"--advertise-address=127.0.0.1",
		// The endpoint reconciler refuses a loopback address; without it the "kubernetes"
		// Service simply has no Endpoints, which nothing here needs.
		"--endpoint-reconciler-type=none",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.apiserverPort),
		"--cert-dir=" + filepath.Join(c.Dir, "apiserver-certs"),
		"--tls-cert-file=" + p.servingCertFile,
		"--tls-private-key-file=" + p.servingKeyFile,
		"--client-ca-file=" + p.caCertFile,
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", c.etcdClientPort),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + p.saPubFile,
		"--service-account-signing-key-file=" + p.saKeyFile,
		"--service-cluster-ip-range=10.0.0.0/24", // clusters are isolated; one range for all
		"--authorization-mode=RBAC",              // tests rely on non-admin identities being denied
		"--allow-privileged=true",
	}
}

func (c *ControlPlane) kcmArgs() []string {
	p := c.pki
	return []string{
		"--kubeconfig=" + c.KubeconfigPath,
		"--controllers=*",
		"--leader-elect=false",
		"--secure-port=0", // serve nothing, so that many can share loopback
		"--cluster-name=" + c.Name,
		"--service-account-private-key-file=" + p.saKeyFile,
		"--root-ca-file=" + p.caCertFile,
		"--use-service-account-credentials=false",
		"--cluster-signing-cert-file=" + p.caCertFile,
		"--cluster-signing-key-file=" + p.caKeyFile,
	}
}

// writeKubeconfig writes the admin kubeconfig with embedded credentials (the Flotilla hub
// rejects kubeconfigs with file references, and tests register members from these files) and
// sets Config to match.
func (c *ControlPlane) writeKubeconfig() error {
	host := fmt.Sprintf("https://127.0.0.1:%d", c.apiserverPort)
	user := c.Name + "-admin"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[c.Name] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: c.pki.caCert}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: c.pki.adminCert, ClientKeyData: c.pki.adminKey}
	cfg.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: user}
	cfg.CurrentContext = c.Name
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.KubeconfigPath, data, 0o600); err != nil {
		return err
	}
	c.kubeconfig = data
	c.Config = &rest.Config{
		Host: host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.pki.caCert,
			CertData: c.pki.adminCert,
			KeyData:  c.pki.adminKey,
		},
		// client-go's default of 5 QPS would make setup-heavy tests crawl; these servers are
		// ours alone.
		QPS:   200,
		Burst: 400,
	}
	return nil
}

// Kubeconfig returns the admin kubeconfig (the content of KubeconfigPath).
func (c *ControlPlane) Kubeconfig() []byte { return append([]byte(nil), c.kubeconfig...) }

// Host returns the API server URL, https://127.0.0.1:<port>.
func (c *ControlPlane) Host() string { return c.Config.Host }

// Client returns a controller-runtime client with admin rights, knowing the client-go and
// apiextensions types; packages with their own types build their own client from Config.
func (c *ControlPlane) Client() (client.Client, error) {
	return client.New(rest.CopyConfig(c.Config), client.Options{Scheme: clientScheme})
}

// PIDs returns the process id of each running process of the cluster, by binary name.
func (c *ControlPlane) PIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	pids := map[string]int{}
	for _, p := range []*process{c.etcd, c.apiserver, c.kcm} {
		if p != nil && !p.exited() {
			pids[p.name] = p.pid()
		}
	}
	return pids
}

// RSS returns the resident memory in bytes of each running process of the cluster, by binary
// name, read from /proc, so that tests and the demo can report memory per member.
func (c *ControlPlane) RSS() (map[string]uint64, error) {
	rss := map[string]uint64{}
	for name, pid := range c.PIDs() {
		n, err := vmRSS(pid)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %s: %w", c.Name, name, err)
		}
		rss[name] = n
	}
	return rss, nil
}

func vmRSS(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "123456 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// logFiles lists the process logs of the cluster, for diagnosis after a failed test.
func (c *ControlPlane) logFiles() []string {
	files, _ := filepath.Glob(filepath.Join(c.Dir, "*.log"))
	return files
}

// probeClient keeps no idle connections: one held open to etcd makes its SIGTERM shutdown wait
// seconds for it to drain.
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func httpOK(ctx context.Context, url string) error {
	return httpGetOK(ctx, probeClient, url)
}

func httpGetOK(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
