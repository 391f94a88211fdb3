package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flotilla-dev/flotilla/e2e/localfleet"
	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

func TestRegister(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 2})
	hub := adminClient(t, f.Hub)
	m1, m2 := f.Members[0], f.Members[1]

	t.Run("creates the hub's identity in the member and the MemberCluster on the hub", func(t *testing.T) {
		out := mustFleetctl(t, registerArgs(f, "m1", m1, "--labels", "env=dev,region=eu")...)
		assertContains(t, out,
			`member "m1": namespace flotilla-system created`,
			`member "m1": serviceaccount flotilla-system/flotilla-hub created`,
			`member "m1": clusterrole flotilla-hub created`,
			`member "m1": clusterrolebinding flotilla-hub created`,
			`member "m1": role flotilla-system/flotilla-hub-token created`,
			`member "m1": rolebinding flotilla-system/flotilla-hub-token created`,
			`member "m1": token requested for serviceaccount flotilla-system/flotilla-hub, valid until`,
			`hub: secret flotilla-system/m1-kubeconfig created`,
			`hub: membercluster m1 created`,
			"kubectl --kubeconfig "+f.Hub.KubeconfigPath+" get membercluster m1",
		)

		mc := &fleetv1alpha1.MemberCluster{}
		if err := hub.Get(t.Context(), client.ObjectKey{Name: "m1"}, mc); err != nil {
			t.Fatal(err)
		}
		wantLabels := map[string]string{"env": "dev", "region": "eu", fleetv1alpha1.LabelRegistration: fleetv1alpha1.RegistrationFleetctl}
		if !maps.Equal(mc.Labels, wantLabels) {
			t.Errorf("MemberCluster labels = %v, want %v", mc.Labels, wantLabels)
		}
		wantRef := fleetv1alpha1.SecretKeyReference{Namespace: "flotilla-system", Name: "m1-kubeconfig", Key: "value"}
		if mc.Spec.KubeconfigSecretRef != wantRef {
			t.Errorf("kubeconfigSecretRef = %+v, want %+v", mc.Spec.KubeconfigSecretRef, wantRef)
		}

		secret := hubKubeconfigSecret(t, hub, "m1")
		if got := secret.Labels[fleetv1alpha1.LabelRegistration]; got != fleetv1alpha1.RegistrationFleetctl {
			t.Errorf("hub Secret label %s = %q, want %q", fleetv1alpha1.LabelRegistration, got, fleetv1alpha1.RegistrationFleetctl)
		}
		// The Secret source would register the cluster a second time.
		if _, ok := secret.Labels[fleetv1alpha1.LabelKubeconfig]; ok {
			t.Errorf("hub Secret carries %s, which belongs to the Secret registration source", fleetv1alpha1.LabelKubeconfig)
		}

		member := adminClient(t, m1)
		for _, obj := range []client.Object{
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-system"}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-hub", Namespace: "flotilla-system"}},
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-hub"}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-hub"}},
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-hub-token", Namespace: "flotilla-system"}},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-hub-token", Namespace: "flotilla-system"}},
		} {
			if err := member.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); err != nil {
				t.Errorf("member object %T %s: %v", obj, obj.GetName(), err)
				continue
			}
			if got := obj.GetLabels()[fleetv1alpha1.LabelManagedBy]; got != "flotilla" {
				t.Errorf("member object %T %s: label %s = %q, want flotilla", obj, obj.GetName(), fleetv1alpha1.LabelManagedBy, got)
			}
		}
	})

	t.Run("stored kubeconfig holds only the ServiceAccount token and has least privilege", func(t *testing.T) {
		value := hubKubeconfigSecret(t, hub, "m1").Data["value"]
		for name, secret := range map[string][]byte{"client certificate": m1.Config.CertData, "client key": m1.Config.KeyData} {
			if bytes.Contains(value, secret) || bytes.Contains(value, []byte(base64.StdEncoding.EncodeToString(secret))) {
				t.Errorf("the hub's kubeconfig contains the admin's %s", name)
			}
		}
		raw, err := clientcmd.Load(value)
		if err != nil {
			t.Fatal(err)
		}
		for name, u := range raw.AuthInfos {
			if u.Token == "" || len(u.ClientCertificateData) > 0 || len(u.ClientKeyData) > 0 || u.Exec != nil || u.TokenFile != "" {
				t.Errorf("user %q in the hub's kubeconfig: want a token and nothing else, got %+v", name, u)
			}
		}
		sa := storedKubeconfigClient(t, hub, "m1")

		review := &authenticationv1.SelfSubjectReview{}
		if err := sa.Create(t.Context(), review); err != nil {
			t.Fatal(err)
		}
		if got, want := review.Status.UserInfo.Username, "system:serviceaccount:flotilla-system:flotilla-hub"; got != want {
			t.Errorf("stored kubeconfig authenticates as %q, want %q", got, want)
		}
		eventually(t, 10*time.Second, "able to list nodes", func() error {
			return sa.List(t.Context(), &corev1.NodeList{})
		})
		if err := sa.List(t.Context(), &corev1.SecretList{}); !apierrors.IsForbidden(err) {
			t.Errorf("listing Secrets cluster-wide with the hub's credentials: got %v, want Forbidden", err)
		}
		np := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "default-deny", Namespace: "default"},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
		}
		if err := sa.Create(t.Context(), np); err != nil {
			t.Errorf("creating a NetworkPolicy with the hub's credentials: %v", err)
		}
	})

	t.Run("running it again changes nothing and says so", func(t *testing.T) {
		out := mustFleetctl(t, registerArgs(f, "m1", m1, "--labels", "env=dev,region=eu")...)
		assertContains(t, out,
			`member "m1": namespace flotilla-system unchanged`,
			`member "m1": serviceaccount flotilla-system/flotilla-hub unchanged`,
			`member "m1": clusterrole flotilla-hub unchanged`,
			`member "m1": clusterrolebinding flotilla-hub unchanged`,
			`member "m1": role flotilla-system/flotilla-hub-token unchanged`,
			`member "m1": rolebinding flotilla-system/flotilla-hub-token unchanged`,
			`member "m1": token kept: the hub's current token is valid until`,
			`hub: secret flotilla-system/m1-kubeconfig unchanged`,
			`hub: membercluster m1 unchanged`,
		)
		if strings.Contains(out, "created") || strings.Contains(out, "updated") {
			t.Errorf("a second identical register reported a change:\n%s", out)
		}
	})

	t.Run("new labels replace the ones given before", func(t *testing.T) {
		out := mustFleetctl(t, registerArgs(f, "m1", m1, "--labels", "env=prod")...)
		assertContains(t, out, "hub: membercluster m1 updated")
		mc := &fleetv1alpha1.MemberCluster{}
		if err := hub.Get(t.Context(), client.ObjectKey{Name: "m1"}, mc); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"env": "prod", fleetv1alpha1.LabelRegistration: fleetv1alpha1.RegistrationFleetctl}
		if !maps.Equal(mc.Labels, want) {
			t.Errorf("MemberCluster labels = %v, want %v", mc.Labels, want)
		}
	})

	t.Run("refused registrations touch neither hub nor member", func(t *testing.T) {
		// A MemberCluster the Secret source made must not be taken over.
		other := &fleetv1alpha1.MemberCluster{
			ObjectMeta: metav1.ObjectMeta{Name: "from-secret", Labels: map[string]string{fleetv1alpha1.LabelRegistration: fleetv1alpha1.RegistrationSecret}},
			Spec:       fleetv1alpha1.MemberClusterSpec{KubeconfigSecretRef: fleetv1alpha1.SecretKeyReference{Namespace: "flotilla-system", Name: "from-secret", Key: "value"}},
		}
		if err := hub.Create(t.Context(), other); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name    string
			args    []string
			wantErr string
		}{
			{"upper-case name", registerArgs(f, "M2", m2), "invalid cluster name"},
			{"name with a dot", registerArgs(f, "m2.eu", m2), "invalid cluster name"},
			{"name too long", registerArgs(f, strings.Repeat("m", 64), m2), "invalid cluster name"},
			{"label without value", registerArgs(f, "m2", m2, "--labels", "env"), "want key=value"},
			{"bad label key", registerArgs(f, "m2", m2, "--labels", "bad key=x"), `invalid --labels: key "bad key"`},
			{"bad label value", registerArgs(f, "m2", m2, "--labels", "env=not ok"), `invalid --labels: value "not ok" of "env"`},
			{"registration label", registerArgs(f, "m2", m2, "--labels", "fleet.flotilla.dev/registration=secret"), "the registration source sets it"},
			{"http member server", registerArgs(f, "m2", m2, "--member-server", "http://127.0.0.1:6443"), "want an https:// URL"},
			{"cluster of another source", registerArgs(f, "from-secret", m2), `registered by "secret", not fleetctl`},
			{"unknown member context", registerArgs(f, "m2", m2, "--member-context", "nope"), `"nope"`},
			{"missing member kubeconfig", registerArgs(f, "m2", &localfleet.ControlPlane{KubeconfigPath: "/does/not/exist"}), "read --member-kubeconfig"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				_, err := fleetctl(t, tc.args...)
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
				}
			})
		}
		var mcs fleetv1alpha1.MemberClusterList
		if err := hub.List(t.Context(), &mcs); err != nil {
			t.Fatal(err)
		}
		if names := memberClusterNames(mcs.Items); names != "from-secret,m1" {
			t.Errorf("MemberClusters after refused registrations: %s, want from-secret,m1", names)
		}
		if err := hub.Get(t.Context(), client.ObjectKey{Namespace: "flotilla-system", Name: "m2-kubeconfig"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			t.Errorf("hub Secret m2-kubeconfig after refused registrations: got %v, want NotFound", err)
		}
		err := adminClient(t, m2).Get(t.Context(), client.ObjectKey{Name: "flotilla-system"}, &corev1.Namespace{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("member namespace flotilla-system after refused registrations: got %v, want NotFound", err)
		}
	})

	t.Run("cluster-admin binds the built-in role, and switching back restores least privilege", func(t *testing.T) {
		out := mustFleetctl(t, registerArgs(f, "m2", m2, "--cluster-admin")...)
		assertContains(t, out, `member "m2": clusterrolebinding flotilla-hub created (clusterrole cluster-admin)`)
		if strings.Contains(out, "clusterrole flotilla-hub created") {
			t.Errorf("--cluster-admin created Flotilla's own ClusterRole:\n%s", out)
		}
		member := adminClient(t, m2)
		if err := member.Get(t.Context(), client.ObjectKey{Name: "flotilla-hub"}, &rbacv1.ClusterRole{}); !apierrors.IsNotFound(err) {
			t.Errorf("ClusterRole flotilla-hub with --cluster-admin: got %v, want NotFound", err)
		}
		sa := storedKubeconfigClient(t, hub, "m2")
		eventually(t, 10*time.Second, "able to list Secrets as cluster-admin", func() error {
			return sa.List(t.Context(), &corev1.SecretList{})
		})

		out = mustFleetctl(t, registerArgs(f, "m2", m2)...)
		assertContains(t, out,
			`member "m2": clusterrole flotilla-hub created`,
			`member "m2": clusterrolebinding flotilla-hub replaced (now bound to clusterrole flotilla-hub)`,
			`hub: membercluster m2 unchanged`,
		)
		eventually(t, 10*time.Second, "forbidden to list Secrets with least privilege", func() error {
			switch err := sa.List(t.Context(), &corev1.SecretList{}); {
			case err == nil:
				return errors.New("listing Secrets succeeded, want Forbidden")
			case !apierrors.IsForbidden(err):
				return fmt.Errorf("list Secrets: got %w, want Forbidden", err)
			}
			return nil
		})
	})
}

