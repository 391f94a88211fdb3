//go:build e2e

package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/e2e"
)

// dataplaneNamespace holds the echo server in the source member, the client in the other,
// and the mirrors there.
const dataplaneNamespace = "e2e-dataplane"

// echoManifest is the source member's side: two echo pods and two exports of them, one
// through the node ports (reachable across the kind network), one with the pods' own IPs
// (reachable only on a flat pod network, which kind clusters do not share).
func echoManifest(cluster, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  namespace: %[1]s
spec:
  replicas: 2
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      terminationGracePeriodSeconds: 5
      securityContext: {runAsNonRoot: true, runAsUser: 65532}
      containers:
      - name: echo
        image: %[3]s
        imagePullPolicy: Never
        env:
        - {name: CLUSTER_NAME, value: %[2]s}
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        ports:
        - {name: http, containerPort: 8080}
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
        resources:
          requests: {cpu: 10m, memory: 16Mi}
          limits: {memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: %[1]s
  annotations:
    fleet.flotilla.dev/export: "true"
    fleet.flotilla.dev/address-mode: NodePort
spec:
  type: NodePort
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: http}
---
apiVersion: v1
kind: Service
metadata:
  name: echo-pods
  namespace: %[1]s
  annotations:
    fleet.flotilla.dev/export: "true"
    fleet.flotilla.dev/address-mode: PodIP
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: http}
`, dataplaneNamespace, cluster, image)
}

// clientManifest is the other member's side: a pod that GETs url five times a second.
func clientManifest(url, image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: %s
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65532}
  containers:
  - name: client
    image: %s
    imagePullPolicy: Never
    args: [-url, %q, -interval, 200ms, -timeout, 2s]
    resources:
      requests: {cpu: 10m, memory: 16Mi}
      limits: {memory: 64Mi}
`, dataplaneNamespace, image, url)
}

// answer is one line of the client's log.
type answer struct {
	at   time.Time
	ok   bool   // an HTTP 200
	text string // the body's first line ("cluster=member-1 pod=echo-..."), or the error
}

// pod is the echo pod that answered, "" if none did.
func (a answer) pod() string {
	if !a.ok {
		return ""
	}
	for _, f := range strings.Fields(a.text) {
		if p, ok := strings.CutPrefix(f, "pod="); ok {
			return p
		}
	}
	return ""
}

