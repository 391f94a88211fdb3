package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindlog "sigs.k8s.io/kind/pkg/log"

	"github.com/flotilla-dev/flotilla/e2e/kindnode"
)

// DefaultKindPrefix starts the name of every kind cluster the backend makes, so that a run can
// find and delete what an earlier, killed run left behind (and nothing else).
const DefaultKindPrefix = "flotilla-e2e"

// kindWaitForReady bounds kind's wait for a node to be Ready; 2 cores make three clusters slow.
const kindWaitForReady = 5 * time.Minute

// KindOptions configure the kind backend.
type KindOptions struct {
	// Root is the checkout whose config/ is installed (`make deploy` runs there).
	Root string
	// Binaries are fleetctl and kubectl (the controller runs from ControllerImage).
	Binaries Binaries
	// ArtifactsDir receives the controller's log and, on CollectArtifacts, `kind export logs`.
	ArtifactsDir string
	// NodeImage is the kind node image; empty means kindnode.Image (`make kind-node-image`).
	NodeImage string
	// ControllerImage is the image `make docker-build` tagged; it is loaded into the hub and
	// installed by `make deploy IMG=ControllerImage`.
	ControllerImage string
	// WorkloadImages are loaded into every member (the specs' echo server and client).
	WorkloadImages []string
	// Prefix starts every kind cluster name; the default is DefaultKindPrefix.
	Prefix string
	// Members names the member clusters; the default is member-1 and member-2.
	Members []string
	// Progress receives one line per step (kind's own included); nil discards them.
	Progress io.Writer
}

// Kind is the backend on kind clusters: a hub and members, each a kind cluster of one node on
// the kind Docker network, created with kind's Go API. fleet-controller is the Deployment of
// config/manager, installed with `make deploy` from its image; members are reached from the
// hub over the kind network, at the addresses of kind's internal kubeconfigs.
type Kind struct {
	opts     KindOptions
	provider *cluster.Provider
	engine   kindnode.Engine
	// restorePath takes the docker shim off PATH again; nil when it was not put there.
	restorePath func()
	// dir holds the kubeconfigs (admin credentials): removed by Stop, never in the artifacts.
	dir      string
	hub      *kindCluster
	members  []*kindCluster
	replicas string // the Deployment's replicas as config/manager installs them

	mu   sync.Mutex
	logs *exec.Cmd // kubectl logs -f of the controller's pods, into ArtifactsDir
}

var _ Backend = (*Kind)(nil)

// kindCluster is one kind cluster of the backend.
type kindCluster struct {
	name     string // Flotilla's name of it: hub, member-1, ...
	kindName string // kind's cluster name: <prefix>-<name>
	// kubeconfig reaches the API server from this machine (127.0.0.1 and a published port).
	kubeconfig string
	// internalKubeconfig and internalServer reach it from inside any kind cluster, at the node's
	// name on the kind network.
	internalKubeconfig string
	internalServer     string
}

