//go:build e2e

package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/e2e"
)

// exportNamespace holds the exported Service in the source and its mirror in the target.
const exportNamespace = "e2e-export"

// exportedWeb is a selectorless Service exported with its pod IPs, and the EndpointSlice a
// controller would write for its pods: local control planes run no pods, so it is written by
// hand, managed by a name Kubernetes' own EndpointSlice controllers leave alone.
const exportedWeb = `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: e2e-export
  annotations:
    fleet.flotilla.dev/export: "true"
    fleet.flotilla.dev/address-mode: PodIP
spec:
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
`

// podNode is a Node with the pod CIDR the exported endpoints lie in: service sync publishes
// only pod IPs inside the source's pod CIDRs, and local control planes run no kubelet (nor
// node IPAM), so it is written by hand, and removed at the end of the test.
const podNode = `apiVersion: v1
kind: Node
metadata:
  name: e2e-export-pods
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs: [10.244.1.0/24]
---
`

// webSlice is the EndpointSlice of Service web with the given endpoints, each "IP=ready".
func webSlice(endpoints ...string) string {
	var b strings.Builder
	b.WriteString(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-e2e
  namespace: e2e-export
  labels:
    kubernetes.io/service-name: web
    endpointslice.kubernetes.io/managed-by: e2e.flotilla.dev
addressType: IPv4
ports:
- name: http
  protocol: TCP
  port: 8080
endpoints:
`)
	for _, e := range endpoints {
		ip, ready, _ := strings.Cut(e, "=")
		fmt.Fprintf(&b, "- addresses: [%q]\n  conditions: {ready: %s, serving: %s}\n", ip, ready, ready)
	}
	return b.String()
}

// TestExportedServiceIsMirrored exports a Service of one member as a cluster owner would —
// an annotation — and follows it as the other member's users and the platform engineer see
// it: a selectorless mirror Service web-<cluster> with the source's endpoints in Endpoints and
// EndpointSlices, fleetctl status reporting it synced, endpoint changes followed, and
// everything gone on unexport. The controller runs under config/rbac and the members' hub
// role, so a rule service sync needs and lacks fails it.
func TestExportedServiceIsMirrored(t *testing.T) {
	b := sharedBackend(t)
	hub := b.HubKubeconfig()
	members := b.Members()
	if len(members) < 2 {
		t.Skip("needs two members")
	}
	source, target := members[0], members[1]
	mirror := "web-" + source.Name // <service>-<cluster>: short names are not hashed
	deniedBefore := map[string]bool{}
	for _, d := range e2e.RBACDenials(b.ArtifactsDir()) {
		deniedBefore[d] = true
	}

	for _, m := range members {
		register(t, hub, m, "env=e2e")
		kubectl(t, "--kubeconfig", m.Kubeconfig, "create", "namespace", exportNamespace)
	}
	manifest := filepath.Join(t.TempDir(), "web.yaml")
	apply := func(yaml string) {
		t.Helper()
		if err := os.WriteFile(manifest, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		kubectl(t, "--kubeconfig", source.Kubeconfig, "apply", "-f", manifest)
	}
	apply(podNode + exportedWeb + webSlice("10.244.1.10=true", "10.244.1.11=true"))

	want := "ready 10.244.1.10 10.244.1.11; not ready -; port 8080"
	eventually(t, readyTimeout, fmt.Sprintf("mirror %s/%s in %s publishing %s", exportNamespace, mirror, target.Name, want), func() error {
		return mirrorPublishes(t, target, exportNamespace, mirror, want)
	})

	t.Run("the mirror is a selectorless Service labelled with its source", func(t *testing.T) {
		got := kubectl(t, "--kubeconfig", target.Kubeconfig, "-n", exportNamespace, "get", "service", mirror, "-o",
			`jsonpath={.spec.selector}|{.spec.ports[*].port}|{.metadata.labels.fleet\.flotilla\.dev/source-cluster}/{.metadata.labels.fleet\.flotilla\.dev/source-namespace}/{.metadata.labels.fleet\.flotilla\.dev/source-name}`)
		if want := fmt.Sprintf("|80|%s/%s/web", source.Name, exportNamespace); got != want {
			t.Errorf("selector|ports|source labels = %q, want %q", got, want)
		}
		// The source member gets no mirror of its own Service.
		if out := kubectl(t, "--kubeconfig", source.Kubeconfig, "-n", exportNamespace, "get", "services",
			"-l", "fleet.flotilla.dev/source-cluster", "-o", "name"); strings.TrimSpace(out) != "" {
			t.Errorf("mirrors in the source member %s:\n%s", source.Name, out)
		}
	})

	source3 := source.Name + "/" + exportNamespace + "/web"
	eventually(t, 30*time.Second, "fleetctl status to show "+source3+" synced into "+target.Name, func() error {
		return statusShowsService(t, hub, source3, map[string]string{
			"MODE": "PodIP", "PORTS": "80/TCP", "ENDPOINTS": "2/2", "MIRRORED INTO": target.Name, "STATUS": "Mirrored",
		})
	})
	kubectl(t, "--kubeconfig", hub, "get", "exportedservices")

	start := time.Now()
	apply(webSlice("10.244.1.10=false", "10.244.1.12=true"))
	want = "ready 10.244.1.12; not ready 10.244.1.10; port 8080"
	eventually(t, 30*time.Second, fmt.Sprintf("mirror %s in %s to follow the source: %s", mirror, target.Name, want), func() error {
		return mirrorPublishes(t, target, exportNamespace, mirror, want)
	})
	t.Logf("the mirror followed the endpoint change within %s (polled every second)", time.Since(start).Round(time.Second))
	eventually(t, 30*time.Second, "fleetctl status to count 1 of 2 endpoints ready", func() error {
		return statusShowsService(t, hub, source3, map[string]string{"ENDPOINTS": "1/2", "STATUS": "Mirrored"})
	})

	kubectl(t, "--kubeconfig", source.Kubeconfig, "-n", exportNamespace, "annotate", "service", "web", "fleet.flotilla.dev/export-")
	eventually(t, 30*time.Second, "the mirror's Service, Endpoints and EndpointSlices gone from "+target.Name+" after unexport", func() error {
		out, err := runProgram(t, suite.bins.Kubectl, "--kubeconfig", target.Kubeconfig, "-n", exportNamespace, "get",
			"services,endpoints,endpointslices", "-l", "fleet.flotilla.dev/source-cluster="+source.Name, "-o", "name")
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		var left []string // kind/name lines; kubectl also says "No resources found"
		for _, l := range strings.Fields(withoutWarnings(out)) {
			if strings.Contains(l, "/") {
				left = append(left, l)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("left: %v", left)
		}
		return nil
	})
	eventually(t, 30*time.Second, "the ExportedService gone from the hub and fleetctl status without services", func() error {
		out, err := runProgram(t, suite.bins.Fleetctl, "status", "--kubeconfig", hub)
		if err != nil {
			return fmt.Errorf("fleetctl status: %w\n%s", err, out)
		}
		if !strings.Contains(out, "\nNo Services exported.") {
			return fmt.Errorf("fleetctl status still lists services:\n%s", out)
		}
		return nil
	})

	for _, d := range e2e.RBACDenials(b.ArtifactsDir()) {
		if !deniedBefore[d] {
			t.Errorf("during the spec the controller was refused: %s (a rule missing from config/rbac or the member role)", d)
		}
	}

	kubectl(t, "--kubeconfig", source.Kubeconfig, "-n", exportNamespace, "delete", "service", "web")
	kubectl(t, "--kubeconfig", source.Kubeconfig, "delete", "node", "e2e-export-pods")
	for _, m := range members {
		fleetctl(t, "unregister", m.Name, "--kubeconfig", hub, "--cleanup", "--member-kubeconfig", m.Kubeconfig)
		kubectl(t, "--kubeconfig", m.Kubeconfig, "delete", "namespace", exportNamespace, "--wait=false")
	}
}

// mirrorPublishes checks that the mirror's Endpoints and its EndpointSlices in namespace ns of m both
// publish want: "ready IP...; not ready IP...; port N", IPs sorted, "-" for none.
func mirrorPublishes(t *testing.T, m e2e.Member, ns, mirror, want string) error {
	t.Helper()
	get := func(args ...string) (string, error) {
		out, err := runProgram(t, suite.bins.Kubectl, append([]string{"--kubeconfig", m.Kubeconfig, "-n", ns, "get"}, args...)...)
		if err != nil {
			return "", fmt.Errorf("kubectl get %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return withoutWarnings(out), nil
	}
	eps, err := get("endpoints", mirror, "-o",
		`jsonpath={.subsets[*].addresses[*].ip}|{.subsets[*].notReadyAddresses[*].ip}|{.subsets[*].ports[*].port}`)
	if err != nil {
		return err
	}
	parts := strings.Split(eps, "|")
	if len(parts) != 3 {
		return fmt.Errorf("Endpoints %s: unexpected output %q", mirror, eps)
	}
	fromEndpoints := publishes(strings.Fields(parts[0]), strings.Fields(parts[1]), parts[2])

	sl, err := get("endpointslices", "-l", "kubernetes.io/service-name="+mirror, "-o",
		`jsonpath={range .items[*].endpoints[*]}{.addresses[0]}={.conditions.ready} {end}|{.items[*].ports[*].port}`)
	if err != nil {
		return err
	}
	list, port, _ := strings.Cut(sl, "|")
	var ready, notReady []string
	for _, e := range strings.Fields(list) {
		ip, r, _ := strings.Cut(e, "=")
		if r == "false" {
			notReady = append(notReady, ip)
		} else {
			ready = append(ready, ip)
		}
	}
	fromSlices := publishes(ready, notReady, port)

	if fromEndpoints != want || fromSlices != want {
		return fmt.Errorf("Endpoints publish %q, EndpointSlices %q", fromEndpoints, fromSlices)
	}
	return nil
}

func publishes(ready, notReady []string, ports string) string {
	list := func(ips []string) string {
		if len(ips) == 0 {
			return "-"
		}
		ips = slices.Clone(ips)
		slices.Sort(ips)
		return strings.Join(ips, " ")
	}
	return fmt.Sprintf("ready %s; not ready %s; port %s", list(ready), list(notReady), strings.Join(strings.Fields(ports), ","))
}

// withoutWarnings drops kubectl's "Warning: ..." lines (v1 Endpoints are deprecated) from
// combined output.
func withoutWarnings(out string) string {
	var kept []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "Warning: ") {
			kept = append(kept, l)
		}
	}
	return strings.TrimSpace(strings.Join(kept, "\n"))
}

// statusShowsService checks the row of source (cluster/namespace/name) in the services
// section of fleetctl status against want, column by column.
func statusShowsService(t *testing.T, hub, source string, want map[string]string) error {
	t.Helper()
	out, err := runProgram(t, suite.bins.Fleetctl, "status", "--kubeconfig", hub)
	if err != nil {
		return fmt.Errorf("fleetctl status: %w\n%s", err, out)
	}
	_, section, ok := strings.Cut(out, "\nServices: ")
	if !ok {
		return fmt.Errorf("no services section in:\n%s", out)
	}
	// table() keys rows by a NAME column; the services table's first column is SOURCE.
	row := table(strings.Replace(section, "\nSOURCE", "\nNAME  ", 1))[source]
	for col, w := range want {
		if row[col] != w {
			return fmt.Errorf("%s %s = %q, want %q, in:\n%s", source, col, row[col], w, out)
		}
	}
	return nil
}