// TestDataPlaneAcrossMembers is the third job of Flotilla seen from a pod: a client in member
// B GETs http://echo-<A>.<namespace>.svc.cluster.local, the mirror of a Service of member A,
// and is answered by A's pods, through their node ports across the kind network; when A's
// pods are replaced, B is answered by the new ones, and the time that takes is measured. The
// same pods exported with their pod IPs are mirrored with exactly those IPs, which B cannot
// reach (kind clusters share no pod network): Flotilla reports the addresses, it does not
// route them.
func TestDataPlaneAcrossMembers(t *testing.T) {
	if backendName() != "kind" {
		t.Skip(kindOnly())
	}
	b := sharedBackend(t)
	hub := b.HubKubeconfig()
	members := b.Members()
	a, bm := members[0], members[1]
	for _, m := range members {
		register(t, hub, m, "env=e2e")
		kubectl(t, "--kubeconfig", m.Kubeconfig, "create", "namespace", dataplaneNamespace)
	}
	defer func() {
		for _, m := range members {
			fleetctl(t, "unregister", m.Name, "--kubeconfig", hub, "--cleanup", "--member-kubeconfig", m.Kubeconfig)
			kubectl(t, "--kubeconfig", m.Kubeconfig, "delete", "namespace", dataplaneNamespace, "--wait=false")
		}
	}()

	dir := t.TempDir()
	applyTo := func(m e2e.Member, name, manifest string) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		kubectl(t, "--kubeconfig", m.Kubeconfig, "apply", "-f", path)
	}
	mirror := "echo-" + a.Name
	url := fmt.Sprintf("http://%s.%s.svc.cluster.local", mirror, dataplaneNamespace)
	applyTo(a, "echo.yaml", echoManifest(a.Name, os.Getenv(EchoImageEnv)))
	applyTo(bm, "client.yaml", clientManifest(url, os.Getenv(ClientImageEnv)))
	kubectl(t, "--kubeconfig", a.Kubeconfig, "-n", dataplaneNamespace, "rollout", "status", "deployment/echo", "--timeout=3m")
	kubectl(t, "--kubeconfig", bm.Kubeconfig, "-n", dataplaneNamespace, "wait", "pod/client", "--for=condition=Ready", "--timeout=3m")

	t.Run("NodePort: B is answered by A's pods through the mirror, also after they are replaced", func(t *testing.T) {
		nodeIP := strings.TrimSpace(kubectl(t, "--kubeconfig", a.Kubeconfig, "get", "nodes", "-o",
			`jsonpath={.items[*].status.addresses[?(@.type=="InternalIP")].address}`))
		nodePort := strings.TrimSpace(kubectl(t, "--kubeconfig", a.Kubeconfig, "-n", dataplaneNamespace, "get", "service", "echo", "-o",
			"jsonpath={.spec.ports[0].nodePort}"))
		want := fmt.Sprintf("ready %s; not ready -; port %s", nodeIP, nodePort)
		eventually(t, readyTimeout, fmt.Sprintf("mirror %s in %s publishing A's node and node port: %s", mirror, bm.Name, want), func() error {
			return mirrorPublishes(t, bm, dataplaneNamespace, mirror, want)
		})

		before := echoPods(t, a)
		var first answer
		eventually(t, readyTimeout, fmt.Sprintf("the client in %s answered by one of %s's pods %v at %s", bm.Name, a.Name, before, url), func() error {
			answers, err := clientAnswers(t, bm)
			if err != nil {
				return err
			}
			for _, ans := range answers {
				if ans.ok && strings.HasPrefix(ans.text, "cluster="+a.Name+" ") && slices.Contains(before, ans.pod()) {
					first = ans
					return nil
				}
			}
			return fmt.Errorf("no answer from %s yet; last: %s", a.Name, lastAnswers(answers, 3))
		})
		t.Logf("first answer in %s: %q", bm.Name, first.text)

		// Replace every pod at once: the gap B sees is the time until a new pod is ready and
		// A's kube-proxy sends the node port to it. The mirror itself does not change: it
		// holds A's node, not its pods.
		replaced := time.Now()
		kubectl(t, "--kubeconfig", a.Kubeconfig, "-n", dataplaneNamespace, "delete", "pods", "-l", "app=echo", "--wait=false")
		var gap replacementGap
		eventually(t, 3*time.Minute, fmt.Sprintf("the client in %s answered only by %s's new pods (not %v) for 2s", bm.Name, a.Name, before), func() error {
			answers, err := clientAnswers(t, bm)
			if err != nil {
				return err
			}
			g, err := measureReplacement(answers, replaced, before, 10)
			if err != nil {
				return err
			}
			gap = g
			return nil
		})
		after := echoPods(t, a)
		for _, p := range gap.newPods {
			if !slices.Contains(after, p) {
				t.Errorf("answered by %s, which is not one of %s's pods %v", p, a.Name, after)
			}
		}
		msg := fmt.Sprintf("data plane: %s's pods replaced; %s answered by a new pod %s after the delete (last answer from an old pod at +%s, %d failed attempts in between); new pods %v",
			a.Name, bm.Name, gap.firstNew.Round(10*time.Millisecond), gap.lastOld.Round(10*time.Millisecond), gap.failures, gap.newPods)
		t.Log(msg)
		fmt.Fprintln(os.Stderr, "e2e: "+msg)
	})

	t.Run("PodIP: the mirror holds A's pod IPs exactly, and the hub says so", func(t *testing.T) {
		podMirror := "echo-pods-" + a.Name
		eventually(t, readyTimeout, fmt.Sprintf("mirror %s in %s publishing the IPs of %s's two ready echo pods", podMirror, bm.Name, a.Name), func() error {
			ips, err := readyPodIPs(t, a)
			if err != nil {
				return err
			}
			return mirrorPublishes(t, bm, dataplaneNamespace, podMirror, publishes(ips, nil, "8080"))
		})
		source := a.Name + "/" + dataplaneNamespace + "/echo-pods"
		eventually(t, 30*time.Second, "fleetctl status to show "+source+" in mode PodIP with 2 of 2 endpoints", func() error {
			return statusShowsService(t, hub, source, map[string]string{
				"MODE": "PodIP", "ENDPOINTS": "2/2", "MIRRORED INTO": bm.Name, "STATUS": "Mirrored",
			})
		})
		refused := kubectl(t, "--kubeconfig", hub, "get", "exportedservice", a.Name+"."+dataplaneNamespace+".echo-pods",
			"-o", "jsonpath={.status.refused}")
		if strings.TrimSpace(refused) != "" {
			t.Errorf("pod IPs refused although they lie in %s's pod CIDR: %s", a.Name, refused)
		}
		// Not asserted: whether a packet to another cluster's pod IP arrives depends on the
		// network, not on Flotilla. Kind clusters share none, so this is expected to fail.
		out, _ := runProgram(t, suite.bins.Kubectl, "--kubeconfig", bm.Kubeconfig, "-n", dataplaneNamespace, "exec", "client", "--",
			"/workload", "-once", "-timeout", "3s", "-url", fmt.Sprintf("http://%s.%s.svc.cluster.local", podMirror, dataplaneNamespace))
		t.Logf("a GET of the PodIP mirror from %s (no flat pod network between kind clusters; not expected to be answered by %s): %s",
			bm.Name, a.Name, strings.TrimSpace(out))
	})
}

