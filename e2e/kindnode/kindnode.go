package kindnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

// KubernetesVersion is the version of every Kubernetes binary and image in the node image.
const KubernetesVersion = "v1.37.2"

// Image is the node image `make kind-node-image` builds; pass it as the kind node image.
// kind uses it without pulling because it is found locally.
const Image = "flotilla/kind-node:" + KubernetesVersion

// PodSubnet is the pod network the image's CNI config (ptp + host-local) hands addresses
// from; it is kind's default podSubnet, and ClusterConfig sets it explicitly so the two
// cannot drift apart.
const PodSubnet = "10.244.0.0/16"

// ShimLogEnv names the file the docker shim appends one line per rewrite to.
const ShimLogEnv = "FLOTILLA_DOCKER_SHIM_LOG"

// Engine is what the Docker engine allows a kind node.
type Engine struct {
	// PrivilegedRefused is true when `docker run --privileged` fails on this engine; kind
	// then needs the shim (ShimEnv, UseShim).
	PrivilegedRefused bool
	// PrivilegedError is the engine's answer when it refused.
	PrivilegedError string
	// CgroupV1 is true on a cgroup v1 (or hybrid) host; the kubelet then needs
	// failCgroupV1: false (KubeadmConfigPatches).
	CgroupV1 bool
}

// DetectEngine asks the engine what it allows: its cgroup version (docker info) and
// whether it runs image with --privileged. image must exist locally (use Image): nothing is
// pulled. It takes a second or two.
func DetectEngine(ctx context.Context, image string) (Engine, error) {
	var e Engine
	out, err := exec.CommandContext(ctx, "docker", "info", "-f", "{{.CgroupVersion}}").CombinedOutput()
	if err != nil {
		return e, fmt.Errorf("docker info: %w: %s", err, bytes.TrimSpace(out))
	}
	e.CgroupV1 = strings.TrimSpace(string(out)) == "1"
	if err := ImageExists(ctx, image); err != nil {
		return e, err
	}
	run := func(extra ...string) (string, error) {
		args := append([]string{"run", "--rm", "--pull=never", "--network=none", "--entrypoint", "/bin/true"}, extra...)
		b, err := exec.CommandContext(ctx, "docker", append(args, image)...).CombinedOutput()
		return strings.TrimSpace(string(b)), err
	}
	if out, err := run(); err != nil {
		return e, fmt.Errorf("docker run %s (without --privileged) fails, so the engine cannot run kind nodes at all: %w: %s", image, err, out)
	}
	if out, err := run("--privileged"); err != nil {
		e.PrivilegedRefused = true
		if i := strings.Index(out, "Error response from daemon: "); i >= 0 {
			out = out[i+len("Error response from daemon: "):]
		}
		e.PrivilegedError = firstLine(out)
	}
	return e, nil
}

// ImageExists returns nil when image is in the local engine, and otherwise an error that
// says how to build it.
func ImageExists(ctx context.Context, image string) error {
	if out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "-f", "{{.Id}}", image).CombinedOutput(); err != nil {
		return fmt.Errorf("node image %s is not in the local Docker engine (build it with `make kind-node-image`): %w: %s",
			image, err, firstLine(strings.TrimSpace(string(out))))
	}
	return nil
}

// ShimDir is the directory holding the docker shim (hack/kind) in the checkout at root.
func ShimDir(root string) string { return filepath.Join(root, "hack", "kind") }

// ShimEnv returns environ with the shim directory first on PATH and the shim's log file
// set: the environment to run the kind CLI with on an engine that refuses --privileged.
// environ is not modified.
func ShimEnv(environ []string, root, logFile string) []string {
	env := make([]string, 0, len(environ)+2)
	path := ""
	for _, kv := range environ {
		switch {
		case strings.HasPrefix(kv, "PATH="):
			path = strings.TrimPrefix(kv, "PATH=")
		case strings.HasPrefix(kv, ShimLogEnv+"="):
		default:
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+withShim(path, root))
	if logFile != "" {
		env = append(env, ShimLogEnv+"="+logFile)
	}
	return env
}

// UseShim puts the shim first on this process's PATH, for kind's Go API
// (sigs.k8s.io/kind/pkg/cluster runs `docker` from PATH in-process). Every docker command
// of the process then goes through the shim, which changes nothing but --privileged.
// restore puts PATH and the log setting back.
func UseShim(root, logFile string) (restore func(), err error) {
	if _, err := os.Stat(filepath.Join(ShimDir(root), "docker")); err != nil {
		return func() {}, fmt.Errorf("docker shim: %w", err)
	}
	oldPath := os.Getenv("PATH")
	oldLog, hadLog := os.LookupEnv(ShimLogEnv)
	if err := os.Setenv("PATH", withShim(oldPath, root)); err != nil {
		return func() {}, err
	}
	if logFile != "" {
		if err := os.Setenv(ShimLogEnv, logFile); err != nil {
			return func() {}, errors.Join(err, os.Setenv("PATH", oldPath))
		}
	}
	return func() {
		_ = os.Setenv("PATH", oldPath)
		if hadLog {
			_ = os.Setenv(ShimLogEnv, oldLog)
		} else {
			_ = os.Unsetenv(ShimLogEnv)
		}
	}, nil
}

func withShim(path, root string) string {
	dir := ShimDir(root)
	if path == "" {
		return dir
	}
	return dir + string(os.PathListSeparator) + path
}

// KubeletCgroupV1Patch lets kubelet run on a cgroup v1 host: since Kubernetes 1.35 it
// refuses to unless failCgroupV1 is false (kind skips kubeadm's preflight, which would
// refuse too). cgroup v1 support leaves Kubernetes in a future release.
const KubeletCgroupV1Patch = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
`

// KubeadmConfigPatches are the kubeadm config patches the node image needs on engine:
// KubeletCgroupV1Patch on a cgroup v1 host, nothing otherwise.
func KubeadmConfigPatches(engine Engine) []string {
	if engine.CgroupV1 {
		return []string{KubeletCgroupV1Patch}
	}
	return nil
}

// ClusterConfig is a one-node kind cluster for the node image on engine: the image, no
// default CNI (the image's own CNI config serves PodSubnet), kube-proxy in nftables mode and
// the kubeadm patches the engine needs. Callers may add to it (port mappings, more patches) before creating.
func ClusterConfig(engine Engine) *v1alpha4.Cluster {
	c := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Nodes:    []v1alpha4.Node{{Role: v1alpha4.ControlPlaneRole, Image: Image}},
		Networking: v1alpha4.Networking{
			DisableDefaultCNI: true,
			PodSubnet:         PodSubnet,
			// nftables mode needs only nft, whichever iptables backend the engine uses for
			// its own rules; the kube-proxy image has iptables-nft too for iptables mode.
			KubeProxyMode: v1alpha4.NFTablesProxyMode,
		},
		KubeadmConfigPatches: KubeadmConfigPatches(engine),
	}
	v1alpha4.SetDefaultsCluster(c)
	return c
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
