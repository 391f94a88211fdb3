package localfleet_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-dev/flotilla/e2e/fleettest"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
)

// TestHubAndTwoMembers checks what every integration test relies on: the kubeconfig files
// work, members accept objects, kube-controller-manager finishes namespace deletion, RBAC is
// enforced, and Stop leaves nothing behind.
func TestHubAndTwoMembers(t *testing.T) {
	begin := time.Now()
	f := localfleet.StartForTest(t, localfleet.Options{Members: 2})
	t.Logf("TIMING: hub + 2 members (etcd, kube-apiserver, kube-controller-manager each) ready in %s", time.Since(begin).Round(time.Millisecond))
	logMemory(t, f)

	if got := memberNames(f); !slices.Equal(got, []string{"member-1", "member-2"}) {
		t.Fatalf("members = %v, want [member-1 member-2]", got)
	}
	ctx := t.Context()
	for _, c := range append([]*localfleet.ControlPlane{f.Hub}, f.Members...) {
		cs := clientsetFromKubeconfigFile(t, c)
		v, err := cs.Discovery().ServerVersion()
		if err != nil {
			t.Fatalf("cluster %s: server version through %s: %v", c.Name, c.KubeconfigPath, err)
		}
		if v.GitVersion != localfleet.KubernetesVersion {
			t.Errorf("cluster %s: version %s, want %s", c.Name, v.GitVersion, localfleet.KubernetesVersion)
		}
	}

	t.Run("a member accepts a namespace and a Service", func(t *testing.T) {
		cs := clientsetFromKubeconfigFile(t, f.Member("member-1"))
		createNamespace(t, cs, "shop")
		svc, err := cs.CoreV1().Services("shop").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "cart"},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "cart"},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create Service: %v", err)
		}
		if svc.Spec.ClusterIP == "" {
			t.Errorf("Service got no cluster IP")
		}
	})

	t.Run("a deleted namespace with content disappears", func(t *testing.T) {
		cs := clientsetFromKubeconfigFile(t, f.Member("member-2"))
		createNamespace(t, cs, "doomed")
		if _, err := cs.CoreV1().ConfigMaps("doomed").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "content"},
			Data:       map[string]string{"k": "v"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create ConfigMap: %v", err)
		}
		if err := cs.CoreV1().Namespaces().Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete namespace: %v", err)
		}
		eventually(t, time.Minute, `namespace "doomed" to be gone (the namespace controller of kube-controller-manager finalizes it)`, func() error {
			_, err := cs.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still there (err=%w)", err)
		})
	})

	t.Run("RBAC denies a ServiceAccount without permissions", func(t *testing.T) {
		m := f.Member("member-1")
		cs := clientsetFromKubeconfigFile(t, m)
		createNamespace(t, cs, "rbac")
		if _, err := cs.CoreV1().ServiceAccounts("rbac").Create(ctx, &corev1.ServiceAccount{
			ObjectMeta: metav1.ObjectMeta{Name: "nobody"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create ServiceAccount: %v", err)
		}
		tok, err := cs.CoreV1().ServiceAccounts("rbac").CreateToken(ctx, "nobody", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("TokenRequest: %v", err)
		}
		cfg := &rest.Config{
			Host:            m.Host(),
			BearerToken:     tok.Status.Token,
			TLSClientConfig: rest.TLSClientConfig{CAData: m.Config.CAData},
		}
		sa := kubernetes.NewForConfigOrDie(cfg)
		_, err = sa.CoreV1().Secrets("rbac").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("list Secrets as system:serviceaccount:rbac:nobody: err=%v, want Forbidden", err)
		}
		// The token itself is valid: the same identity may ask who it is.
		review, err := sa.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SelfSubjectReview with the token: %v", err)
		}
		if got, want := review.Status.UserInfo.Username, "system:serviceaccount:rbac:nobody"; got != want {
			t.Errorf("token authenticates as %q, want %q", got, want)
		}
	})

	t.Run("Stop leaves no process and no directory", func(t *testing.T) {
		pids := fleetPIDs(f)
		if len(pids) != 9 {
			t.Errorf("running processes before Stop = %v, want 9 (3 clusters x 3)", pids)
		}
		begin := time.Now()
		stopTwiceConcurrently(t, f)
		t.Logf("TIMING: Stop took %s", time.Since(begin).Round(time.Millisecond))
		for _, pid := range pids {
			if alive(pid) {
				t.Errorf("process %d still running after Stop", pid)
			}
		}
		if got := processesMentioning(f.Dir); len(got) > 0 {
			t.Errorf("processes still refer to %s after Stop: %v", f.Dir, got)
		}
		if _, err := os.Stat(f.Dir); !os.IsNotExist(err) {
			t.Errorf("fleet directory %s still exists after Stop (stat: %v)", f.Dir, err)
		}
	})
}

