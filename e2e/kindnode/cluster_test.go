//go:build kindnode

package kindnode

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
)

// TestNodeImageCluster creates one kind cluster (kind's Go API, v0.33) on the node image
// built by `make kind-node-image`, through the docker shim when the engine refuses
// --privileged, and checks what the image promises: the node and CoreDNS become Ready, a pod
// from a FROM-scratch image runs, a ClusterIP Service and a NodePort answer, and a pod
// resolves kubernetes.default.svc.cluster.local. The cluster is always deleted; on failure
// `kind export logs` goes to _artifacts/kindnode/.
func TestNodeImageCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	root := repoRoot(t)
	artifacts := filepath.Join(root, "_artifacts", "kindnode")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	kubectlBin := filepath.Join(root, "bin", "k8s", KubernetesVersion, "kubectl")
	if _, err := os.Stat(kubectlBin); err != nil {
		t.Fatalf("kubectl %s: %v (make kind-node-image builds it)", KubernetesVersion, err)
	}

	engine, err := DetectEngine(ctx, Image)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("engine: %+v", engine)
	if engine.PrivilegedRefused {
		restore, err := UseShim(root, filepath.Join(artifacts, "docker-shim.log"))
		if err != nil {
			t.Fatal(err)
		}
		defer restore()
	}

	name := fmt.Sprintf("kindnode-%d", os.Getpid()%100000)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	provider := cluster.NewProvider(cluster.ProviderWithDocker())
	defer func() {
		if t.Failed() {
			dir := filepath.Join(artifacts, name)
			if err := provider.CollectLogs(name, dir); err != nil {
				t.Logf("kind export logs: %v", err)
			} else {
				t.Logf("kind export logs: %s", dir)
			}
		}
		if err := provider.Delete(name, kubeconfig); err != nil {
			t.Errorf("delete cluster %s: %v", name, err)
		}
	}()
	start := time.Now()
	if err := provider.Create(name, cluster.CreateWithV1Alpha4Config(ClusterConfig(engine)),
		cluster.CreateWithKubeconfigPath(kubeconfig), cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false)); err != nil {
		t.Fatalf("kind create cluster %s: %v", name, err)
	}
	t.Logf("kind create cluster: %s", time.Since(start).Round(100*time.Millisecond))

	kubectl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, kubectlBin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := kubectl(args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	must("wait", "--for=condition=Ready", "node", "--all", "--timeout=180s")
	t.Logf("node Ready: %s after create started", time.Since(start).Round(100*time.Millisecond))
	must("-n", "kube-system", "wait", "--for=condition=Ready", "pod", "-l", "k8s-app=kube-dns", "--timeout=180s")
	t.Logf("CoreDNS Ready: %s after create started", time.Since(start).Round(100*time.Millisecond))

	// the FROM-scratch test image, loaded the way `kind load docker-image` does
	image := testImage(t)
	nodes, err := provider.ListInternalNodes(name)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("nodes of %s: %v %v", name, nodes, err)
	}
	save := exec.CommandContext(ctx, "docker", "save", image)
	archive, err := save.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := save.Start(); err != nil {
		t.Fatal(err)
	}
	if err := nodeutils.LoadImageArchive(nodes[0], archive); err != nil {
		t.Fatalf("load %s into the node: %v", image, err)
	}
	if err := save.Wait(); err != nil {
		t.Fatalf("docker save %s: %v", image, err)
	}

	apply := exec.CommandContext(ctx, kubectlBin, "--kubeconfig", kubeconfig, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(strings.ReplaceAll(workloads, "IMAGE", "docker.io/"+image))
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	must("wait", "--for=condition=Ready", "pod/web", "pod/client", "--timeout=120s")

	// ClusterIP Service by its DNS name: kube-proxy, the CNI and CoreDNS together
	if out := must("exec", "client", "--", "/nodecheck", "get", "http://web.default.svc.cluster.local/"); out != "nodecheck web" {
		t.Errorf("GET the ClusterIP Service web from a pod = %q, want %q", out, "nodecheck web")
	}
	// DNS of the API server's Service, resolved from a pod
	apiIP := must("get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}")
	if out := must("exec", "client", "--", "/nodecheck", "lookup", "kubernetes.default.svc.cluster.local"); out != apiIP {
		t.Errorf("lookup kubernetes.default.svc.cluster.local from a pod = %q, want %q", out, apiIP)
	}
	// NodePort, from outside the cluster: the node's address on the kind Docker network
	nodeIP := must("get", "node", "-o", "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}")
	url := fmt.Sprintf("http://%s:%d/", nodeIP, nodePort)
	var body string
	deadline := time.Now().Add(60 * time.Second)
	for {
		body, err = httpGet(ctx, url)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil || body != "nodecheck web" {
		t.Errorf("GET the NodePort %s from the host = %q, %v; want %q", url, body, err, "nodecheck web")
	}
}

const nodePort = 30080

// workloads: a web server pod behind a ClusterIP and a NodePort Service, and a client pod.
const workloads = `
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - {name: web, image: IMAGE, imagePullPolicy: Never, command: [/nodecheck, serve, ":8080"], ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
  - {name: client, image: IMAGE, imagePullPolicy: Never, command: [/nodecheck, sleep]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-nodeport}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
`

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}