// TestRegisterWithoutTokenController checks the messages a user gets when the member's
// kube-controller-manager never publishes the root CA or fills in a long-lived token, and
// that the hub is left untouched.
func TestRegisterWithoutTokenController(t *testing.T) {
	f := localfleet.StartForTest(t, localfleet.Options{Members: 1, NoControllerManager: true})
	defer func(old time.Duration) { tokenWaitTimeout = old }(tokenWaitTimeout)
	tokenWaitTimeout = 2 * time.Second

	_, err := fleetctl(t, registerArgs(f, "m1", f.Members[0])...)
	if err == nil || !strings.Contains(err.Error(), "kube-controller-manager did not publish the root CA") {
		t.Errorf("got error %v, want one saying the root CA was not published", err)
	}
	out, err := fleetctl(t, registerArgs(f, "m1", f.Members[0], "--long-lived-token")...)
	if err == nil || !strings.Contains(err.Error(), "kube-controller-manager token controller did not populate it") {
		t.Fatalf("got error %v, want one saying the token controller did not populate the token", err)
	}
	assertContains(t, out, `member "m1": waiting for the token controller`)
	mc := &fleetv1alpha1.MemberCluster{}
	if err := adminClient(t, f.Hub).Get(t.Context(), client.ObjectKey{Name: "m1"}, mc); !apierrors.IsNotFound(err) {
		t.Errorf("MemberCluster m1 after a failed register: got %v, want NotFound", err)
	}
}