// TestAPIServerRestart checks that a member can be taken down and brought back with its data,
// and that its kube-controller-manager keeps working across the restart.
func TestAPIServerRestart(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 1, NoCRDs: true})
	m := f.Members[0]
	ctx := t.Context()
	cs := kubernetes.NewForConfigOrDie(m.Config)
	createNamespace(t, cs, "survivor")
	kcmPID := m.PIDs()["kube-controller-manager"]

	if err := m.StopAPIServer(); err != nil {
		t.Fatalf("StopAPIServer: %v", err)
	}
	if _, running := m.PIDs()["kube-apiserver"]; running {
		t.Errorf("kube-apiserver still listed as running after StopAPIServer")
	}
	reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := cs.CoreV1().Namespaces().Get(reqCtx, "survivor", metav1.GetOptions{})
	cancel()
	if err == nil {
		t.Fatalf("GET namespace succeeded while the API server was stopped")
	}
	t.Logf("request while stopped fails as expected: %v", err)

	begin := time.Now()
	if err := m.StartAPIServer(ctx); err != nil {
		t.Fatalf("StartAPIServer: %v", err)
	}
	t.Logf("TIMING: API server restart ready in %s", time.Since(begin).Round(time.Millisecond))
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "survivor", metav1.GetOptions{}); err != nil {
		t.Fatalf("namespace created before the restart: %v", err)
	}
	if got := m.PIDs()["kube-controller-manager"]; got != kcmPID {
		t.Fatalf("kube-controller-manager pid %d after the restart, want %d still running", got, kcmPID)
	}
	createNamespace(t, cs, "after-restart")
	if err := cs.CoreV1().Namespaces().Delete(ctx, "after-restart", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete namespace: %v", err)
	}
	eventually(t, 2*time.Minute, `namespace "after-restart" to be finalized by the reconnected kube-controller-manager`, func() error {
		_, err := cs.CoreV1().Namespaces().Get(ctx, "after-restart", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (err=%w)", err)
	})
}

