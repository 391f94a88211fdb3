package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

const (
	hubNamespace   = "flotilla-system"
	deploymentName = "flotilla-controller"
	serviceAccount = "flotilla-controller"
	managerRole    = "flotilla-manager"
	imageRepo      = "flotilla/fleet-controller"
)

// typed converts a rendered object into its Go type, rejecting unknown fields, so that a
// misspelt field fails here rather than being ignored.
func typed(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

func TestDefaultInstallsTheCRDs(t *testing.T) {
	objs := render(t, "config/default")
	var got []string
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			got = append(got, o.GetName())
		}
	}
	// Every CRD that `make manifests` generates must be installed: a new kind left out of
	// config/crd/kustomization.yaml would make the controller fail at start.
	var want []string
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd struct{ Metadata struct{ Name string } }
		if err := yaml.Unmarshal(data, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		want = append(want, crd.Metadata.Name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("config/default installs CRDs %v, config/crd/bases has %v", got, want)
	}
}

func TestDefaultNamespacesEverythingInTheHubNamespace(t *testing.T) {
	objs := render(t, "config/default")
	find(t, objs, "Namespace", "", hubNamespace)
	clusterScoped := []string{"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
	for _, o := range objs {
		if slices.Contains(clusterScoped, o.GetKind()) {
			continue
		}
		// The controller's --hub-namespace default must match where it runs and leases.
		if o.GetNamespace() != hubNamespace {
			t.Errorf("%s %s is in namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), hubNamespace)
		}
	}
}

func TestDefaultDeploymentIsHardened(t *testing.T) {
	objs := render(t, "config/default")
	var d appsv1.Deployment
	typed(t, find(t, objs, "Deployment", hubNamespace, deploymentName), &d)
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != serviceAccount {
		t.Errorf("serviceAccountName %q, want %q", pod.ServiceAccountName, serviceAccount)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	repo, tag, ok := strings.Cut(c.Image, ":")
	if repo != imageRepo || !ok || tag == "" || tag == "latest" {
		t.Errorf("image %q, want %s:<version> with an explicit tag that is not latest", c.Image, imageRepo)
	}
	for _, arg := range []string{"--leader-elect", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	checkProbe(t, "liveness", c.LivenessProbe, "/healthz", ports)
	checkProbe(t, "readiness", c.ReadinessProbe, "/readyz", ports)

	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if c.Resources.Requests.Name(name, "").IsZero() || c.Resources.Limits.Name(name, "").IsZero() {
			t.Errorf("%s: want a request and a limit, got requests %v limits %v", name, c.Resources.Requests, c.Resources.Limits)
		}
	}

	// Each setting may come from the container or, where Kubernetes allows, the pod.
	sc, psc := c.SecurityContext, pod.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if !ptr.Deref(sc.RunAsNonRoot, ptr.Deref(psc.RunAsNonRoot, false)) {
		t.Error("runAsNonRoot is not true")
	}
	if uid := ptr.Deref(sc.RunAsUser, ptr.Deref(psc.RunAsUser, 0)); uid != 65532 {
		t.Errorf("runAsUser %d, want 65532 (the image's USER)", uid)
	}
	if !ptr.Deref(sc.ReadOnlyRootFilesystem, false) {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if ptr.Deref(sc.AllowPrivilegeEscalation, true) {
		t.Error("allowPrivilegeEscalation is not false")
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile %v, want RuntimeDefault", seccomp)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities %v, want drop [ALL] and nothing added", sc.Capabilities)
	}
}

func checkProbe(t *testing.T, what string, p *corev1.Probe, path string, ports map[string]int32) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe: want an HTTP GET of %s", what, path)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s probe path %q, want %q", what, p.HTTPGet.Path, path)
	}
	port := p.HTTPGet.Port
	if port.Type == intstr.String {
		port = intstr.FromInt32(ports[port.StrVal])
	}
	if port.IntValue() != 8081 {
		t.Errorf("%s probe port %s, want 8081 (--health-probe-bind-address)", what, p.HTTPGet.Port.String())
	}
}

func TestDefaultBindsTheGeneratedRolesToTheControllersServiceAccount(t *testing.T) {
	objs := render(t, "config/default")
	find(t, objs, "ServiceAccount", hubNamespace, serviceAccount)

	var role rbacv1.Role
	typed(t, find(t, objs, "Role", hubNamespace, managerRole), &role)
	// --leader-elect is on, so the namespaced Role must allow the Lease.
	if !grants(role.Rules, "coordination.k8s.io", "leases", "update") {
		t.Errorf("Role %s does not allow updating leases: leader election would fail", managerRole)
	}
	var clusterRole rbacv1.ClusterRole
	typed(t, find(t, objs, "ClusterRole", "", managerRole), &clusterRole)
	if !grants(clusterRole.Rules, "fleet.flotilla.dev", "memberclusters/status", "patch") {
		t.Errorf("ClusterRole %s does not allow patching memberclusters/status", managerRole)
	}
	// Registration scope: kubeconfig Secrets are read in the hub namespace only.
	for _, verb := range []string{"get", "list", "watch"} {
		if grants(clusterRole.Rules, "", "secrets", verb) || grants(clusterRole.Rules, "", "*", verb) {
			t.Errorf("ClusterRole %s allows %s on Secrets in every namespace", managerRole, verb)
		}
		if !grants(role.Rules, "", "secrets", verb) {
			t.Errorf("Role %s does not allow %s on Secrets in the hub namespace: kubeconfigs cannot be read", managerRole, verb)
		}
	}

	want := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: serviceAccount, Namespace: hubNamespace}
	var crb rbacv1.ClusterRoleBinding
	typed(t, find(t, objs, "ClusterRoleBinding", "", managerRole), &crb)
	if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != managerRole || !slices.Equal(crb.Subjects, []rbacv1.Subject{want}) {
		t.Errorf("ClusterRoleBinding binds %v to %v, want ClusterRole %s to %v", crb.RoleRef, crb.Subjects, managerRole, want)
	}
	var rb rbacv1.RoleBinding
	typed(t, find(t, objs, "RoleBinding", hubNamespace, managerRole), &rb)
	if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != managerRole || !slices.Equal(rb.Subjects, []rbacv1.Subject{want}) {
		t.Errorf("RoleBinding binds %v to %v, want Role %s to %v", rb.RoleRef, rb.Subjects, managerRole, want)
	}
}

func grants(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	return slices.ContainsFunc(rules, func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb)
	})
}

func TestDefaultMetricsServiceSelectsTheController(t *testing.T) {
	objs := render(t, "config/default")
	var d appsv1.Deployment
	typed(t, find(t, objs, "Deployment", hubNamespace, deploymentName), &d)
	var svc corev1.Service
	typed(t, find(t, objs, "Service", hubNamespace, "flotilla-controller-metrics"), &svc)
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("Service selects %s=%s, the controller's pods have labels %v", k, v, d.Spec.Template.Labels)
		}
	}
	if len(svc.Spec.Selector) == 0 || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
		t.Errorf("Service %v: want a selector and one port to the container's metrics port", svc.Spec)
	}
}
