package config_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"

	"github.com/flotilla-dev/flotilla/e2e"
	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

// TestMetricsNeedAReaderRole runs fleet-controller as config/rbac's ServiceAccount on a real
// hub with config/default installed, and scrapes its metrics endpoint as Prometheus would
// (the ServiceMonitor of config/prometheus): nobody without a token the hub accepts, and
// nobody without ClusterRole flotilla-metrics-reader, gets a single metric. The controller's
// own rights (tokenreviews, subjectaccessreviews) come from the generated ClusterRole, so a
// missing rule fails the reader's scrape too.
func TestMetricsNeedAReaderRole(t *testing.T) {
	ctx := t.Context()
	bins := binaries(t)
	fleet := localfleet.StartForTest(t, localfleet.Options{NoCRDs: true, NoControllerManager: true})
	if err := e2e.InstallHub(ctx, bins.Kubectl, repoRoot(t), fleet.Hub.KubeconfigPath); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	saKubeconfig := filepath.Join(dir, "controller.kubeconfig")
	if err := e2e.WriteServiceAccountKubeconfig(ctx, fleet.Hub.Config, saKubeconfig, time.Hour); err != nil {
		t.Fatal(err)
	}

	t.Run("a --metrics-cert-dir without the key pair is refused at start", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, bins.Controller, "--kubeconfig="+saKubeconfig, "--metrics-cert-dir="+t.TempDir()).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--metrics-cert-dir") {
			t.Errorf("fleet-controller with an empty --metrics-cert-dir: %v\n%s\nwant it to exit naming the flag", err, out)
		}
	})

	certDir, roots := servingCert(t)
	c, err := e2e.StartController(ctx, e2e.ControllerOptions{
		Bin: bins.Controller, Kubeconfig: saKubeconfig, LogPath: filepath.Join(dir, "fleet-controller.log"),
		Args: []string{"--metrics-cert-dir=" + certDir},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("fleet-controller log:\n%s", c.Log())
		}
	})

	reader, err := e2e.NewServiceAccount(ctx, fleet.Hub.Config, "prometheus", e2e.Grant{ClusterRoles: []string{e2e.MetricsReaderRole}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A valid identity of the hub with no role at all, as any workload's ServiceAccount is.
	stranger, err := e2e.NewServiceAccount(ctx, fleet.Hub.Config, "stranger", e2e.Grant{}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, token string
		want        []int
	}{
		{"no token", "", []int{http.StatusUnauthorized}},
		// The hub's TokenReview answers an invalid token with an error, which controller-runtime's
		// filter reports as 500 "Authentication failed" (a token it merely does not know: 401).
		{"a token the hub did not issue", "not-a-token", []int{http.StatusUnauthorized, http.StatusInternalServerError}},
		{"a ServiceAccount without the reader role", stranger, []int{http.StatusForbidden}},
	} {
		t.Run(tc.name+" gets no metrics", func(t *testing.T) {
			resp, err := e2e.ScrapeMetrics(ctx, c.MetricsAddr, tc.token)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body := readAll(t, resp)
			if !slices.Contains(tc.want, resp.StatusCode) || strings.Contains(body, "flotilla_") || strings.Contains(body, "controller_runtime_") {
				t.Errorf("GET /metrics: %s\n%s\nwant %v and no metric", resp.Status, body, tc.want)
			}
		})
	}

	t.Run("plain HTTP gets no metrics", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.MetricsAddr+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+reader)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return // the TLS server may also just close the connection
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body) // it answers 400 and closes: a reset is no metric either
		if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "flotilla_") {
			t.Errorf("plain HTTP GET /metrics: %s\n%s", resp.Status, body)
		}
	})

	t.Run("the metrics reader gets Flotilla's metrics over a verified connection", func(t *testing.T) {
		// Verified against the CA of --metrics-cert-dir: the certificate served is the one
		// given, not the self-signed default.
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"},
		}}
		// Controllers register their reconcile counters once their caches have synced, a
		// moment after the controller is ready.
		fleettest.Eventually(t, 60*time.Second, "Flotilla's metrics in the reader's scrape", func() error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+c.MetricsAddr+"/metrics", nil)
			req.Header.Set("Authorization", "Bearer "+reader)
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body := readAll(t, resp)
			for _, want := range []string{"flotilla_service_endpoint_propagation_seconds_count", `controller_runtime_reconcile_total{controller="membercluster"`,
				`flotilla_build_info{commit="`, `goversion="go1.`} {
				if resp.StatusCode != http.StatusOK || !strings.Contains(body, want) {
					return fmt.Errorf("GET /metrics as %s: %s, want 200 with %s:\n%.1500s", e2e.MetricsReaderRole, resp.Status, want, body)
				}
			}
			return nil
		})
	})
}

// servingCert writes a key pair for localhost and 127.0.0.1, signed by a new CA, into a
// directory as a mounted kubernetes.io/tls Secret holds it, and returns the CA to verify it.
func servingCert(t *testing.T) (string, *x509.CertPool) {
	t.Helper()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("localhost", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(certPEM) {
		t.Fatal("no certificate in the generated PEM")
	}
	return dir, roots
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
