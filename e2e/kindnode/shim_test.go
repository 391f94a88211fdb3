package kindnode

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

// repoRoot is the checkout this package is in.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot find the source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// fakeDocker writes a `docker` into a new directory that prints its arguments, one per
// line, so the shim's rewriting can be read without an engine.
func fakeDocker(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n"
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "docker")
}

func TestShimRewritesOnlyPrivileged(t *testing.T) {
	shim := filepath.Join(ShimDir(repoRoot(t)), "docker")
	equivalent := []string{"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
		"--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm", "--device", "/dev/kmsg"}
	join := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	cases := []struct {
		name    string
		args    []string
		want    []string
		wantLog string
	}{{
		name: "run as kind creates a node: --privileged becomes the spelled-out access",
		args: []string{"run", "--name", "c1-control-plane", "--hostname", "c1-control-plane", "--privileged",
			"--security-opt", "seccomp=unconfined", "--tmpfs", "/run", "-e", "KUBECONFIG=/etc/kubernetes/admin.conf", "img:v1"},
		want: join([]string{"run", "--name", "c1-control-plane", "--hostname", "c1-control-plane"}, equivalent,
			[]string{"--security-opt", "seccomp=unconfined", "--tmpfs", "/run", "-e", "KUBECONFIG=/etc/kubernetes/admin.conf", "img:v1"}),
		wantLog: "run c1-control-plane: --privileged -> --cap-add ALL --cap-drop SYS_RESOURCE",
	}, {
		name:    "exec as kind runs kubeadm: --privileged is dropped",
		args:    []string{"exec", "--privileged", "-i", "-e", "A=B", "c1-control-plane", "kubeadm", "init", "--v=6"},
		want:    []string{"exec", "-i", "-e", "A=B", "c1-control-plane", "kubeadm", "init", "--v=6"},
		wantLog: "exec c1-control-plane: dropped --privileged",
	}, {
		name: "a --privileged of the command in the container is left alone",
		args: []string{"exec", "-e", "X", "node", "sh", "-c", "echo", "--privileged"},
		want: []string{"exec", "-e", "X", "node", "sh", "-c", "echo", "--privileged"},
	}, {
		name:    "value options are not mistaken for the image",
		args:    []string{"run", "--net", "kind", "-v", "/var", "--privileged", "img", "--privileged"},
		want:    join([]string{"run", "--net", "kind", "-v", "/var"}, equivalent, []string{"img", "--privileged"}),
		wantLog: "run img: --privileged -> ",
	}, {
		name:    "global options and `docker container run`",
		args:    []string{"--context", "default", "container", "run", "--privileged=true", "img"},
		want:    join([]string{"--context", "default", "container", "run"}, equivalent, []string{"img"}),
		wantLog: "run img: --privileged -> ",
	}, {
		name: "--privileged=false is passed through",
		args: []string{"run", "--privileged=false", "img"},
		want: []string{"run", "--privileged=false", "img"},
	}, {
		name: "other commands are passed through unchanged",
		args: []string{"inspect", "--privileged", "-f", "{{.Id}}", "c1"},
		want: []string{"inspect", "--privileged", "-f", "{{.Id}}", "c1"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logFile := filepath.Join(t.TempDir(), "shim.log")
			cmd := exec.Command(shim, tc.args...)
			cmd.Env = append(os.Environ(), "FLOTILLA_REAL_DOCKER="+fakeDocker(t),
				"FLOTILLA_SHIM_CAP_DROP=SYS_RESOURCE", ShimLogEnv+"="+logFile)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("shim %v: %v", tc.args, err)
			}
			got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("arguments the real docker got (-want +got):\n%s", diff)
			}
			log, _ := os.ReadFile(logFile)
			switch {
			case tc.wantLog == "" && len(log) != 0:
				t.Errorf("the shim logged a rewrite for a command it must not change: %s", log)
			case tc.wantLog != "" && !strings.Contains(string(log), tc.wantLog):
				t.Errorf("shim log = %q, want a line containing %q", log, tc.wantLog)
			}
		})
	}
}

func TestShimEnvPutsShimFirst(t *testing.T) {
	env := ShimEnv([]string{"HOME=/root", "PATH=/usr/bin:/bin", ShimLogEnv + "=/old"}, "/src", "/tmp/shim.log")
	want := []string{"HOME=/root", "PATH=/src/hack/kind:/usr/bin:/bin", ShimLogEnv + "=/tmp/shim.log"}
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("ShimEnv (-want +got):\n%s", diff)
	}
}

func TestClusterConfigPatchesKubeletOnlyOnCgroupV1(t *testing.T) {
	v1 := ClusterConfig(Engine{CgroupV1: true})
	if diff := cmp.Diff([]string{KubeletCgroupV1Patch}, v1.KubeadmConfigPatches); diff != "" {
		t.Errorf("cgroup v1 patches (-want +got):\n%s", diff)
	}
	if !strings.Contains(KubeletCgroupV1Patch, "failCgroupV1: false") {
		t.Errorf("the cgroup v1 patch does not set failCgroupV1: false:\n%s", KubeletCgroupV1Patch)
	}
	v2 := ClusterConfig(Engine{})
	if len(v2.KubeadmConfigPatches) != 0 {
		t.Errorf("cgroup v2 hosts got kubeadm patches: %v", v2.KubeadmConfigPatches)
	}
	if !v2.Networking.DisableDefaultCNI || v2.Networking.PodSubnet != PodSubnet || v2.Nodes[0].Image != Image {
		t.Errorf("cluster config = %+v, want no default CNI, podSubnet %s, image %s", v2, PodSubnet, Image)
	}
}

// The shell form (hack/kind/cluster*.yaml, for the kind CLI) and the Go form must not drift.
func TestClusterYAMLMatchesClusterConfig(t *testing.T) {
	for file, engine := range map[string]Engine{"cluster.yaml": {}, "cluster-cgroupv1.yaml": {CgroupV1: true}} {
		raw, err := os.ReadFile(filepath.Join(ShimDir(repoRoot(t)), file))
		if err != nil {
			t.Fatal(err)
		}
		var got v1alpha4.Cluster
		if err := yaml.UnmarshalStrict(raw, &got); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		v1alpha4.SetDefaultsCluster(&got)
		if diff := cmp.Diff(ClusterConfig(engine), &got); diff != "" {
			t.Errorf("hack/kind/%s differs from ClusterConfig(%+v) (-go +yaml):\n%s", file, engine, diff)
		}
	}
}
