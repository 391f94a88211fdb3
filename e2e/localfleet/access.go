package localfleet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Ways in: kubeconfig, rest.Config and clients; and ways to look at the processes.

// writeKubeconfig writes the admin kubeconfig with embedded credentials (the Flotilla hub
// rejects kubeconfigs with file references, and tests register members from these files) and
// sets Config to match; and kube-controller-manager's own kubeconfig.
func (c *ControlPlane) writeKubeconfig() error {
	host := fmt.Sprintf("https://127.0.0.1:%d", c.apiserverPort)
	data, err := c.kubeconfigFor(c.Name+"-admin", c.pki.adminCert, c.pki.adminKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.KubeconfigPath, data, 0o600); err != nil {
		return err
	}
	kcm, err := c.kubeconfigFor(kcmUser, c.pki.kcmCert, c.pki.kcmKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.kcmKubeconfigPath(), kcm, 0o600); err != nil {
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

// kubeconfigFor is a kubeconfig for this cluster with the given client certificate embedded;
// its context is named after the cluster.
func (c *ControlPlane) kubeconfigFor(authInfo string, cert, key []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[c.Name] = &clientcmdapi.Cluster{
		Server:                   fmt.Sprintf("https://127.0.0.1:%d", c.apiserverPort),
		CertificateAuthorityData: c.pki.caCert,
	}
	cfg.AuthInfos[authInfo] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: authInfo}
	cfg.CurrentContext = c.Name
	return clientcmd.Write(*cfg)
}

func (c *ControlPlane) kcmKubeconfigPath() string {
	return filepath.Join(c.Dir, "kube-controller-manager.kubeconfig")
}

// UserKubeconfig returns a kubeconfig (credentials embedded, context named after the cluster)
// with a fresh client certificate for user in groups. With group "system:masters" the user has
// every right; otherwise RBAC decides. A distinct identity lets a test tell one client's
// requests from another's in the audit log: register the hub into a member with it and count
// the hub's writes with Writes.
func (c *ControlPlane) UserKubeconfig(user string, groups ...string) ([]byte, error) {
	cert, key, err := c.pki.clientCert(user, groups...)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: client certificate for %q: %w", c.Name, user, err)
	}
	return c.kubeconfigFor(user, cert, key)
}

// Kubeconfig returns the admin kubeconfig (the content of KubeconfigPath).
func (c *ControlPlane) Kubeconfig() []byte { return append([]byte(nil), c.kubeconfig...) }

// Host returns the API server URL, https://127.0.0.1:<port>.
func (c *ControlPlane) Host() string { return c.Config.Host }

// Client returns a controller-runtime client with admin rights, knowing the client-go and
// apiextensions types, that can also watch (a client.WithWatch: benchmarks watch for the
// change they time, e2e/floor); packages with their own types build their own client from Config.
func (c *ControlPlane) Client() (client.Client, error) {
	return client.NewWithWatch(rest.CopyConfig(c.Config), client.Options{Scheme: clientScheme})
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
