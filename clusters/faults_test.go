package clusters

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// registryUser is the hub identity TestSecretReadFailureKeepsTheConnection runs the
// registry as, so that its permissions can be taken away for a moment.
const registryUser = "flotilla-registry-test"

// TestSecretReadFailureKeepsTheConnection: the hub cannot read a member's kubeconfig Secret
// for a while (here its permission to get Secrets is revoked, as a hub hiccup would fail
// the read) — the member stays connected and Ready, and nothing is reported as wrong with
// its credentials.
func TestSecretReadFailureKeepsTheConnection(t *testing.T) {
	fleet := startFleet(t, 1)
	ctx := context.Background()
	scheme := runtime.NewScheme()
	must(t, clientgoscheme.AddToScheme(scheme))
	must(t, fleetv1alpha1.AddToScheme(scheme))
	admin, err := client.New(fleet.Hub.Config, client.Options{Scheme: scheme})
	must(t, err)

	// Everything the registry needs, except reading Secret data, cluster-wide; reading
	// Secrets in the hub namespace through a RoleBinding the test takes away.
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: registryUser}}
	must(t, admin.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: registryUser}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{fleetv1alpha1.GroupVersion.Group}, Resources: []string{"*"}, Verbs: []string{"*"}},
		{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "create"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"cluster.x-k8s.io"}, Resources: []string{"clusters"}, Verbs: []string{"get", "list", "watch"}},
	}}))
	must(t, admin.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: registryUser},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: registryUser}, Subjects: subject}))
	must(t, client.IgnoreAlreadyExists(admin.Create(ctx, namespace(hubNS))))
	must(t, admin.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read-secrets", Namespace: hubNS}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
	}}))
	grant := func() *rbacv1.RoleBinding {
		return &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "read-secrets", Namespace: hubNS},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "read-secrets"}, Subjects: subject}
	}
	must(t, admin.Create(ctx, grant()))

	cfg := rest.CopyConfig(fleet.Hub.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: registryUser}
	r, _ := runRegistryAs(t, fleet, cfg, SetupOptions{Connections: fastProbes, Policy: CredentialPolicy{AllowLoopback: true}})
	r.hub = admin // the test's own writes and reads
	must(t, admin.Create(ctx, kubeconfigSecret("steady-kubeconfig", fleet.Members[0].Kubeconfig(), nil, nil)))
	must(t, admin.Create(ctx, memberCluster("steady", "steady-kubeconfig")))
	r.waitCondition(t, "steady", fleetv1alpha1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)

	// Revoke, change the Secret's metadata (the controller reads a Secret again only when
	// its version changed), and wait until the MemberCluster controller has failed to read
	// it a few times.
	errorsBefore := reconcileErrors(t, "membercluster")
	must(t, admin.Delete(ctx, grant()))
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := &corev1.Secret{}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: hubNS, Name: "steady-kubeconfig"}, s); err != nil {
			return err
		}
		metav1.SetMetaDataAnnotation(&s.ObjectMeta, "example.com/touched", "yes")
		return admin.Update(ctx, s)
	}))
	eventually(t, 30*time.Second, "the MemberCluster controller to fail reading the Secret 3 times", func() error {
		if err := stillConnected(r, "steady"); err != nil {
			t.Fatal(err)
		}
		if n := reconcileErrors(t, "membercluster") - errorsBefore; n < 3 {
			return fmt.Errorf("%v failed reconciles", n)
		}
		return nil
	})
	must(t, stillConnected(r, "steady"))

	must(t, admin.Create(ctx, grant()))
	r.waitCondition(t, "steady", fleetv1alpha1.ConditionCredentialsValid, metav1.ConditionTrue, fleetv1alpha1.ReasonValid, 10*time.Second)
	must(t, stillConnected(r, "steady"))
}

// stillConnected says whether the member is connected and its status shows nothing wrong.
func stillConnected(r *registry, name string) error {
	if h, ok := r.conns.Health(name); !ok || !h.Connected {
		return fmt.Errorf("connection to %s dropped (present %v, health %+v)", name, ok, h)
	}
	for _, typ := range []string{fleetv1alpha1.ConditionCredentialsValid, fleetv1alpha1.ConditionConnected, fleetv1alpha1.ConditionReady} {
		_, c, err := r.condition(name, typ)
		if err != nil {
			return err
		}
		if c.Status != metav1.ConditionTrue {
			return fmt.Errorf("%s of %s went %s (%s: %s)", typ, name, c.Status, c.Reason, c.Message)
		}
	}
	return nil
}

// reconcileErrors is controller-runtime's count of failed reconciles of a controller in
// this process.
func reconcileErrors(t *testing.T, controller string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	must(t, err)
	var n float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_errors_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == controller {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}