func TestPEMBundleDeduplicates(t *testing.T) {
	a := []byte("-----BEGIN CERTIFICATE-----\nYWFh\n-----END CERTIFICATE-----\n")
	b := []byte("-----BEGIN CERTIFICATE-----\nYmJi\n-----END CERTIFICATE-----\n")
	got, err := pemBundle(append(append([]byte{}, a...), b...), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := string(a) + string(b); string(got) != want {
		t.Errorf("pemBundle = %q, want %q", got, want)
	}
	if _, err := pemBundle(nil, []byte("not pem")); err == nil {
		t.Error("pemBundle without certificates: want an error")
	}
}

func hubKubeconfigSecret(t *testing.T, hub client.Client, cluster string) *corev1.Secret {
	t.Helper()
	secret := &corev1.Secret{}
	if err := hub.Get(t.Context(), client.ObjectKey{Namespace: "flotilla-system", Name: cluster + "-kubeconfig"}, secret); err != nil {
		t.Fatal(err)
	}
	return secret
}

// storedKubeconfigClient is a client acting as the hub does: with the kubeconfig
// register stored on the hub for cluster.
func storedKubeconfigClient(t *testing.T, hub client.Client, cluster string) client.Client {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(hubKubeconfigSecret(t, hub, cluster).Data["value"])
	if err != nil {
		t.Fatal(err)
	}
	return configClient(t, cfg)
}

func memberClusterNames(items []fleetv1alpha1.MemberCluster) string {
	names := make([]string, 0, len(items))
	for _, mc := range items {
		names = append(names, mc.Name)
	}
	return strings.Join(names, ",")
}