// readyPodIPs are the IPs of m's echo pods that are ready and not terminating: what a mirror
// in PodIP mode should publish, read from the pods themselves. It fails unless there are two.
func readyPodIPs(t *testing.T, m e2e.Member) ([]string, error) {
	t.Helper()
	out, err := runProgram(t, suite.bins.Kubectl, "--kubeconfig", m.Kubeconfig, "-n", dataplaneNamespace, "get", "pods", "-l", "app=echo", "-o",
		`jsonpath={range .items[*]}{.status.podIP} {.metadata.deletionTimestamp} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	if err != nil {
		return nil, fmt.Errorf("kubectl get pods: %w: %s", err, out)
	}
	var ips []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		// "<ip> True" when not terminating ("<ip> <timestamp> True" when it is)
		if f := strings.Fields(line); len(f) == 2 && f[1] == "True" {
			ips = append(ips, f[0])
		}
	}
	if len(ips) != 2 {
		return nil, fmt.Errorf("%d ready echo pods, want 2:\n%s", len(ips), out)
	}
	return ips, nil
}

// echoPods names the echo pods of m, terminating ones included.
func echoPods(t *testing.T, m e2e.Member) []string {
	t.Helper()
	return strings.Fields(kubectl(t, "--kubeconfig", m.Kubeconfig, "-n", dataplaneNamespace, "get", "pods", "-l", "app=echo",
		"-o", "jsonpath={.items[*].metadata.name}"))
}

// clientAnswers reads the client's log in m.
func clientAnswers(t *testing.T, m e2e.Member) ([]answer, error) {
	t.Helper()
	out, err := runProgram(t, suite.bins.Kubectl, "--kubeconfig", m.Kubeconfig, "-n", dataplaneNamespace, "logs", "client")
	if err != nil {
		return nil, fmt.Errorf("kubectl logs client: %w: %s", err, out)
	}
	var answers []answer
	for _, line := range strings.Split(out, "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) < 3 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		ans := answer{at: time.Unix(0, ns), text: strings.Join(f[2:], " ")}
		if f[1] == "ok" && len(f) == 4 && f[2] == "200" {
			ans.ok, ans.text = true, f[3]
		}
		answers = append(answers, ans)
	}
	return answers, nil
}

func lastAnswers(answers []answer, n int) string {
	var parts []string
	for _, a := range answers[max(0, len(answers)-n):] {
		parts = append(parts, fmt.Sprintf("%q", a.text))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// replacementGap is what the client saw after the source's pods were deleted at once.
type replacementGap struct {
	lastOld  time.Duration // last answer from an old pod, after the delete
	firstNew time.Duration // first answer from a new pod, after the delete
	failures int           // attempts between the delete and firstNew that got no answer
	newPods  []string      // the new pods that answered
}

// measureReplacement finds, in the answers after since, the first of a run of settled
// consecutive answers, each from a pod not in old; it fails until there is such a run.
func measureReplacement(answers []answer, since time.Time, old []string, settled int) (replacementGap, error) {
	var g replacementGap
	run, runStart := 0, -1
	for i, ans := range answers {
		if ans.at.Before(since) {
			continue
		}
		switch p := ans.pod(); {
		case p == "":
			if runStart < 0 {
				g.failures++
			}
			run = 0
		case slices.Contains(old, p):
			g.lastOld = ans.at.Sub(since)
			run = 0
		default:
			if runStart < 0 {
				runStart = i
				g.firstNew = ans.at.Sub(since)
			}
			if !slices.Contains(g.newPods, p) {
				g.newPods = append(g.newPods, p)
			}
			run++
			if run >= settled {
				return g, nil
			}
		}
	}
	if runStart < 0 {
		return g, fmt.Errorf("no answer from a new pod yet (%d failed attempts since the delete; last: %s)", g.failures, lastAnswers(answers, 3))
	}
	return g, fmt.Errorf("answered by a new pod at +%s, but not yet %d times in a row (last: %s)", g.firstNew.Round(10*time.Millisecond), settled, lastAnswers(answers, 3))
}