// StartKind deletes the clusters an earlier run left, creates the hub and the members, loads
// the images and installs Flotilla into the hub with `make deploy`, which starts the
// controller; StartController waits for it.
func StartKind(ctx context.Context, opts KindOptions) (_ *Kind, err error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultKindPrefix
	}
	if len(opts.Members) == 0 {
		opts.Members = []string{"member-1", "member-2"}
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.ControllerImage == "" {
		return nil, errors.New("kind backend: no controller image (make docker-build tags one)")
	}
	if err := os.MkdirAll(opts.ArtifactsDir, 0o755); err != nil {
		return nil, err
	}
	if opts.NodeImage == "" {
		opts.NodeImage = kindnode.Image
	}
	if err := checkInotify(); err != nil {
		return nil, err
	}
	k := &Kind{opts: opts, provider: newKindProvider(opts.Progress)}
	defer func() {
		if err != nil {
			_ = k.Stop() // what was made so far; the shim off PATH
		}
	}()
	if k.engine, err = kindnode.DetectEngine(ctx, opts.NodeImage); err != nil {
		return nil, err
	}
	if k.engine.CgroupV1 {
		k.progress("cgroup v1 host: kubelets run with failCgroupV1: false")
	}
	if k.engine.PrivilegedRefused {
		// kind's Go API runs docker from PATH in this process: every docker command of the
		// process goes through the shim from now on, which changes only --privileged.
		shimLog := filepath.Join(opts.ArtifactsDir, "docker-shim.log")
		if k.restorePath, err = kindnode.UseShim(opts.Root, shimLog); err != nil {
			return nil, err
		}
		k.progress("the engine refuses --privileged (%s): kind runs docker through the shim in %s (rewrites logged to %s)",
			k.engine.PrivilegedError, kindnode.ShimDir(opts.Root), shimLog)
	}
	if err := DeleteKindClusters(opts.Prefix, opts.Progress); err != nil {
		return nil, fmt.Errorf("delete the clusters of an earlier run: %w", err)
	}
	if k.dir, err = os.MkdirTemp("", "flotilla-e2e-kind-"); err != nil {
		return nil, err
	}

	k.hub = k.newCluster("hub")
	for _, m := range opts.Members {
		k.members = append(k.members, k.newCluster(m))
	}
	// The hub first: the first cluster also creates the kind network, which two concurrent
	// creates would race for. Then the members side by side.
	if err := k.create(k.hub); err != nil {
		return nil, err
	}
	errs := make([]error, len(k.members))
	var wg sync.WaitGroup
	for i, m := range k.members {
		wg.Go(func() { errs[i] = k.create(m) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	if err := k.load([]string{opts.ControllerImage}, k.hub); err != nil {
		return nil, err
	}
	if len(opts.WorkloadImages) > 0 {
		if err := k.load(opts.WorkloadImages, k.members...); err != nil {
			return nil, err
		}
	}
	if err := k.deploy(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *Kind) newCluster(name string) *kindCluster {
	return &kindCluster{
		name:               name,
		kindName:           k.opts.Prefix + "-" + name,
		kubeconfig:         filepath.Join(k.dir, name+".kubeconfig"),
		internalKubeconfig: filepath.Join(k.dir, name+".internal.kubeconfig"),
	}
}

func (k *Kind) create(c *kindCluster) error {
	begin := time.Now()
	k.progress("creating kind cluster %s", c.kindName)
	// One node, no kindnetd (the image's own CNI config serves the pod subnet, so nothing is
	// pulled), and on a cgroup v1 host a kubelet that accepts v1.
	opts := []cluster.CreateOption{
		cluster.CreateWithV1Alpha4Config(kindnode.ClusterConfig(k.engine)),
		cluster.CreateWithNodeImage(k.opts.NodeImage),
		cluster.CreateWithKubeconfigPath(c.kubeconfig),
		cluster.CreateWithWaitForReady(kindWaitForReady),
		// A node that failed is kept until its logs are exported below; Stop deletes it.
		cluster.CreateWithRetain(true),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	}
	err := k.provider.Create(c.kindName, opts...)
	if err == nil {
		err = k.readInternalKubeconfig(c)
	}
	if err != nil {
		logs := filepath.Join(k.opts.ArtifactsDir, "kind", c.name)
		if lerr := k.provider.CollectLogs(c.kindName, logs); lerr != nil {
			k.progress("kind export logs %s: %v", c.kindName, lerr)
		}
		return fmt.Errorf("kind create cluster %s: %w (node logs in %s)", c.kindName, err, logs)
	}
	k.progress("kind cluster %s ready in %s (API server %s inside the kind network)",
		c.kindName, time.Since(begin).Round(time.Second), c.internalServer)
	return nil
}

// readInternalKubeconfig writes kind's internal kubeconfig of c, the one that names the node
// on the kind network, and notes its server.
func (k *Kind) readInternalKubeconfig(c *kindCluster) error {
	internal, err := k.provider.KubeConfig(c.kindName, true)
	if err != nil {
		return fmt.Errorf("internal kubeconfig of kind cluster %s: %w", c.kindName, err)
	}
	cfg, err := clientcmd.Load([]byte(internal))
	if err != nil {
		return fmt.Errorf("internal kubeconfig of kind cluster %s: %w", c.kindName, err)
	}
	for _, cl := range cfg.Clusters {
		c.internalServer = cl.Server
	}
	if c.internalServer == "" {
		return fmt.Errorf("internal kubeconfig of kind cluster %s names no server", c.kindName)
	}
	return os.WriteFile(c.internalKubeconfig, []byte(internal), 0o600)
}

// load does what `kind load docker-image` does: docker save once, then import the archive
// into the containerd of every node of the clusters.
func (k *Kind) load(images []string, clusters ...*kindCluster) error {
	begin := time.Now()
	archive := filepath.Join(k.dir, "images.tar")
	defer os.Remove(archive)
	if out, err := exec.Command("docker", append([]string{"save", "-o", archive}, images...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("docker save %s: %w\n%s", strings.Join(images, " "), err, out)
	}
	for _, c := range clusters {
		nodes, err := k.provider.ListInternalNodes(c.kindName)
		if err != nil {
			return fmt.Errorf("nodes of kind cluster %s: %w", c.kindName, err)
		}
		for _, n := range nodes {
			f, err := os.Open(archive)
			if err != nil {
				return err
			}
			err = nodeutils.LoadImageArchive(n, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("load %s into node %s: %w", strings.Join(images, " "), n, err)
			}
		}
	}
	names := make([]string, len(clusters))
	for i, c := range clusters {
		names[i] = c.kindName
	}
	k.progress("loaded %s into %s in %s", strings.Join(images, " "), strings.Join(names, ", "), time.Since(begin).Round(time.Second))
	return nil
}

// deploy installs Flotilla into the hub the way the README tells a user to: `make deploy` with
// the image, against the hub as the current kubeconfig.
func (k *Kind) deploy(ctx context.Context) error {
	begin := time.Now()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", k.opts.Root, "deploy", "IMG="+k.opts.ControllerImage)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.hub.kubeconfig)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make deploy IMG=%s into the hub: %w\n%s", k.opts.ControllerImage, err, out)
	}
	hub := "--kubeconfig=" + k.hub.kubeconfig
	if _, err := runCmd(ctx, nil, k.opts.Binaries.Kubectl, hub, "wait", "--for=condition=Established", "--timeout=60s",
		"crd", "-l", "app.kubernetes.io/part-of=flotilla"); err != nil {
		return err
	}
	out, err := runCmd(ctx, nil, k.opts.Binaries.Kubectl, hub, "-n", HubNamespace, "get", "deployment", controllerDeployment,
		"-o", "jsonpath={.spec.replicas}")
	if err != nil {
		return err
	}
	k.replicas = strings.TrimSpace(string(out))
	k.progress("make deploy IMG=%s into the hub in %s (%s replicas)", k.opts.ControllerImage, time.Since(begin).Round(time.Second), k.replicas)
	return nil
}

// controllerDeployment is config/manager's Deployment; controllerPods selects its pods.
const (
	controllerDeployment = "flotilla-controller"
	controllerPods       = "app.kubernetes.io/name=flotilla,app.kubernetes.io/component=controller"
)

// Name implements Backend.
func (k *Kind) Name() string { return "kind" }

// HubKubeconfig implements Backend.
func (k *Kind) HubKubeconfig() string { return k.hub.kubeconfig }

// Members implements Backend: admin kubeconfigs for this machine, and the server and
// kubeconfig the hub reaches each member at.
func (k *Kind) Members() []Member {
	var ms []Member
	for _, m := range k.members {
		ms = append(ms, Member{Name: m.name, Kubeconfig: m.kubeconfig, HubServer: m.internalServer, HubKubeconfig: m.internalKubeconfig})
	}
	return ms
}

// StartController implements Backend: the Deployment at the replicas config/manager gives it,
// all of them available, and their logs followed into the artifacts.
func (k *Kind) StartController(ctx context.Context) error {
	hub := "--kubeconfig=" + k.hub.kubeconfig
	if _, err := runCmd(ctx, nil, k.opts.Binaries.Kubectl, hub, "-n", HubNamespace, "scale", "deployment", controllerDeployment,
		"--replicas="+k.replicas); err != nil {
		return err
	}
	if _, err := runCmd(ctx, nil, k.opts.Binaries.Kubectl, hub, "-n", HubNamespace, "rollout", "status", "deployment", controllerDeployment,
		"--timeout=5m"); err != nil {
		return fmt.Errorf("fleet-controller's Deployment did not become available: %w", err)
	}
	return k.followLogs()
}

// followLogs appends the controller pods' logs to fleet-controller.log in the artifacts as they
// are written, so that the specs can read RBAC denials while they run.
func (k *Kind) followLogs() error {
	k.stopLogs()
	f, err := os.OpenFile(filepath.Join(k.opts.ArtifactsDir, "fleet-controller.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(k.opts.Binaries.Kubectl, "--kubeconfig="+k.hub.kubeconfig, "-n", HubNamespace, "logs", "-f",
		"-l", controllerPods, "--all-containers", "--prefix", "--tail=-1", "--max-log-requests=10")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := spawn(cmd); err != nil {
		f.Close()
		return fmt.Errorf("follow the controller's logs: %w", err)
	}
	go func() {
		_ = cmd.Wait()
		f.Close()
	}()
	k.mu.Lock()
	k.logs = cmd
	k.mu.Unlock()
	return nil
}

func (k *Kind) stopLogs() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.logs != nil {
		_ = k.logs.Process.Kill()
		k.logs = nil
	}
}

// StopController implements Backend: the Deployment scaled to zero, its pods gone (each
// leader releases its Lease on SIGTERM).
func (k *Kind) StopController() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hub := "--kubeconfig=" + k.hub.kubeconfig
	if _, err := runCmd(ctx, nil, k.opts.Binaries.Kubectl, hub, "-n", HubNamespace, "scale", "deployment", controllerDeployment,
		"--replicas=0"); err != nil {
		return err
	}
	_, err := runCmd(ctx, nil, k.opts.Binaries.Kubectl, hub, "-n", HubNamespace, "wait", "--for=delete", "pod", "-l", controllerPods,
		"--timeout=90s")
	k.stopLogs()
	return err
}

// ArtifactsDir implements Backend.
func (k *Kind) ArtifactsDir() string { return k.opts.ArtifactsDir }

// CollectArtifacts implements Backend: the controller pods described (with the logs of
// restarted containers), and `kind export logs` of every cluster under kind/<cluster>/.
func (k *Kind) CollectArtifacts(ctx context.Context) error {
	var errs []error
	hub := "--kubeconfig=" + k.hub.kubeconfig
	for file, args := range map[string][]string{
		"controller-pods.txt":     {hub, "-n", HubNamespace, "describe", "deployment,pods"},
		"controller-previous.log": {hub, "-n", HubNamespace, "logs", "-l", controllerPods, "--all-containers", "--prefix", "--previous"},
	} {
		out, err := runCmd(ctx, nil, k.opts.Binaries.Kubectl, args...)
		if err != nil {
			out = fmt.Appendf(out, "\n%v\n", err)
		}
		errs = append(errs, os.WriteFile(filepath.Join(k.opts.ArtifactsDir, file), out, 0o644))
	}
	for _, c := range append([]*kindCluster{k.hub}, k.members...) {
		if err := k.provider.CollectLogs(c.kindName, filepath.Join(k.opts.ArtifactsDir, "kind", c.name)); err != nil {
			errs = append(errs, fmt.Errorf("kind export logs %s: %w", c.kindName, err))
		}
	}
	return errors.Join(errs...)
}

// Stop implements Backend: every cluster deleted, the kubeconfigs removed.
func (k *Kind) Stop() error {
	k.stopLogs()
	var errs []error
	for _, c := range append([]*kindCluster{k.hub}, k.members...) {
		if c == nil {
			continue
		}
		if err := k.provider.Delete(c.kindName, c.kubeconfig); err != nil {
			errs = append(errs, fmt.Errorf("kind delete cluster %s: %w", c.kindName, err))
		}
	}
	if k.dir != "" {
		errs = append(errs, os.RemoveAll(k.dir))
	}
	if k.restorePath != nil {
		k.restorePath()
		k.restorePath = nil
	}
	return errors.Join(errs...)
}

func (k *Kind) progress(format string, args ...any) {
	fmt.Fprintf(k.opts.Progress, "e2e: kind: "+format+"\n", args...)
}

// minInotifyInstances is what three kind nodes need: every node's systemd, containerd and
// kubelet (and every pod's) inotify instances count against one host-wide per-user limit,
// whose usual default of 128 lets the second node's containerd fail ("too many open files"),
// and kubeadm with it. kind's known issues recommend 512.
const minInotifyInstances = 512

// checkInotify refuses to start on a host whose inotify limit would break the clusters, with
// the command that fixes it.
func checkInotify() error {
	const path = "/proc/sys/fs/inotify/max_user_instances"
	data, err := os.ReadFile(path)
	if err != nil {
		return nil // not Linux, or not readable: let kind try
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || n >= minInotifyInstances {
		return nil
	}
	return fmt.Errorf("%s is %d: three kind clusters need at least %d (their containerd fails with \"too many open files\"); "+
		"raise it with: sudo sysctl fs.inotify.max_user_instances=%d", path, n, minInotifyInstances, minInotifyInstances)
}

// DeleteKindClusters deletes every kind cluster whose name starts with prefix and a dash: what
// a run that was killed before it could clean up left behind. It needs nothing of that run.
func DeleteKindClusters(prefix string, progress io.Writer) error {
	if progress == nil {
		progress = io.Discard
	}
	p := newKindProvider(progress)
	names, err := p.List()
	if err != nil {
		return fmt.Errorf("kind get clusters: %w", err)
	}
	// kind also edits a kubeconfig when it deletes; give it an empty one of its own, never the
	// user's.
	dir, err := os.MkdirTemp("", "flotilla-e2e-kind-delete-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var errs []error
	for _, name := range names {
		if !strings.HasPrefix(name, prefix+"-") {
			continue
		}
		fmt.Fprintf(progress, "e2e: kind: deleting cluster %s\n", name)
		if err := p.Delete(name, filepath.Join(dir, "kubeconfig")); err != nil {
			errs = append(errs, fmt.Errorf("kind delete cluster %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func newKindProvider(progress io.Writer) *cluster.Provider {
	return cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(kindLogger{w: progress}))
}

// kindLogger prints kind's user-facing messages (V(0): the steps of create and delete) and its
// warnings and errors, one line each, and drops its debug output.
type kindLogger struct{ w io.Writer }

func (l kindLogger) Warn(message string)                      { l.line("warning: " + message) }
func (l kindLogger) Warnf(format string, args ...any)         { l.Warn(fmt.Sprintf(format, args...)) }
func (l kindLogger) Error(message string)                     { l.line("error: " + message) }
func (l kindLogger) Errorf(format string, args ...any)        { l.Error(fmt.Sprintf(format, args...)) }
func (l kindLogger) V(level kindlog.Level) kindlog.InfoLogger { return kindInfo{l: l, on: level <= 0} }
func (l kindLogger) line(s string) {
	if s = strings.TrimSpace(s); s != "" {
		fmt.Fprintf(l.w, "e2e: kind: %s\n", s)
	}
}

type kindInfo struct {
	l  kindLogger
	on bool
}

func (i kindInfo) Info(message string) {
	if i.on {
		i.l.line(message)
	}
}
func (i kindInfo) Infof(format string, args ...any) { i.Info(fmt.Sprintf(format, args...)) }
func (i kindInfo) Enabled() bool                    { return i.on }