// TestCRDsOnHubOnly checks that the CRDs of a directory are installed on the hub, usable right
// away, and not on members; and that Options.Log receives prefixed process output.
func TestCRDsOnHubOnly(t *testing.T) {
	crdDir, err := filepath.Abs("testdata/crds")
	if err != nil {
		t.Fatal(err)
	}
	var log lockedBuffer
	f := localfleet.StartForTest(t, localfleet.Options{
		MemberNames:         []string{"east"},
		CRDDir:              crdDir,
		NoControllerManager: true,
		Log:                 &log,
	})
	ctx := t.Context()
	widgets := schema.GroupVersionResource{Group: "test.flotilla.dev", Version: "v1", Resource: "widgets"}
	hub := dynamic.NewForConfigOrDie(f.Hub.Config)
	w := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "test.flotilla.dev/v1",
		"kind":       "Widget",
		"metadata":   map[string]any{"name": "w1", "namespace": "default"},
		"spec":       map[string]any{"size": int64(3)},
	}}
	if _, err := hub.Resource(widgets).Namespace("default").Create(ctx, w, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Widget on the hub right after Start: %v", err)
	}
	got, err := hub.Resource(widgets).Namespace("default").Get(ctx, "w1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get Widget: %v", err)
	}
	if size, _, _ := unstructured.NestedInt64(got.Object, "spec", "size"); size != 3 {
		t.Errorf("Widget spec.size = %d, want 3", size)
	}
	gadgets := schema.GroupVersionResource{Group: "test.flotilla.dev", Version: "v1", Resource: "gadgets"}
	if _, err := hub.Resource(gadgets).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list Gadgets (second document of the file) on the hub: %v", err)
	}

	member := dynamic.NewForConfigOrDie(f.Member("east").Config)
	if _, err := member.Resource(widgets).Namespace("default").List(ctx, metav1.ListOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("list Widgets on a member: err=%v, want NotFound (CRDs go to the hub only)", err)
	}

	if out := log.String(); !strings.Contains(out, "[hub/kube-apiserver] ") || !strings.Contains(out, "[east/etcd] ") {
		t.Errorf("Options.Log got no prefixed process output; first bytes: %.300q", out)
	}
}

