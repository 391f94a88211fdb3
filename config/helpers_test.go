package config_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-dev/flotilla/e2e"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

func TestMain(m *testing.M) {
	// Clients of the tests log nothing worth reading; without a logger controller-runtime
	// prints a warning with a stack trace.
	ctrllog.SetLogger(logr.Discard())
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// built holds the binaries of this checkout, built once for the tests that run them.
var built struct {
	once sync.Once
	dir  string
	bins e2e.Binaries
	err  error
}

// binaries returns fleet-controller and fleetctl built from this checkout (or those of
// $FLOTILLA_E2E_BIN_DIR) and the pinned kubectl.
func binaries(t *testing.T) e2e.Binaries {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "flotilla-config-test-bin-"); built.err != nil {
			return
		}
		built.bins, built.err = e2e.FindBinaries(context.Background(), repoRoot(t), built.dir)
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bins
}

// repoRoot is the checkout the test runs in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := localfleet.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// kubectl returns the pinned kubectl that `make deploy` uses (built by `make k8s-binaries`),
// falling back to $FLOTILLA_K8S_ASSETS for users who bring their own binaries.
func kubectl(t *testing.T) string {
	t.Helper()
	candidates := []string{filepath.Join(repoRoot(t), "bin", "k8s", localfleet.KubernetesVersion, "kubectl")}
	if dir := os.Getenv(localfleet.AssetsEnv); dir != "" {
		candidates = append(candidates, filepath.Join(dir, "kubectl"))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode()&0o111 != 0 {
			return c
		}
	}
	t.Fatalf("no kubectl %s at %s: run `make k8s-binaries`", localfleet.KubernetesVersion, strings.Join(candidates, " or "))
	return ""
}

// run runs kubectl and fails the test with its output if it fails.
func run(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), kubectl(t), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return out
}

// render returns the objects of `kubectl kustomize dir`, dir relative to the checkout.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	out := run(t, nil, "kustomize", filepath.Join(repoRoot(t), dir))
	objs, err := decode(out)
	if err != nil {
		t.Fatalf("kubectl kustomize %s renders something that is not Kubernetes YAML: %v", dir, err)
	}
	if len(objs) == 0 {
		t.Fatalf("kubectl kustomize %s renders nothing", dir)
	}
	return objs
}

func decode(data []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := d.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(u.Object) == 0 {
			continue
		}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, errors.New("a document without apiVersion or kind")
		}
		objs = append(objs, u)
	}
}

// encode is the inverse of decode: a multi-document YAML stream for kubectl apply -f -.
func encode(t *testing.T, objs []*unstructured.Unstructured) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, o := range objs {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(data)
	}
	return buf.Bytes()
}

// find returns the rendered object of that kind, namespace and name, failing the test if
// there is none.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("rendered config holds no %s %s/%s", kind, namespace, name)
	return nil
}
