package config_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e"
	"github.com/flotilla-dev/flotilla/e2e/fleettest"
	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// TestPersonasOnARealHub installs config/default on a real hub, gives three ServiceAccounts
// the persona roles of config/rbac (bound as README "Security model" says), and tries, with
// their own tokens, what each may and may not do: the viewer reads the fleet and nothing
// else (and so does the built-in view role it is aggregated into; edit writes nothing), the Baseline author writes Baselines and ConfigMap sources but can neither register,
// relabel or remove a member nor read or plant a kubeconfig Secret, and the fleet admin
// registers a member with the real fleetctl.
func TestPersonasOnARealHub(t *testing.T) {
	ctx := t.Context()
	bins := binaries(t)
	// The member needs its kube-controller-manager: fleetctl register waits for the token
	// controller to fill in the hub's token.
	fleet := localfleet.StartForTest(t, localfleet.Options{Members: 1, NoCRDs: true})
	if err := e2e.InstallHub(ctx, bins.Kubectl, repoRoot(t), fleet.Hub.KubeconfigPath); err != nil {
		t.Fatal(err)
	}
	admin := personaClient(t, fleet.Hub.Config, "")

	// What a registered member leaves on the hub: its kubeconfig Secret and MemberCluster.
	kubeconfigSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "eu-1-kubeconfig", Namespace: hubNamespace},
		StringData: map[string]string{"value": "a kubeconfig"},
	}
	member := &fleetv1alpha1.MemberCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "eu-1", Labels: map[string]string{"env": "dev"}},
		Spec: fleetv1alpha1.MemberClusterSpec{KubeconfigSecretRef: fleetv1alpha1.SecretKeyReference{
			Namespace: hubNamespace, Name: kubeconfigSecret.Name, Key: "value"}},
	}
	for _, obj := range []client.Object{kubeconfigSecret, member} {
		if err := admin.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	persona := func(t *testing.T, name string, g e2e.Grant) (client.Client, string) {
		t.Helper()
		token, err := e2e.NewServiceAccount(ctx, fleet.Hub.Config, name, g, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return personaClient(t, fleet.Hub.Config, token), token
	}
	newMember := func() *fleetv1alpha1.MemberCluster {
		return &fleetv1alpha1.MemberCluster{
			ObjectMeta: metav1.ObjectMeta{Name: "planted"},
			Spec: fleetv1alpha1.MemberClusterSpec{KubeconfigSecretRef: fleetv1alpha1.SecretKeyReference{
				Namespace: hubNamespace, Name: kubeconfigSecret.Name, Key: "value"}},
		}
	}
	// A Secret the Secret registration source would turn into a member.
	plantedKubeconfig := func() *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "planted", Namespace: hubNamespace,
			Labels: map[string]string{fleetv1alpha1.LabelKubeconfig: "true"}}, StringData: map[string]string{"value": "x"}}
	}
	baseline := func(name string) *fleetv1alpha1.Baseline {
		return &fleetv1alpha1.Baseline{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: fleetv1alpha1.BaselineSpec{
				ClusterSelector: metav1.LabelSelector{},
				Resources:       []fleetv1alpha1.ResourceSource{{ConfigMapRef: &fleetv1alpha1.LocalObjectReference{Name: name}}},
			},
		}
	}
	relabel := func(c client.Client) error {
		mc := &fleetv1alpha1.MemberCluster{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(member), mc); err != nil {
			return err
		}
		mc.Labels["env"] = "prod"
		return c.Update(ctx, mc)
	}

	t.Run("viewer", func(t *testing.T) {
		c, _ := persona(t, "viewer", e2e.Grant{ClusterRoles: []string{"flotilla-viewer"}})
		allowed(t, "list MemberClusters", c.List(ctx, &fleetv1alpha1.MemberClusterList{}))
		allowed(t, "list BaselineBindings", c.List(ctx, &fleetv1alpha1.BaselineBindingList{}))
		allowed(t, "list ExportedServices", c.List(ctx, &fleetv1alpha1.ExportedServiceList{}))
		forbidden(t, "create a MemberCluster", c.Create(ctx, newMember()))
		forbidden(t, "relabel a MemberCluster", relabel(c))
		forbidden(t, "create a Baseline", c.Create(ctx, baseline("by-viewer")))
		forbidden(t, "get a kubeconfig Secret", c.Get(ctx, client.ObjectKeyFromObject(kubeconfigSecret), &corev1.Secret{}))
		forbidden(t, "list Secrets of the hub namespace", c.List(ctx, &corev1.SecretList{}, client.InNamespace(hubNamespace)))
		forbidden(t, "list ConfigMaps of the hub namespace", c.List(ctx, &corev1.ConfigMapList{}, client.InNamespace(hubNamespace)))
	})

	t.Run("the built-in view role reads the fleet, edit writes no Baseline", func(t *testing.T) {
		view, _ := persona(t, "cluster-viewer", e2e.Grant{ClusterRoles: []string{"view"}})
		edit, _ := persona(t, "cluster-editor", e2e.Grant{ClusterRoles: []string{"edit"}})
		// The aggregation controller (kube-controller-manager) copies the rules into view.
		fleettest.Eventually(t, 30*time.Second, "view to list MemberClusters (flotilla-viewer aggregated)", func() error {
			return view.List(ctx, &fleetv1alpha1.MemberClusterList{})
		})
		forbidden(t, "create a Baseline with edit", edit.Create(ctx, baseline("by-editor")))
		forbidden(t, "create a MemberCluster with edit", edit.Create(ctx, newMember()))
	})

	t.Run("Baseline author", func(t *testing.T) {
		c, _ := persona(t, "author", e2e.Grant{ClusterRoles: []string{"flotilla-baseline-author"}, HubRoles: []string{"flotilla-baseline-author"}})
		source := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "by-author", Namespace: hubNamespace},
			Data: map[string]string{"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n"}}
		allowed(t, "create a ConfigMap source in the hub namespace", c.Create(ctx, source))
		allowed(t, "create a Baseline", c.Create(ctx, baseline("by-author")))
		allowed(t, "list MemberClusters", c.List(ctx, &fleetv1alpha1.MemberClusterList{}))
		forbidden(t, "create a MemberCluster", c.Create(ctx, newMember()))
		forbidden(t, "relabel a MemberCluster into other Baselines' selectors", relabel(c))
		forbidden(t, "pause a MemberCluster", c.Patch(ctx, member.DeepCopy(), client.RawPatch(client.Merge.Type(), []byte(`{"spec":{"paused":true}}`))))
		forbidden(t, "delete a MemberCluster", c.Delete(ctx, member.DeepCopy()))
		forbidden(t, "get a kubeconfig Secret", c.Get(ctx, client.ObjectKeyFromObject(kubeconfigSecret), &corev1.Secret{}))
		forbidden(t, "list Secrets of the hub namespace", c.List(ctx, &corev1.SecretList{}, client.InNamespace(hubNamespace)))
		forbidden(t, "create a kubeconfig Secret the Secret source would register", c.Create(ctx, plantedKubeconfig()))
		forbidden(t, "write BaselineBinding status", c.Status().Patch(ctx, &fleetv1alpha1.BaselineBinding{ObjectMeta: metav1.ObjectMeta{Name: "any"}},
			client.RawPatch(client.Merge.Type(), []byte(`{"status":{}}`))))
		forbidden(t, "create a ConfigMap outside the hub namespace", c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"}}))
	})

	t.Run("fleet admin registers a member with fleetctl", func(t *testing.T) {
		c, token := persona(t, "fleet-admin", e2e.Grant{ClusterRoles: []string{"flotilla-fleet-admin"}, HubRoles: []string{"flotilla-fleet-admin"}})
		kubeconfig := filepath.Join(t.TempDir(), "fleet-admin.kubeconfig")
		if err := e2e.WriteTokenKubeconfig(fleet.Hub.Config, "fleet-admin", token, kubeconfig); err != nil {
			t.Fatal(err)
		}
		m := fleet.Members[0]
		out, err := exec.CommandContext(ctx, bins.Fleetctl, "register", "us-1", "--kubeconfig", kubeconfig,
			"--member-kubeconfig", m.KubeconfigPath, "--labels", "env=prod").CombinedOutput()
		if err != nil || !strings.Contains(string(out), `Registered "us-1"`) {
			t.Fatalf("fleetctl register as the fleet admin: %v\n%s", err, out)
		}
		mc := &fleetv1alpha1.MemberCluster{}
		allowed(t, "get the registered MemberCluster", c.Get(ctx, client.ObjectKey{Name: "us-1"}, mc))
		allowed(t, "read its kubeconfig Secret", c.Get(ctx, client.ObjectKey{Namespace: hubNamespace, Name: "us-1-kubeconfig"}, &corev1.Secret{}))
		allowed(t, "relabel a MemberCluster", relabel(c))
		allowed(t, "create a Baseline", c.Create(ctx, baseline("by-admin")))
		// The Role is the hub namespace's only: no Secrets elsewhere.
		forbidden(t, "list Secrets of another namespace", c.List(ctx, &corev1.SecretList{}, client.InNamespace("default")))
	})
}

// personaClient is a client of the hub that authenticates with token only (the admin's
// client certificate when token is empty).
func personaClient(t *testing.T, hub *rest.Config, token string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(hub)
	if token != "" {
		cfg = &rest.Config{Host: hub.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: hub.CAData}}
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := fleetv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func allowed(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v, want it allowed", what, err)
	}
}

func forbidden(t *testing.T, what string, err error) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Errorf("%s: got %v, want Forbidden", what, err)
	}
}