func TestMissingBinariesNameTheMakeTarget(t *testing.T) {
	_, err := localfleet.Start(t.Context(), localfleet.Options{AssetsDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "make k8s-binaries") {
		t.Fatalf("Start without binaries: err=%v, want one naming `make k8s-binaries`", err)
	}
}

func TestInvalidOptionsAreRejected(t *testing.T) {
	cases := map[string]struct {
		opts    localfleet.Options
		wantErr string
	}{
		"negative count":       {opts: localfleet.Options{Members: -1}, wantErr: "must not be negative"},
		"name not a label":     {opts: localfleet.Options{MemberNames: []string{"East_1"}}, wantErr: `member name "East_1"`},
		"duplicate name":       {opts: localfleet.Options{MemberNames: []string{"a", "a"}}, wantErr: `duplicate member name "a"`},
		"member named hub":     {opts: localfleet.Options{MemberNames: []string{"hub"}}, wantErr: `duplicate member name "hub"`},
		"missing CRD folder":   {opts: localfleet.Options{CRDDir: "/nonexistent/crds", NoControllerManager: true}, wantErr: "CRD directory"},
		"negative parallelism": {opts: localfleet.Options{StartParallel: -1}, wantErr: "StartParallel must not be negative"},
		// Refused before anything starts, saying what is missing (memory, checked first).
		"more than the machine holds": {opts: localfleet.Options{Members: 100_000, NoControllerManager: true, Lean: true, NoCRDs: true},
			wantErr: "GiB is available (MemAvailable in /proc/meminfo)"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f, err := localfleet.Start(t.Context(), tc.opts)
			if err == nil {
				_ = f.Stop()
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Start: err=%v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := localfleet.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if want := filepath.Dir(filepath.Dir(wd)); root != want { // this package is e2e/localfleet
		t.Errorf("RepoRoot() = %s, want %s", root, want)
	}
}

func logMemory(t *testing.T, f *localfleet.Fleet) {
	t.Helper()
	for _, c := range append([]*localfleet.ControlPlane{f.Hub}, f.Members...) {
		rss, err := c.RSS()
		if err != nil {
			t.Errorf("RSS of %s: %v", c.Name, err)
			continue
		}
		var total uint64
		var parts []string
		for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
			total += rss[name]
			parts = append(parts, fmt.Sprintf("%s=%d MiB", name, rss[name]>>20))
		}
		t.Logf("MEMORY: %s: %s, total=%d MiB", c.Name, strings.Join(parts, " "), total>>20)
	}
}

func memberNames(f *localfleet.Fleet) []string {
	var names []string
	for _, m := range f.Members {
		names = append(names, m.Name)
	}
	return names
}

// clientsetFromKubeconfigFile goes through the file on disk, as a user or the hub would.
func clientsetFromKubeconfigFile(t *testing.T, c *localfleet.ControlPlane) *kubernetes.Clientset {
	t.Helper()
	raw, err := clientcmd.LoadFromFile(c.KubeconfigPath)
	if err != nil {
		t.Fatalf("load %s: %v", c.KubeconfigPath, err)
	}
	if raw.CurrentContext != c.Name {
		t.Errorf("kubeconfig of %s: current context %q, want the cluster name", c.Name, raw.CurrentContext)
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*raw, nil).ClientConfig()
	if err != nil {
		t.Fatalf("kubeconfig of %s: %v", c.Name, err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

func createNamespace(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// eventually is the shared poll (package fleettest).
var eventually = fleettest.Eventually

func stopTwiceConcurrently(t *testing.T, f *localfleet.Fleet) {
	t.Helper()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := f.Stop(); err != nil {
				t.Errorf("Stop: %v", err)
			}
		})
	}
	wg.Wait()
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestCancelledStartLeavesNothing is the Ctrl-C-during-start case of `make demo`: the caller
// cancels the context and expects no process and no directory to remain.
func TestCancelledStartLeavesNothing(t *testing.T) {
	work := t.TempDir()
	// A hub and two members take seconds to start; 200ms cancels in the middle of it.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	f, err := localfleet.Start(ctx, localfleet.Options{Members: 2, NoCRDs: true, WorkDir: work})
	if err == nil {
		_ = f.Stop()
		t.Fatal("Start finished within 200ms, so the cancellation path was not exercised")
	}
	t.Logf("cancelled start: %.200s", err)
	if got := processesMentioning(work); len(got) > 0 {
		t.Errorf("processes left after a cancelled Start: %v", got)
	}
	if entries, _ := os.ReadDir(work); len(entries) > 0 {
		t.Errorf("WorkDir not empty after a cancelled Start: %v", entries)
	}
}

// TestStartOneAtATimeReportsProgress: with StartParallel 1 the control planes start one after
// another, and every one that is ready is reported with the count so far.
func TestStartOneAtATimeReportsProgress(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	f := localfleet.StartForTest(t, localfleet.Options{Members: 2, NoControllerManager: true, Lean: true, NoCRDs: true,
		StartParallel: 1, Progress: func(line string) {
			if strings.Contains(line, "warning:") {
				return // about the machine (other programs' inotify instances), not this start
			}
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, line)
		}})
	if len(f.Members) != 2 {
		t.Fatalf("%d members, want 2", len(f.Members))
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"starting 3 control planes, 1 at a time", "hub ready: 1 of 3", "member-1 ready: 2 of 3", "member-2 ready: 3 of 3"}
	if len(lines) != len(want) {
		t.Fatalf("progress lines %q, want %d lines containing %q", lines, len(want), want)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("progress line %d = %q, want it to contain %q", i, lines[i], w)
		}
	}
}

// TestCancelledBeforeStartStartsNothing: a caller that cancelled before Start (Ctrl-C while a
// big fleet was queued) gets an error at once and no process is started.
func TestCancelledBeforeStartStartsNothing(t *testing.T) {
	work := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f, err := localfleet.Start(ctx, localfleet.Options{Members: 3, NoCRDs: true, NoControllerManager: true, Lean: true, WorkDir: work})
	if err == nil {
		_ = f.Stop()
		t.Fatal("Start succeeded with a cancelled context")
	}
	if !strings.Contains(err.Error(), "4 control planes not started") {
		t.Errorf("Start: err=%v, want one saying that 4 control planes were not started", err)
	}
	if got := processesMentioning(work); len(got) > 0 {
		t.Errorf("processes started for a cancelled Start: %v", got)
	}
}
