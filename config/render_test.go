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
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
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
	metricsService = "flotilla-controller-metrics"
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
	for _, arg := range []string{"--leader-elect", "--metrics-bind-address=:8443", "--health-probe-bind-address=:8081"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}
	// Metrics are served over HTTPS to authorized callers only; plain HTTP is an explicit choice.
	for _, arg := range c.Args {
		if strings.HasPrefix(arg, "--metrics-secure") {
			t.Errorf("args %v set %s: the shipped controller keeps the secure default", c.Args, arg)
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
	// The metrics endpoint authenticates and authorizes every scrape against the hub.
	if !grants(clusterRole.Rules, "authentication.k8s.io", "tokenreviews", "create") ||
		!grants(clusterRole.Rules, "authorization.k8s.io", "subjectaccessreviews", "create") {
		t.Errorf("ClusterRole %s does not allow creating tokenreviews and subjectaccessreviews: every metrics scrape would fail", managerRole)
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
	typed(t, find(t, objs, "Service", hubNamespace, metricsService), &svc)
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("Service selects %s=%s, the controller's pods have labels %v", k, v, d.Spec.Template.Labels)
		}
	}
	if len(svc.Spec.Selector) == 0 || len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service %v: want a selector and one port", svc.Spec)
	}
	p := svc.Spec.Ports[0]
	var container *corev1.ContainerPort
	for i, cp := range d.Spec.Template.Spec.Containers[0].Ports {
		if cp.Name == p.TargetPort.String() {
			container = &d.Spec.Template.Spec.Containers[0].Ports[i]
		}
	}
	// --metrics-bind-address=:8443 (checked above) is the port the Service must reach.
	if p.Name != "https" || p.Port != 8443 || container == nil || container.ContainerPort != 8443 {
		t.Errorf("Service port %+v to container port %+v: want https on 8443 to the container's 8443", p, container)
	}
}

// TestPrometheusMonitorScrapesTheMetricsService checks the optional ServiceMonitor against
// the Service it must find: same namespace, a selector matching the Service's labels, its
// port by name, HTTPS with Prometheus's token.
func TestPrometheusMonitorScrapesTheMetricsService(t *testing.T) {
	for _, o := range render(t, "config/default") {
		if o.GetKind() == "ServiceMonitor" {
			t.Errorf("config/default renders ServiceMonitor %s: its CRD is not on every hub, it belongs to config/prometheus only", o.GetName())
		}
	}
	var svc corev1.Service
	typed(t, find(t, render(t, "config/default"), "Service", hubNamespace, metricsService), &svc)
	monitor := find(t, render(t, "config/prometheus"), "ServiceMonitor", hubNamespace, metricsService)
	var m struct {
		Spec struct {
			Selector  metav1.LabelSelector `json:"selector"`
			Endpoints []struct {
				Port            string `json:"port"`
				Scheme          string `json:"scheme"`
				Path            string `json:"path"`
				BearerTokenFile string `json:"bearerTokenFile"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(monitor.Object, &m); err != nil {
		t.Fatal(err)
	}
	sel, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor selector %v (%v) does not select Service labels %v", m.Spec.Selector, err, svc.Labels)
	}
	if len(m.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints %+v, want one", m.Spec.Endpoints)
	}
	e := m.Spec.Endpoints[0]
	if e.Port != svc.Spec.Ports[0].Name || e.Scheme != "https" || e.Path != "/metrics" ||
		e.BearerTokenFile != "/var/run/secrets/kubernetes.io/serviceaccount/token" {
		t.Errorf("ServiceMonitor endpoint %+v: want port %q, https, /metrics and Prometheus's ServiceAccount token", e, svc.Spec.Ports[0].Name)
	}
}

// TestDefaultShipsThePersonaRoles checks the roles people are given on the hub (README
// "Security model"): every Flotilla kind is covered, and Secrets only by the fleet admin.
// TestPersonasOnARealHub checks what they allow against an API server.
func TestDefaultShipsThePersonaRoles(t *testing.T) {
	objs := render(t, "config/default")
	var kinds []string
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			var crd apiextensionsv1.CustomResourceDefinition
			typed(t, o, &crd)
			kinds = append(kinds, crd.Spec.Names.Plural)
		}
	}
	clusterRole := func(name string) []rbacv1.PolicyRule {
		var r rbacv1.ClusterRole
		typed(t, find(t, objs, "ClusterRole", "", name), &r)
		return r.Rules
	}
	role := func(name string) []rbacv1.PolicyRule {
		var r rbacv1.Role
		typed(t, find(t, objs, "Role", hubNamespace, name), &r)
		return r.Rules
	}
	admin, author, viewer := clusterRole("flotilla-fleet-admin"), clusterRole("flotilla-baseline-author"), clusterRole("flotilla-viewer")
	write := []string{"create", "update", "patch", "delete"}
	read := []string{"get", "list", "watch"}
	for _, kind := range kinds {
		for _, verb := range append(slices.Clone(read), write...) {
			if !grants(admin, "fleet.flotilla.dev", kind, verb) {
				t.Errorf("flotilla-fleet-admin cannot %s %s", verb, kind)
			}
		}
		for _, verb := range read {
			if !grants(viewer, "fleet.flotilla.dev", kind, verb) || !grants(author, "fleet.flotilla.dev", kind, verb) {
				t.Errorf("flotilla-viewer or flotilla-baseline-author cannot %s %s", verb, kind)
			}
		}
		for _, verb := range write {
			if grants(viewer, "fleet.flotilla.dev", kind, verb) {
				t.Errorf("flotilla-viewer can %s %s", verb, kind)
			}
			if kind != "baselines" && grants(author, "fleet.flotilla.dev", kind, verb) {
				t.Errorf("flotilla-baseline-author can %s %s", verb, kind)
			}
		}
	}
	for _, rules := range [][]rbacv1.PolicyRule{admin, author, viewer, role("flotilla-baseline-author")} {
		for _, verb := range append(slices.Clone(read), write...) {
			if grants(rules, "", "secrets", verb) {
				t.Errorf("a persona role other than the fleet admin's Role can %s Secrets: %+v", verb, rules)
			}
		}
	}
	if !grants(role("flotilla-fleet-admin"), "", "secrets", "create") {
		t.Error("Role flotilla-fleet-admin cannot create Secrets: fleetctl register could not store a kubeconfig")
	}
	// Only the viewer is aggregated into the built-in roles; writing Baselines is never a
	// side effect of being a namespace editor.
	for _, o := range objs {
		if o.GetKind() != "ClusterRole" || !strings.HasPrefix(o.GetName(), "flotilla-") {
			continue
		}
		for k := range o.GetLabels() {
			if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") && (o.GetName() != "flotilla-viewer" || k != "rbac.authorization.k8s.io/aggregate-to-view") {
				t.Errorf("ClusterRole %s carries %s", o.GetName(), k)
			}
		}
	}
	var reader rbacv1.ClusterRole
	typed(t, find(t, objs, "ClusterRole", "", "flotilla-metrics-reader"), &reader)
	want := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}
	if !equality.Semantic.DeepEqual(reader.Rules, want) {
		t.Errorf("flotilla-metrics-reader rules %+v, want %+v", reader.Rules, want)
	}
}
